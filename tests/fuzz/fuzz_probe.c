// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the probe's parsers of /proc and /sys text
 * (lib/probe/parse.c): the first byte picks the parser (and a parameter),
 * the rest is the file's text. Besides crashes and sanitizer reports it
 * aborts when parse.h's contract fails:
 *   - a parser returns 0, -ENOENT or -EINVAL, and on an error leaves its
 *     result untouched;
 *   - a copied word fits its buffer, NUL-terminated, and is only
 *     [A-Za-z0-9_-];
 *   - hugetlbfs mounts: at most `max` of them, each path a string without
 *     an embedded NUL and each page size a power of two, a malformed
 *     line's number within the text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probe/parse.h"

static const char *const meminfo_keys[] = {
	"Hugepagesize", "HugePages_Total", "HugePages_Free", "MemTotal",
};

static void check_rc(int r)
{
	if (r != 0 && r != -ENOENT && r != -EINVAL)
		abort();
}

#define SENTINEL 0xa5a5a5a5a5a5a5a5ULL

static void one_u64(int r, uint64_t v)
{
	check_rc(r);
	if (r && v != SENTINEL)
		abort();
}

static void mounts(const char *text, unsigned int max)
{
	struct vmras_probe_mount m[8];
	unsigned int n = 77, bad = 0, lines = 1;
	int r;

	memset(m, 0, sizeof(m));
	r = probe_parse_hugetlbfs_mounts(text, 2 << 20, m, max, &n, &bad);
	check_rc(r);
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	if (r) {
		if (n != 77 || bad < 1 || bad > lines)
			abort();
		return;
	}
	if (n > max)
		abort();
	for (unsigned int i = 0; i < n; i++) {
		size_t len = strnlen(m[i].path, sizeof(m[i].path));

		if (len == 0 || len == sizeof(m[i].path) || m[i].page_size == 0 ||
		    (m[i].page_size & (m[i].page_size - 1)))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, word[16];
	uint64_t v = SENTINEL;
	long long i = (long long)SENTINEL;
	unsigned int sel;
	int r;

	if (!size)
		return 0;
	sel = data[0];
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	switch (sel % 8) {
	case 0:
		r = probe_parse_int(text, &i);
		check_rc(r);
		if (r && i != (long long)SENTINEL)
			abort();
		break;
	case 1:
		one_u64(probe_parse_u64(text, &v), v);
		break;
	case 2:
		one_u64(probe_parse_meminfo_kib(text, meminfo_keys[(sel / 8) % 4], &v), v);
		break;
	case 3: {
		size_t outsz = 1 + (sel / 8) % sizeof(word);

		memset(word, 0x5a, sizeof(word));
		r = probe_parse_bracketed(text, word, outsz);
		check_rc(r);
		if (r) {
			for (size_t k = 0; k < sizeof(word); k++)
				if (word[k] != 0x5a)
					abort();
		} else {
			size_t len = strnlen(word, outsz);

			if (len == 0 || len == outsz)
				abort();
			for (size_t k = 0; k < len; k++)
				if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					    "0123456789_-", word[k]))
					abort();
		}
		break;
	}
	case 4:
		one_u64(probe_parse_cap_effective(text, &v), v);
		break;
	case 5:
		r = probe_parse_hugepages_dirname(text, &v);
		one_u64(r, v);
		if (!r && (v == 0 || v % 1024))
			abort();
		break;
	case 6:
		one_u64(probe_parse_size(text, &v), v);
		break;
	default:
		mounts(text, (sel / 8) % 9);
		break;
	}
	free(text);
	return 0;
}
