// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * CRC-32C. The migration stream checksums every page it carries, so on
 * x86-64 with SSE4.2 the crc32 instruction does it, three streams at once
 * (the instruction's latency is three times its throughput) joined by a
 * shift table; elsewhere slicing by 8 (~2 GB/s). The library's own state
 * blobs are small.
 */
#include <pthread.h>
#include <string.h>

#include "util/crc32c.h"

#define POLY 0x82f63b78u	/* reflected Castagnoli */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		table[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (uint32_t i = 0; i < 256; i++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t vr_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&table_once, table_init);
	crc = ~crc;
	for (; len >= 8; len -= 8, p += 8) {
		uint32_t lo = le32(p) ^ crc, hi = le32(p + 4);

		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
		      table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
		      table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
	}
	while (len--)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
#define HW_AVAILABLE() __builtin_cpu_supports("sse4.2")
#define BLOCK 1024	/* bytes per stream in one three-stream step */

/*
 * The CRC register is linear in its start value and the data, so
 * crc(r, A B) = shift(crc(r, A)) ^ crc(0, B), where shift(x) is x run
 * through BLOCK zero bytes; shift_tab holds that map, a byte at a time.
 */
static uint32_t shift_tab[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2")))
static uint32_t zeros_hw(uint32_t reg, size_t len)
{
	uint64_t c = reg;

	for (size_t i = 0; i < len; i += 8)
		c = __builtin_ia32_crc32di(c, 0);
	return (uint32_t)c;
}

static void shift_init(void)
{
	uint32_t bit[32];

	for (int i = 0; i < 32; i++)
		bit[i] = zeros_hw(1u << i, BLOCK);
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t v = 0;

			for (int i = 0; i < 8; i++)
				if (b & (1u << i))
					v ^= bit[8 * k + i];
			shift_tab[k][b] = v;
		}
}

static uint32_t shift(uint32_t x)
{
	return shift_tab[0][x & 0xff] ^ shift_tab[1][(x >> 8) & 0xff] ^
	       shift_tab[2][(x >> 16) & 0xff] ^ shift_tab[3][x >> 24];
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t a = ~crc;

	if (len >= 3 * BLOCK)
		pthread_once(&shift_once, shift_init);
	for (; len >= 3 * BLOCK; len -= 3 * BLOCK, p += 3 * BLOCK) {
		uint64_t b = 0, c = 0, x, y, z;

		for (size_t i = 0; i < BLOCK; i += 8) {
			memcpy(&x, p + i, 8);
			memcpy(&y, p + BLOCK + i, 8);
			memcpy(&z, p + 2 * BLOCK + i, 8);
			a = __builtin_ia32_crc32di(a, x);
			b = __builtin_ia32_crc32di(b, y);
			c = __builtin_ia32_crc32di(c, z);
		}
		a = shift(shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
	}
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t x;

		memcpy(&x, p, 8);
		a = __builtin_ia32_crc32di(a, x);
	}
	while (len--)
		a = __builtin_ia32_crc32qi((uint32_t)a, *p++);
	return ~(uint32_t)a;
}
#endif

uint32_t vr_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
	if (HW_AVAILABLE())
		return crc32c_hw(crc, buf, len);
#endif
	return vr_crc32c_sw(crc, buf, len);
}
