/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Minimal TAP producer for the C tests (meson runs them with protocol
 * 'tap'). A failure prints the expression, file:line, and the values.
 */
#ifndef VMRAS_TEST_TAP_H
#define VMRAS_TEST_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count, tap_failures;

static inline __attribute__((format(printf, 2, 3)))
bool tap_result(bool pass, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", pass ? "" : "not ", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!pass)
		tap_failures++;
	return pass;
}

static inline __attribute__((format(printf, 1, 2)))
void tap_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* A test that cannot run here: counted as skipped, with its reason. */
static inline __attribute__((format(printf, 2, 3)))
void tap_skip(const char *name, const char *why, ...)
{
	va_list ap;

	printf("ok %d - %s # SKIP ", ++tap_count, name);
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

#define ok(cond, ...)                                                          \
	({                                                                     \
		bool ok_ = (cond);                                             \
		if (!tap_result(ok_, __VA_ARGS__))                             \
			tap_diag("%s:%d: failed: %s", __FILE__, __LINE__, #cond); \
		ok_;                                                           \
	})

#define is_int(got, want, ...)                                                 \
	({                                                                     \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		bool ok_ = g_ == w_;                                           \
		if (!tap_result(ok_, __VA_ARGS__))                             \
			tap_diag("%s:%d: %s == %lld, want %s == %lld", __FILE__, \
				 __LINE__, #got, g_, #want, w_);               \
		ok_;                                                           \
	})

#define is_u64(got, want, ...)                                                 \
	({                                                                     \
		uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);          \
		bool ok_ = g_ == w_;                                           \
		if (!tap_result(ok_, __VA_ARGS__))                             \
			tap_diag("%s:%d: %s == 0x%" PRIx64 ", want 0x%" PRIx64, \
				 __FILE__, __LINE__, #got, g_, w_);            \
		ok_;                                                           \
	})

#define is_str(got, want, ...)                                                 \
	({                                                                     \
		const char *g_ = (got), *w_ = (want);                          \
		bool ok_ = g_ && w_ && !strcmp(g_, w_);                        \
		if (!tap_result(ok_, __VA_ARGS__))                             \
			tap_diag("%s:%d: %s == \"%s\", want \"%s\"", __FILE__, \
				 __LINE__, #got, g_ ? g_ : "(null)",           \
				 w_ ? w_ : "(null)");                          \
		ok_;                                                           \
	})

#endif /* VMRAS_TEST_TAP_H */
