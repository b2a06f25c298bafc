// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Firecracker's snapshot-restore handshake: a strict JSON parser for
 * exactly its shape (an array of flat objects of unsigned integers, other
 * members skipped), and the checks of its regions against the memory file.
 * Recursive descent over a byte range; running out of bytes is "incomplete"
 * (-EAGAIN), anything else wrong is -EINVAL with a sentence.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "fc_handshake.h"

#define MAX_DEPTH 32		/* of a skipped value's nesting */
#define KEY_MAX 32		/* longer keys are unknown ones */

struct parser {
	const char *start, *p, *end;
	char *why;
	size_t why_size;
};

static __attribute__((format(printf, 2, 3)))
int fail(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!ps->why_size)
		return -EINVAL;
	n = snprintf(ps->why, ps->why_size, "byte %zu: ", (size_t)(ps->p - ps->start));
	if (n < 0 || (size_t)n >= ps->why_size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(ps->why + n, ps->why_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static __attribute__((format(printf, 3, 4)))
int say(char *why, size_t why_size, const char *fmt, ...)
{
	va_list ap;

	if (why_size) {
		va_start(ap, fmt);
		vsnprintf(why, why_size, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The byte at p, readable ("'x'" or "byte 0x07"), for messages. */
static const char *shown(const struct parser *ps, char buf[16])
{
	unsigned char c = (unsigned char)*ps->p;

	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else
		snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/* Skip white space, then the next byte must be c (consumed). */
static int expect(struct parser *ps, char c, const char *what)
{
	char b[16];

	skip_ws(ps);
	if (ps->p == ps->end)
		return -EAGAIN;
	if (*ps->p != c)
		return fail(ps, "expected %s, found %s", what, shown(ps, b));
	ps->p++;
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A string, at its opening quote. Its first out_size - 1 bytes go to out
 * (NUL-terminated; an escape for anything but printable ASCII becomes
 * 0xff, so such a key matches no known one); *fits is false if it is longer.
 */
static int parse_string(struct parser *ps, char *out, size_t out_size, bool *fits)
{
	size_t n = 0;
	int err;

	err = expect(ps, '"', "'\"'");
	if (err)
		return err;
	*fits = true;
	for (;;) {
		unsigned char c;

		if (ps->p == ps->end)
			return -EAGAIN;
		c = (unsigned char)*ps->p;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20)
			return fail(ps, "control character 0x%02x in a string", c);
		if (c == '\\') {
			if (ps->end - ps->p < 2)
				return -EAGAIN;
			switch (ps->p[1]) {
			case '"': case '\\': case '/': c = (unsigned char)ps->p[1]; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': {
				unsigned int v = 0;

				for (int i = 2; i < 6; i++) {
					int d;

					if (ps->p + i >= ps->end)
						return -EAGAIN;
					d = hex_digit(ps->p[i]);
					if (d < 0) {
						ps->p += i;
						return fail(ps, "bad \\u escape in a string");
					}
					v = v << 4 | (unsigned int)d;
				}
				c = v >= 0x20 && v < 0x7f ? (unsigned char)v : 0xff;
				ps->p += 4;
				break;
			}
			default:
				ps->p++;
				return fail(ps, "bad escape '\\%c' in a string",
					    (unsigned char)*ps->p >= 0x20 && (unsigned char)*ps->p < 0x7f
						    ? *ps->p : '?');
			}
			ps->p += 2;
		} else {
			ps->p++;
		}
		if (n + 1 < out_size)
			out[n++] = (char)c;
		else
			*fits = false;
	}
	if (out_size)
		out[n] = '\0';
	return 0;
}

/*
 * A JSON number at p. *v is its value when it is an unsigned integer that
 * fits (*plain); otherwise *plain is false and *why_not says why.
 */
static bool at_digit(const struct parser *ps)
{
	return ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9';
}

/* A fraction's or exponent's digits: at least one (what says which part). */
static int digit_run(struct parser *ps, const char *what)
{
	char b[16];

	if (ps->p == ps->end)
		return -EAGAIN;
	if (!at_digit(ps))
		return fail(ps, "expected a digit %s, found %s", what, shown(ps, b));
	while (at_digit(ps))
		ps->p++;
	return 0;
}

static int parse_number(struct parser *ps, uint64_t *v, bool *plain, const char **why_not)
{
	bool neg = false, frac = false, exp = false, big = false;
	uint64_t x = 0;
	char b[16];

	*plain = false;
	if (*ps->p == '-') {
		neg = true;
		ps->p++;
		if (ps->p == ps->end)
			return -EAGAIN;
	}
	if (*ps->p < '0' || *ps->p > '9')
		return fail(ps, "expected a digit, found %s", shown(ps, b));
	if (*ps->p == '0') {
		ps->p++;
		if (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			return fail(ps, "a number with a leading zero");
	} else {
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
			unsigned int d = (unsigned int)(*ps->p - '0');

			if (x > (UINT64_MAX - d) / 10)
				big = true;
			else
				x = x * 10 + d;
			ps->p++;
		}
	}
	if (ps->p < ps->end && *ps->p == '.') {
		int r;

		frac = true;
		ps->p++;
		r = digit_run(ps, "after '.'");
		if (r)
			return r;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		int r;

		exp = true;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		r = digit_run(ps, "in an exponent");
		if (r)
			return r;
	}
	/* A number is never last in a complete message: more digits may come. */
	if (ps->p == ps->end)
		return -EAGAIN;
	if (neg)
		*why_not = "is negative";
	else if (frac || exp)
		*why_not = "is not an integer";
	else if (big)
		*why_not = "is above 2^64 - 1";
	else
		*plain = true;
	*v = x;
	return 0;
}

static int parse_literal(struct parser *ps, const char *word)
{
	size_t len = strlen(word);

	for (size_t i = 0; i < len; i++) {
		if (ps->p == ps->end)
			return -EAGAIN;
		if (*ps->p != word[i])
			return fail(ps, "expected a value");
		ps->p++;
	}
	return 0;
}

static int skip_value(struct parser *ps, unsigned int depth);

/* An object or array being skipped, at its opening bracket. */
static int skip_container(struct parser *ps, unsigned int depth)
{
	bool object = *ps->p == '{';
	char close = object ? '}' : ']';
	char key[1], b[16];
	bool fits;
	int err;

	if (depth >= MAX_DEPTH)
		return fail(ps, "values nested deeper than %d", MAX_DEPTH);
	ps->p++;
	skip_ws(ps);
	if (ps->p == ps->end)
		return -EAGAIN;
	if (*ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (object) {
			err = parse_string(ps, key, sizeof(key), &fits);
			if (!err)
				err = expect(ps, ':', "':'");
			if (err)
				return err;
		}
		err = skip_value(ps, depth + 1);
		if (err)
			return err;
		skip_ws(ps);
		if (ps->p == ps->end)
			return -EAGAIN;
		if (*ps->p == close) {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return fail(ps, "expected ',' or '%c', found %s", close, shown(ps, b));
		ps->p++;
	}
}

static int skip_value(struct parser *ps, unsigned int depth)
{
	const char *why_not;
	char s[1], b[16];
	bool fits, plain;
	uint64_t v;

	skip_ws(ps);
	if (ps->p == ps->end)
		return -EAGAIN;
	switch (*ps->p) {
	case '{':
	case '[':
		return skip_container(ps, depth);
	case '"':
		return parse_string(ps, s, sizeof(s), &fits);
	case 't':
		return parse_literal(ps, "true");
	case 'f':
		return parse_literal(ps, "false");
	case 'n':
		return parse_literal(ps, "null");
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps, &v, &plain, &why_not);
		return fail(ps, "expected a value, found %s", shown(ps, b));
	}
}

enum field { F_BASE, F_SIZE, F_OFFSET, F_PAGE_SIZE, F_PAGE_SIZE_KIB, F_COUNT };

static const char *const field_names[F_COUNT] = {
	[F_BASE] = "base_host_virt_addr",
	[F_SIZE] = "size",
	[F_OFFSET] = "offset",
	[F_PAGE_SIZE] = "page_size",
	[F_PAGE_SIZE_KIB] = "page_size_kib",
};

static int parse_region(struct parser *ps, size_t index, struct fc_region *r)
{
	uint64_t val[F_COUNT] = { 0 };
	bool seen[F_COUNT] = { false };
	const char *region_start;
	char key[KEY_MAX], b[16];
	int err;

	skip_ws(ps);
	region_start = ps->p;
	err = expect(ps, '{', "'{' (a region)");
	if (err)
		return err;
	skip_ws(ps);
	if (ps->p == ps->end)
		return -EAGAIN;
	if (*ps->p == '}') {
		ps->p++;
	} else {
		for (;;) {
			const char *key_at, *why_not = NULL;
			bool fits, plain;
			int f;

			skip_ws(ps);
			key_at = ps->p;
			err = parse_string(ps, key, sizeof(key), &fits);
			if (!err)
				err = expect(ps, ':', "':'");
			if (err)
				return err;
			for (f = 0; f < F_COUNT; f++)
				if (fits && !strcmp(key, field_names[f]))
					break;
			skip_ws(ps);
			if (ps->p == ps->end)
				return -EAGAIN;
			if (f == F_COUNT) {
				err = skip_value(ps, 1);
			} else if (seen[f]) {
				ps->p = key_at;
				return fail(ps, "region %zu: \"%s\" given twice", index, field_names[f]);
			} else if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9')) {
				return fail(ps, "region %zu: \"%s\" is not a number", index,
					    field_names[f]);
			} else {
				const char *num_at = ps->p;

				err = parse_number(ps, &val[f], &plain, &why_not);
				if (!err && !plain) {
					int len = (int)(ps->p - num_at);

					ps->p = num_at;
					return fail(ps, "region %zu: \"%s\" %.*s%s %s", index,
						    field_names[f], len > 24 ? 24 : len, num_at,
						    len > 24 ? "..." : "", why_not);
				}
				seen[f] = true;
			}
			if (err)
				return err;
			skip_ws(ps);
			if (ps->p == ps->end)
				return -EAGAIN;
			if (*ps->p == '}') {
				ps->p++;
				break;
			}
			if (*ps->p != ',')
				return fail(ps, "expected ',' or '}' in region %zu, found %s", index,
					    shown(ps, b));
			ps->p++;
		}
	}
	for (int f = F_BASE; f <= F_OFFSET; f++) {
		if (!seen[f]) {
			const char *end = ps->p;

			ps->p = region_start;
			err = fail(ps, "region %zu: no \"%s\"", index, field_names[f]);
			ps->p = end;
			return err;
		}
	}
	r->base = val[F_BASE];
	r->size = val[F_SIZE];
	r->offset = val[F_OFFSET];
	/*
	 * Firecracker before 1.7 said neither (4 KiB pages); 1.7 to 1.11 sent
	 * "page_size_kib", 1.12 on both: the same number, in bytes whatever
	 * the name says (Firecracker's own comment calls the name wrong).
	 */
	r->page_size = FC_PAGE_4K;
	if (seen[F_PAGE_SIZE_KIB])
		r->page_size = val[F_PAGE_SIZE_KIB];
	if (seen[F_PAGE_SIZE]) {
		if (seen[F_PAGE_SIZE_KIB] && val[F_PAGE_SIZE] != val[F_PAGE_SIZE_KIB]) {
			ps->p = region_start;
			return fail(ps, "region %zu: \"page_size\" %" PRIu64
				    " and \"page_size_kib\" %" PRIu64 " disagree (both are bytes)",
				    index, val[F_PAGE_SIZE], val[F_PAGE_SIZE_KIB]);
		}
		r->page_size = val[F_PAGE_SIZE];
	}
	return 0;
}

int fc_handshake_parse(const char *buf, size_t len, struct fc_region regions[FC_MAX_REGIONS],
		       size_t *n, char *why, size_t why_size)
{
	struct parser ps = { .start = buf, .p = buf, .end = buf + len,
			     .why = why, .why_size = why_size };
	size_t count = 0;
	char b[16];
	int err;

	if (why_size)
		why[0] = '\0';
	*n = 0;
	if (!buf)
		return len ? -EINVAL : -EAGAIN;
	skip_ws(&ps);
	if (ps.p < ps.end && *ps.p != '[')
		return fail(&ps, "expected '[' (a JSON array of regions), found %s", shown(&ps, b));
	err = expect(&ps, '[', "'['");
	if (err)
		return err;
	skip_ws(&ps);
	if (ps.p == ps.end)
		return -EAGAIN;
	if (*ps.p == ']')
		return fail(&ps, "no regions (an empty array)");
	for (;;) {
		if (count == FC_MAX_REGIONS)
			return fail(&ps, "more than %d regions", FC_MAX_REGIONS);
		err = parse_region(&ps, count, &regions[count]);
		if (err)
			return err;
		count++;
		skip_ws(&ps);
		if (ps.p == ps.end)
			return -EAGAIN;
		if (*ps.p == ']') {
			ps.p++;
			break;
		}
		if (*ps.p != ',')
			return fail(&ps, "expected ',' or ']' after region %zu, found %s", count - 1,
				    shown(&ps, b));
		ps.p++;
	}
	skip_ws(&ps);
	if (ps.p != ps.end)
		return fail(&ps, "%s after the array of regions", shown(&ps, b));
	*n = count;
	return 0;
}

bool fc_scan_closed(struct fc_scan *sc, const char *buf, size_t len)
{
	for (; sc->pos < len && !sc->closed; sc->pos++) {
		char c = buf[sc->pos];

		if (sc->in_string) {
			if (sc->escape)
				sc->escape = false;
			else if (c == '\\')
				sc->escape = true;
			else if (c == '"')
				sc->in_string = false;
		} else if (c == '"') {
			sc->in_string = true;
		} else if (c == '[' || c == '{') {
			sc->depth++;
		} else if (c == ']' || c == '}') {
			if (sc->depth)
				sc->depth--;
			sc->closed = !sc->depth;
		}
	}
	return sc->closed;
}

int fc_handshake_check(const struct fc_region *regions, size_t n, uint64_t file_size,
		       char *why, size_t why_size)
{
	if (why_size)
		why[0] = '\0';
	if (!n)
		return say(why, why_size, "no regions");
	if (n > FC_MAX_REGIONS)
		return say(why, why_size, "%zu regions (at most %d)", n, FC_MAX_REGIONS);
	for (size_t i = 0; i < n; i++) {
		const struct fc_region *r = &regions[i];

		if (r->page_size != FC_PAGE_4K && r->page_size != FC_PAGE_2M)
			return say(why, why_size,
				   "region %zu: page size %" PRIu64 " is neither 4096 nor 2097152 (2 MiB)",
				   i, r->page_size);
		if (!r->size)
			return say(why, why_size, "region %zu: size 0", i);
		if (r->base % r->page_size)
			return say(why, why_size,
				   "region %zu: base_host_virt_addr 0x%" PRIx64
				   " is not aligned to its page size 0x%" PRIx64, i, r->base,
				   r->page_size);
		if (r->size % r->page_size)
			return say(why, why_size,
				   "region %zu: size 0x%" PRIx64 " is not a multiple of its page size 0x%"
				   PRIx64, i, r->size, r->page_size);
		if (r->offset % FC_PAGE_4K)
			return say(why, why_size,
				   "region %zu: offset 0x%" PRIx64 " is not a multiple of 4096", i,
				   r->offset);
		if (r->base + r->size < r->base)
			return say(why, why_size,
				   "region %zu: base_host_virt_addr 0x%" PRIx64 " + size 0x%" PRIx64
				   " overflows", i, r->base, r->size);
		if (r->offset + r->size < r->offset || r->offset + r->size > file_size)
			return say(why, why_size,
				   "region %zu: file bytes 0x%" PRIx64 " + 0x%" PRIx64
				   " are outside the memory file (0x%" PRIx64 " bytes)", i, r->offset,
				   r->size, file_size);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			const struct fc_region *a = &regions[i], *b = &regions[j];

			if (a->base < b->base + b->size && b->base < a->base + a->size)
				return say(why, why_size,
					   "regions %zu and %zu overlap (0x%" PRIx64 "-0x%" PRIx64
					   " and 0x%" PRIx64 "-0x%" PRIx64 ")", i, j, a->base,
					   a->base + a->size, b->base, b->base + b->size);
		}
	return 0;
}
