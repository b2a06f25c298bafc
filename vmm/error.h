/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One line saying what failed and why, carried back to the program. */
#ifndef VMRAS_VMM_ERROR_H
#define VMRAS_VMM_ERROR_H

#include <stddef.h>

struct vmm_error {
	char msg[320];
};

/*
 * Format "WHAT: strerror(-err)" into e (if e) and return err (a -errno),
 * so a failing path can say `return vmm_fail(e, r, "mmap RAM");`.
 */
int vmm_fail(struct vmm_error *e, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Same, without an errno part; returns err. */
int vmm_failf(struct vmm_error *e, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
