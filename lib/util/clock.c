// SPDX-License-Identifier: GPL-2.0-or-later
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t vr_now_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

uint64_t vr_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int32_t vr_gettid(void)
{
	return (int32_t)syscall(SYS_gettid);
}
