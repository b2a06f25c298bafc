/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CRC-32C (Castagnoli), as iSCSI and ext4 use it; chainable from 0. */
#ifndef VMRAS_UTIL_CRC32C_H
#define VMRAS_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The fastest this CPU has. */
uint32_t vr_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable one, for tests to hold the fast one to. */
uint32_t vr_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
