// SPDX-License-Identifier: GPL-2.0-or-later
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* True if only whitespace (at most one line's end) remains. */
static bool only_trailing_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\n')
		s++;
	return *s == '\0';
}

int probe_parse_int(const char *text, long long *out)
{
	const char *s = skip_blanks(text);
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s) && *s != '-')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || !only_trailing_space(end))
		return -EINVAL;
	*out = v;
	return 0;
}

int probe_parse_u64(const char *text, uint64_t *out)
{
	const char *s = skip_blanks(text);
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || !only_trailing_space(end))
		return -EINVAL;
	*out = v;
	return 0;
}

int probe_parse_meminfo_kib(const char *text, const char *key, uint64_t *kib)
{
	size_t klen = strlen(key);
	const char *line = text;

	while (*line) {
		const char *eol = strchrnul(line, '\n');

		if ((size_t)(eol - line) > klen && !strncmp(line, key, klen) &&
		    line[klen] == ':') {
			const char *s = skip_blanks(line + klen + 1);
			char *end;
			unsigned long long v;

			if (!isdigit((unsigned char)*s))
				return -EINVAL;
			errno = 0;
			v = strtoull(s, &end, 10);
			if (errno || end > eol)
				return -EINVAL;
			end = (char *)skip_blanks(end);
			/* Only "kB" or no unit (HugePages_Total) is valid. */
			if (!strncmp(end, "kB", 2))
				end += 2;
			end = (char *)skip_blanks(end);
			if (end != eol)
				return -EINVAL;
			*kib = v;
			return 0;
		}
		line = *eol ? eol + 1 : eol;
	}
	return -ENOENT;
}

int probe_parse_bracketed(const char *text, char *out, size_t outsz)
{
	const char *open = strchr(text, '[');
	const char *close;
	size_t len;

	if (!open)
		return -EINVAL;
	close = strchr(open, ']');
	if (!close || strchr(close + 1, '['))
		return -EINVAL;
	len = (size_t)(close - open - 1);
	if (len == 0 || len >= outsz)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)open[1 + i]) && open[1 + i] != '_' &&
		    open[1 + i] != '-')
			return -EINVAL;
	memcpy(out, open + 1, len);
	out[len] = '\0';
	return 0;
}

int probe_parse_cap_effective(const char *text, uint64_t *caps)
{
	static const char key[] = "CapEff:";
	const char *line = text;

	while (*line) {
		const char *eol = strchrnul(line, '\n');

		if (!strncmp(line, key, sizeof(key) - 1)) {
			const char *s = skip_blanks(line + sizeof(key) - 1);
			char *end;
			unsigned long long v;

			if (!isxdigit((unsigned char)*s))
				return -EINVAL;
			errno = 0;
			v = strtoull(s, &end, 16);
			if (errno || skip_blanks(end) != eol)
				return -EINVAL;
			*caps = v;
			return 0;
		}
		line = *eol ? eol + 1 : eol;
	}
	return -ENOENT;
}

int probe_parse_hugepages_dirname(const char *name, uint64_t *size)
{
	static const char prefix[] = "hugepages-";
	const char *s;
	char *end;
	unsigned long long kib;

	if (strncmp(name, prefix, sizeof(prefix) - 1))
		return -EINVAL;
	s = name + sizeof(prefix) - 1;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	kib = strtoull(s, &end, 10);
	if (errno || strcmp(end, "kB") || kib == 0 || kib > UINT64_MAX / 1024)
		return -EINVAL;
	*size = kib * 1024;
	return 0;
}

int probe_parse_size(const char *text, uint64_t *size)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	if (!isdigit((unsigned char)*text))
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end != '\0' || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*size = (uint64_t)v << shift;
	return 0;
}

static bool is_octal(char c)
{
	return c >= '0' && c <= '7';
}

/* Undo the octal escapes (\040 for space) of /proc/mounts fields. */
static int unescape_mount_path(const char *s, size_t len, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '\\') {
			if (i + 3 >= len || !is_octal(s[i + 1]) || s[i + 1] > '3' ||
			    !is_octal(s[i + 2]) || !is_octal(s[i + 3]))
				return -EINVAL;
			c = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
				   (s[i + 3] - '0'));
			if (!c)		/* a path holds no NUL */
				return -EINVAL;
			i += 3;
		}
		if (o + 1 >= outsz)
			return -EINVAL;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

/* Value of "name=" in a comma-separated option list, or -ENOENT. */
static int find_option(const char *opts, size_t len, const char *name,
		       char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && opts[j] != ',')
			j++;
		if (j - i > nlen && !strncmp(opts + i, name, nlen) &&
		    opts[i + nlen] == '=') {
			size_t vlen = j - i - nlen - 1;

			if (vlen == 0 || vlen >= outsz)
				return -EINVAL;
			memcpy(out, opts + i + nlen + 1, vlen);
			out[vlen] = '\0';
			return 0;
		}
		i = j + 1;
	}
	return -ENOENT;
}

int probe_parse_hugetlbfs_mounts(const char *text, uint64_t default_size,
				 struct vmras_probe_mount *mounts, unsigned int max,
				 unsigned int *n, unsigned int *bad_line)
{
	const char *line = text;
	unsigned int count = 0, lineno = 0;

	while (*line) {
		const char *eol = strchrnul(line, '\n');
		const char *field[4];
		size_t flen[4];
		const char *s = line;
		int nf;

		lineno++;
		for (nf = 0; nf < 4; nf++) {
			while (s < eol && *s == ' ')
				s++;
			if (s >= eol)
				break;
			field[nf] = s;
			while (s < eol && *s != ' ')
				s++;
			flen[nf] = (size_t)(s - field[nf]);
		}
		if (nf == 0 && eol == line) {
			line = *eol ? eol + 1 : eol;
			continue;
		}
		if (nf < 4)
			goto bad;
		if (flen[2] == 9 && !strncmp(field[2], "hugetlbfs", 9) && count < max) {
			struct vmras_probe_mount *m = &mounts[count];
			char val[32];
			int r;

			if (unescape_mount_path(field[1], flen[1], m->path,
						sizeof(m->path)))
				goto bad;
			r = find_option(field[3], flen[3], "pagesize", val, sizeof(val));
			if (r == -ENOENT)
				m->page_size = default_size;
			else if (r || probe_parse_size(val, &m->page_size) ||
				 !m->page_size || (m->page_size & (m->page_size - 1)))
				goto bad;	/* a huge page's size is a power of two */
			count++;
		}
		line = *eol ? eol + 1 : eol;
	}
	*n = count;
	return 0;
bad:
	*bad_line = lineno;
	return -EINVAL;
}
