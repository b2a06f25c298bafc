/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memfd_create() huge page size flags (include/uapi/linux/memfd.h). Not
 * taken from <linux/memfd.h>: its MFD_CLOEXEC spelling clashes with glibc's.
 */
#ifndef VMRAS_KABI_MEMFD_H
#define VMRAS_KABI_MEMFD_H

#include <sys/mman.h>

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << MFD_HUGE_SHIFT)
#endif

#endif
