/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Pure parsers of /proc and /sys text. Each returns 0, -ENOENT when the
 * thing looked for is absent, or -EINVAL when the text is malformed; on
 * error the result (*out, *kib, *n, ...) is left unchanged.
 */
#ifndef VMRAS_PROBE_PARSE_H
#define VMRAS_PROBE_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "vmras/probe.h"

/* A file holding one decimal integer (sysctl style), trailing newline ok. */
int probe_parse_int(const char *text, long long *out);
int probe_parse_u64(const char *text, uint64_t *out);

/* "Key:   1234 kB" in /proc/meminfo; the value in KiB. */
int probe_parse_meminfo_kib(const char *text, const char *key, uint64_t *kib);

/* "always [madvise] never": copies the bracketed word. */
int probe_parse_bracketed(const char *text, char *out, size_t outsz);

/* "CapEff:\t000001fffeffffff" in /proc/<pid>/status. */
int probe_parse_cap_effective(const char *text, uint64_t *caps);

/* "hugepages-2048kB" (a /sys/kernel/mm/hugepages entry): size in bytes. */
int probe_parse_hugepages_dirname(const char *name, uint64_t *size);

/* "2M", "1G", "2048k", "4096": a size with an optional binary suffix. */
int probe_parse_size(const char *text, uint64_t *size);

/*
 * hugetlbfs entries of /proc/mounts. Mounts without pagesize= use
 * default_size; entries beyond max are not stored. On -EINVAL, *bad_line
 * gets the 1-based number of the malformed line and *n is unchanged.
 */
int probe_parse_hugetlbfs_mounts(const char *text, uint64_t default_size,
				 struct vmras_probe_mount *mounts, unsigned int max,
				 unsigned int *n, unsigned int *bad_line);

#endif /* VMRAS_PROBE_PARSE_H */
