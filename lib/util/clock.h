/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Clocks and thread ids; all async-signal-safe. */
#ifndef VMRAS_LIB_CLOCK_H
#define VMRAS_LIB_CLOCK_H

#include <stdint.h>

uint64_t vr_now_ns(void);	/* CLOCK_REALTIME: event times */
uint64_t vr_mono_ns(void);	/* CLOCK_MONOTONIC: durations */
int32_t vr_gettid(void);

#endif
