/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef VMRAS_UTIL_FILEIO_H
#define VMRAS_UTIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Read all of dirfd/path into buf and NUL-terminate it. Returns the length,
 * or -errno; -EFBIG if it does not fit in size - 1 bytes.
 */
ssize_t read_file_at(int dirfd, const char *path, char *buf, size_t size);

/* write(2) all of buf, retrying short writes and EINTR. 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

#endif
