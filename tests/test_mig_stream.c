// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The migration stream without a VM: round trips through file:, unix: and
 * tcp:, every single-bit flip and every truncation of a small stream,
 * limits and malformed headers, a blocked reader and writer cancelled from
 * another thread, URI parsing.
 *
 * `test_mig_stream --write-corpus DIR` writes the fuzz target's seeds
 * (tests/fuzz/corpus/mig_stream) instead of testing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/util/crc32c.h"
#include "mig_stream.h"
#include "tap.h"

#define BIG_LEN 300000
#define MAX_LEN (1u << 20)
#define PREAMBLE 16
#define HEADER 24

static const char *const names[] = { NULL, "one", "empty", "ram", "tail" };
static unsigned char big[BIG_LEN], tail[1000];
static char dir[64];

static uint64_t test_max(uint32_t type)
{
	return type >= 1 && type <= 4 ? MAX_LEN : 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *slurp(const char *path, size_t *len)
{
	struct stat st;
	void *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf && read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

/* The peer's listener may not be up yet. */
static int connect_retry(const char *uri, struct mig_stream **s, struct vmm_error *e)
{
	double end = now_s() + 5;
	int r;

	do {
		r = mig_open_outgoing(uri, NULL, s, e);
		if (r != -ECONNREFUSED && r != -ENOENT)
			return r;
		sleep_ms(10);
	} while (now_s() < end);
	return r;
}

/* ---- crc32c -------------------------------------------------------- */

static uint32_t crc_bitwise(const unsigned char *p, size_t len)
{
	uint32_t c = ~0u;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

/*
 * The fast path works in steps of three 1 KiB streams: lengths around
 * the step and its multiples, at every alignment, against the portable
 * one, and chained at cuts inside and between steps.
 */
static void test_crc_large(void)
{
	static const size_t lens[] = { 3071, 3072, 3073, 4096, 6143, 6144, 6151, 9216,
				       65536 + 5, 1 << 20 };
	size_t size = (1 << 20) + 8;
	unsigned char *buf = malloc(size);
	bool same = true, chained = true;
	uint32_t x = 2463534242u;

	if (!buf) {
		ok(false, "allocate 1 MiB for the crc32c test");
		return;
	}
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (size_t off = 0; off < 8; off++)
			same &= vr_crc32c(0, buf + off, lens[k]) == vr_crc32c_sw(0, buf + off, lens[k]);
	same &= vr_crc32c(0, buf, 9216) == crc_bitwise(buf, 9216);
	ok(same, "crc32c's fast path matches the portable one from 3 KiB to 1 MiB, every alignment");
	for (size_t cut = 0; cut <= 9216; cut += 511)
		chained &= vr_crc32c(vr_crc32c(0, buf, cut), buf + cut, 9216 - cut) ==
			   vr_crc32c_sw(0, buf, 9216);
	ok(chained, "crc32c's fast path chains at cuts inside and between its steps");
	free(buf);
}

static void test_crc(void)
{
	static unsigned char buf[4096 + 8];
	bool same = true, chained = true;

	is_u64(vr_crc32c(0, "123456789", 9), 0xE3069283, "crc32c(\"123456789\") is the check value");
	is_u64(vr_crc32c(0, NULL, 0), 0, "crc32c of nothing is 0");
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7919 >> 3);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 200; len++)
			same &= vr_crc32c(0, buf + off, len) == crc_bitwise(buf + off, len);
	same &= vr_crc32c(0, buf, 4096) == crc_bitwise(buf, 4096);
	ok(same, "crc32c matches a bitwise reference at every alignment and length 0-200");
	for (size_t cut = 0; cut <= 100; cut++)
		chained &= vr_crc32c(vr_crc32c(0, buf, cut), buf + cut, 100 - cut) ==
			   vr_crc32c(0, buf, 100);
	ok(chained, "crc32c chains at every split point");
	test_crc_large();
}

/* ---- round trips --------------------------------------------------- */

static const size_t write_pieces[] = { 1, 4095, 65536, 200000, 30368 };
static const size_t read_pieces[] = { 7, 70000, 100, 131072, 98821 };
/* Section header offsets: 16, then each previous + 24 + len + 4. */
static const uint64_t want_off[] = { 16, 49, 77, 300105 };
#define WANT_END 301133ULL

static int write_sections(struct mig_stream *s, uint64_t off[4], struct vmm_error *e)
{
	size_t at = 0;
	int r;

	off[0] = mig_out_offset(s);
	r = mig_write_section(s, 1, 7, "hello", 5, e);
	if (r)
		return r;
	off[1] = mig_out_offset(s);
	r = mig_write_section(s, 2, 0, NULL, 0, e);
	if (r)
		return r;
	off[2] = mig_out_offset(s);
	r = mig_section_begin(s, 3, 1, BIG_LEN, e);
	for (size_t i = 0; !r && i < sizeof(write_pieces) / sizeof(write_pieces[0]); i++) {
		r = mig_section_data(s, big + at, write_pieces[i], e);
		at += write_pieces[i];
	}
	if (!r)
		r = mig_section_end(s, e);
	if (r)
		return r;
	off[3] = mig_out_offset(s);
	r = mig_write_section(s, 4, 2, tail, sizeof(tail), e);
	return r ? r : mig_flush(s, e);
}

static bool check_writer(struct mig_stream *s, const uint64_t off[4], char *why, size_t n)
{
	for (int i = 0; i < 4; i++)
		if (off[i] != want_off[i]) {
			snprintf(why, n, "section %d written at %" PRIu64 ", want %" PRIu64, i,
				 off[i], want_off[i]);
			return false;
		}
	if (mig_out_offset(s) != WANT_END || mig_bytes(s) != WANT_END) {
		snprintf(why, n, "writer ends at %" PRIu64 ", want %llu", mig_out_offset(s),
			 WANT_END);
		return false;
	}
	return true;
}

#define FAIL(...) do { snprintf(why, n, __VA_ARGS__); goto out; } while (0)

/* Read what write_sections wrote; false with why[] on the first difference. */
static bool read_sections(struct mig_stream *s, char *why, size_t n)
{
	static unsigned char piece[131072];
	struct mig_section sec;
	struct vmm_error e = { "" };
	void *p = NULL;
	size_t at = 0;
	int r;

	mig_set_section_names(s, names, 5);
	if ((r = mig_read_header(s, test_max, &sec, &e)))
		FAIL("header 1: %d %s", r, e.msg);
	if (sec.type != 1 || sec.id != 7 || sec.len != 5 || sec.offset != want_off[0])
		FAIL("header 1: type %u id %u len %" PRIu64, sec.type, sec.id, sec.len);
	if ((r = mig_read_payload(s, &sec, &p, &e)) || memcmp(p, "hello", 5))
		FAIL("payload 1: %d %s", r, e.msg);
	free(p);
	p = NULL;

	if ((r = mig_read_header(s, test_max, &sec, &e)))
		FAIL("header 2: %d %s", r, e.msg);
	if (sec.type != 2 || sec.len != 0 || sec.offset != want_off[1])
		FAIL("header 2: type %u len %" PRIu64, sec.type, sec.len);
	p = &sec;
	if ((r = mig_read_payload(s, &sec, &p, &e)) || p)
		FAIL("empty payload: %d %s (%p)", r, e.msg, p);

	if ((r = mig_read_header(s, test_max, &sec, &e)))
		FAIL("header 3: %d %s", r, e.msg);
	if (sec.type != 3 || sec.id != 1 || sec.len != BIG_LEN || sec.offset != want_off[2])
		FAIL("header 3: type %u id %u len %" PRIu64, sec.type, sec.id, sec.len);
	for (size_t i = 0; i < sizeof(read_pieces) / sizeof(read_pieces[0]); i++) {
		if ((r = mig_read_data(s, &sec, piece, read_pieces[i], &e)))
			FAIL("piece %zu: %d %s", i, r, e.msg);
		if (memcmp(piece, big + at, read_pieces[i]))
			FAIL("piece %zu differs", i);
		at += read_pieces[i];
	}
	if ((r = mig_read_end(s, &sec, &e)))
		FAIL("end 3: %d %s", r, e.msg);

	if ((r = mig_read_header(s, test_max, &sec, &e)))
		FAIL("header 4: %d %s", r, e.msg);
	if (sec.type != 4 || sec.id != 2 || sec.len != sizeof(tail) || sec.offset != want_off[3])
		FAIL("header 4: type %u id %u len %" PRIu64, sec.type, sec.id, sec.len);
	if ((r = mig_read_payload(s, &sec, &p, &e)) || memcmp(p, tail, sizeof(tail)))
		FAIL("payload 4: %d %s", r, e.msg);
	free(p);
	p = NULL;
	if ((r = mig_read_header(s, test_max, &sec, &e)) != -ENODATA)
		FAIL("at the end: %d %s, want -ENODATA", r, e.msg);
	if (mig_in_offset(s) != WANT_END || mig_bytes(s) != WANT_END)
		FAIL("reader ends at %" PRIu64 ", want %llu", mig_in_offset(s), WANT_END);
	return true;
out:
	if (p != &sec)
		free(p);
	return false;
}

struct peer {
	const char *uri;
	int r;
	char why[400];
};

static void *writer_thread(void *arg)
{
	struct peer *w = arg;
	struct vmm_error e = { "" };
	struct mig_stream *s;
	uint64_t off[4];

	w->r = connect_retry(w->uri, &s, &e);
	if (w->r) {
		snprintf(w->why, sizeof(w->why), "open: %s", e.msg);
		return NULL;
	}
	w->r = write_sections(s, off, &e);
	if (w->r)
		snprintf(w->why, sizeof(w->why), "write: %s", e.msg);
	else if (!check_writer(s, off, w->why, sizeof(w->why)))
		w->r = -1;
	mig_close(s);
	return NULL;
}

static void round_trip_socket(const char *uri)
{
	struct peer w = { .uri = uri };
	struct vmm_error e = { "" };
	struct mig_stream *s = NULL;
	pthread_t t;
	char why[400] = "";
	int r;

	pthread_create(&t, NULL, writer_thread, &w);
	r = mig_open_incoming(uri, 5000, NULL, &s, &e);
	if (!is_int(r, 0, "%s: incoming accepted", uri))
		tap_diag("%s", e.msg);
	if (!r) {
		ok(!mig_is_file(s), "%s: a socket, not a file", uri);
		if (!ok(read_sections(s, why, sizeof(why)), "%s: reader gets every section", uri))
			tap_diag("%s", why);
		mig_close(s);
	}
	pthread_join(t, NULL);
	if (!is_int(w.r, 0, "%s: writer wrote every section at the expected offsets", uri))
		tap_diag("%s", w.why);
}

static void test_round_trips(void)
{
	struct vmm_error e = { "" };
	struct mig_stream *s;
	char uri[128], why[400] = "";
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t slen;
	uint64_t off[4];
	struct stat st;
	int r, fd;

	for (size_t i = 0; i < BIG_LEN; i++)
		big[i] = (unsigned char)((i * 31) ^ (i >> 9));
	for (size_t i = 0; i < sizeof(tail); i++)
		tail[i] = (unsigned char)(255 - i);

	snprintf(uri, sizeof(uri), "file:%s/rt.mig", dir);
	r = mig_open_outgoing(uri, NULL, &s, &e);
	if (is_int(r, 0, "file: outgoing opens")) {
		ok(mig_is_file(s), "file: mig_is_file");
		if (!is_int(write_sections(s, off, &e), 0, "file: writes every section"))
			tap_diag("%s", e.msg);
		if (!ok(check_writer(s, off, why, sizeof(why)), "file: sections at the expected offsets"))
			tap_diag("%s", why);
		mig_close(s);
	} else {
		tap_diag("%s", e.msg);
	}
	ok(!stat(uri + 5, &st) && st.st_size == (off_t)WANT_END && (st.st_mode & 0777) == 0600,
	   "file: %llu bytes, mode 0600", WANT_END);
	r = mig_open_incoming(uri, 0, NULL, &s, &e);
	if (is_int(r, 0, "file: incoming opens")) {
		if (!ok(read_sections(s, why, sizeof(why)), "file: reader gets every section"))
			tap_diag("%s", why);
		mig_close(s);
	}

	snprintf(uri, sizeof(uri), "unix:%s/rt.sock", dir);
	round_trip_socket(uri);
	ok(access(uri + 5, F_OK) < 0 && errno == ENOENT, "unix: socket file removed after accept");

	/* A port free a moment ago (SO_REUSEADDR on our side covers TIME_WAIT). */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	slen = sizeof(sin);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &slen) < 0) {
		tap_skip("tcp:127.0.0.1 round trip", "no IPv4 loopback: %s", strerror(errno));
	} else {
		close(fd);
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", ntohs(sin.sin_port));
		round_trip_socket(uri);
	}

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	slen = sizeof(sin6);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin6, &slen) < 0) {
		tap_skip("tcp:[::1] round trip", "no IPv6 loopback: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
	} else {
		close(fd);
		snprintf(uri, sizeof(uri), "tcp:[::1]:%u", ntohs(sin6.sin6_port));
		round_trip_socket(uri);
	}
}

/* ---- corruption ---------------------------------------------------- */

/* The small stream: sections at 16, 47 and 75; 143 bytes. */
static const size_t small_bounds[] = { 16, 47, 75, 143 };

static int write_small(const char *path, struct vmm_error *e)
{
	unsigned char forty[40];
	struct mig_stream *s;
	char uri[128];
	int r;

	for (int i = 0; i < 40; i++)
		forty[i] = (unsigned char)(i * 3);
	snprintf(uri, sizeof(uri), "file:%s", path);
	r = mig_open_outgoing(uri, NULL, &s, e);
	if (r)
		return r;
	r = mig_write_section(s, 1, 1, "abc", 3, e);
	if (!r)
		r = mig_write_section(s, 2, 2, NULL, 0, e);
	if (!r)
		r = mig_write_section(s, 3, 3, forty, sizeof(forty), e);
	if (!r)
		r = mig_flush(s, e);
	mig_close(s);
	return r;
}

/* Read every section: -ENODATA at a clean end, else the error; *n sections passed. */
static int read_all(const void *buf, size_t len, bool pieces, int *n, struct vmm_error *e)
{
	struct mig_section sec;
	struct mig_stream *s;
	int r;

	*n = 0;
	r = mig_open_buffer(buf, len, &s, e);
	if (r)
		return r;
	mig_set_section_names(s, names, 5);
	while (!(r = mig_read_header(s, test_max, &sec, e))) {
		if (pieces) {
			unsigned char piece[7];
			uint64_t left = sec.len;

			while (!r && left) {
				size_t k = left < sizeof(piece) ? (size_t)left : sizeof(piece);

				r = mig_read_data(s, &sec, piece, k, e);
				left -= k;
			}
			if (!r)
				r = mig_read_end(s, &sec, e);
		} else {
			void *p;

			r = mig_read_payload(s, &sec, &p, e);
			if (!r)
				free(p);
		}
		if (r)
			break;
		(*n)++;
	}
	mig_close(s);
	return r;
}

static bool starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static void test_corruption(void)
{
	struct vmm_error e = { "" };
	unsigned char *buf;
	char path[128];
	size_t len = 0;
	int r, n, bad = 0;

	snprintf(path, sizeof(path), "%s/small.mig", dir);
	r = write_small(path, &e);
	buf = slurp(path, &len);
	if (!is_int(r, 0, "small stream written") || !is_int(len, 143, "small stream is 143 bytes")) {
		tap_diag("%s", e.msg);
		free(buf);
		return;
	}
	for (int pieces = 0; pieces < 2; pieces++) {
		r = read_all(buf, len, pieces, &n, &e);
		ok(r == -ENODATA && n == 3, "intact small stream reads whole (%s)",
		   pieces ? "in pieces" : "payloads");
	}

	/* Every single-bit flip, anywhere, is refused. */
	for (size_t i = 0; i < len * 8; i++)
		for (int pieces = 0; pieces < 2; pieces++) {
			buf[i / 8] ^= (unsigned char)(1u << (i % 8));
			r = read_all(buf, len, pieces, &n, &e);
			buf[i / 8] ^= (unsigned char)(1u << (i % 8));
			if (r != -EPROTO && bad++ < 5)
				tap_diag("bit %zu flipped (%s): %d %s", i, pieces ? "pieces" : "payload",
					 r, e.msg);
		}
	is_int(bad, 0, "each of the %zu single-bit flips gives -EPROTO", len * 8);

	buf[47 + 8] ^= 1;	/* section 2's length */
	r = read_all(buf, len, false, &n, &e);
	buf[47 + 8] ^= 1;
	ok(r == -EPROTO && n == 1 && starts(e.msg, "section 2 (empty) at offset 47: header checksum mismatch"),
	   "flip in a header: named ('%s')", e.msg);
	buf[75 + 24 + 10] ^= 0x80;	/* section 3's payload */
	r = read_all(buf, len, true, &n, &e);
	buf[75 + 24 + 10] ^= 0x80;
	ok(r == -EPROTO && n == 2 && starts(e.msg, "section 3 (ram) at offset 75: payload checksum mismatch"),
	   "flip in a payload: named ('%s')", e.msg);
	buf[16 + 24 + 3 + 2] ^= 4;	/* section 1's crc */
	r = read_all(buf, len, false, &n, &e);
	buf[16 + 24 + 3 + 2] ^= 4;
	ok(r == -EPROTO && n == 0 && starts(e.msg, "section 1 (one) at offset 16: payload checksum mismatch"),
	   "flip in a crc: named ('%s')", e.msg);

	/* Every truncation: -ENODATA exactly at section boundaries, else -EPROTO. */
	bad = 0;
	for (size_t cut = 0; cut <= len; cut++)
		for (int pieces = 0; pieces < 2; pieces++) {
			unsigned char *t = malloc(cut ? cut : 1);	/* exact, for ASan */
			int want = -EPROTO, want_n = -1;

			memcpy(t, buf, cut);
			for (int b = 0; b < 4; b++)
				if (cut == small_bounds[b]) {
					want = -ENODATA;
					want_n = b;
				}
			r = read_all(t, cut, pieces, &n, &e);
			free(t);
			if ((r != want || (want_n >= 0 && n != want_n)) && bad++ < 5)
				tap_diag("cut at %zu (%s): %d after %d sections, %s", cut,
					 pieces ? "pieces" : "payload", r, n, e.msg);
		}
	is_int(bad, 0, "each truncation at 0..%zu bytes gives -EPROTO, or -ENODATA at a boundary",
	       len);
	r = read_all(buf, 100, false, &n, &e);
	ok(r == -EPROTO && !strcmp(e.msg, "section 3 (ram) at offset 75: truncated at offset 100"),
	   "truncation: named ('%s')", e.msg);
	r = read_all(buf, 50, true, &n, &e);
	ok(r == -EPROTO && starts(e.msg, "section header at offset 47: truncated at offset 50"),
	   "truncation before the type: named ('%s')", e.msg);
	r = read_all(buf, 10, false, &n, &e);
	ok(r == -EPROTO && strstr(e.msg, "preamble"), "truncated preamble: '%s'", e.msg);
	r = read_all(buf, 16, false, &n, &e);
	ok(r == -ENODATA && strstr(e.msg, "offset 16"), "preamble only: -ENODATA ('%s')", e.msg);
	free(buf);
}

/* A preamble (with this magic, version, flags) and one section header. */
static size_t craft(unsigned char *b, const char *magic, uint32_t version, uint32_t flags,
		    uint32_t type, uint64_t len, uint32_t pad)
{
	unsigned char *h = b + PREAMBLE;

	memcpy(b, magic, 8);
	for (int i = 0; i < 4; i++) {
		b[8 + i] = (unsigned char)(version >> (8 * i));
		b[12 + i] = (unsigned char)(flags >> (8 * i));
		h[i] = (unsigned char)(type >> (8 * i));
		h[4 + i] = 0;
		h[20 + i] = (unsigned char)(pad >> (8 * i));
	}
	for (int i = 0; i < 8; i++)
		h[8 + i] = (unsigned char)(len >> (8 * i));
	uint32_t crc = vr_crc32c(0, h, 16);
	for (int i = 0; i < 4; i++)
		h[16 + i] = (unsigned char)(crc >> (8 * i));
	return PREAMBLE + HEADER;
}

static void test_malformed(void)
{
	unsigned char b[PREAMBLE + HEADER + 64] = { 0 };
	struct vmm_error e = { "" };
	size_t n;
	int r, k;

	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 3, MAX_LEN + 1ULL, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && !strcmp(e.msg, "section 3 (ram) at offset 16: length 1048577 exceeds the 1048576 allowed"),
	   "oversize length refused before reading it ('%s')", e.msg);
	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 3, ~0ULL, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "exceeds"), "length 2^64-1 refused");
	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 3, MAX_LEN, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "truncated"), "largest length allowed, data missing: truncated ('%s')",
	   e.msg);
	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 99, 4, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && !strcmp(e.msg, "unknown section type 99 at offset 16"),
	   "unknown type refused ('%s')", e.msg);
	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 0, 0, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "unknown section type 0"), "type 0 refused");
	n = craft(b, MIG_MAGIC, MIG_VERSION, 0, 1, 0, 1);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "pad"), "non-zero pad refused ('%s')", e.msg);
	n = craft(b, "VMRASMIX", MIG_VERSION, 0, 1, 0, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "not a vmras migration stream"), "bad magic refused ('%s')",
	   e.msg);
	/* Version 1: before the ram-image section's per-page checksums. */
	n = craft(b, MIG_MAGIC, 1, 0, 1, 0, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && !strcmp(e.msg, "migration stream version 1, this VMM reads version 2"),
	   "other version refused, both named ('%s')", e.msg);
	n = craft(b, MIG_MAGIC, MIG_VERSION, 4, 1, 0, 0);
	r = read_all(b, n, false, &k, &e);
	ok(r == -EPROTO && strstr(e.msg, "flags 0x4"), "unknown flags refused ('%s')", e.msg);
	r = read_all(NULL, 0, false, &k, &e);
	is_int(r, -EPROTO, "empty buffer refused");
}

/* Misuse is -EINVAL and leaves the stream usable; a bad section does not. */
static void test_misuse(void)
{
	struct vmm_error e = { "" };
	struct mig_stream *s, *w;
	struct mig_section sec, other;
	unsigned char *buf, x[64];
	char path[128], uri[160];
	size_t len = 0;
	void *p;
	int r;

	snprintf(path, sizeof(path), "%s/small.mig", dir);
	buf = slurp(path, &len);
	if (!buf || mig_open_buffer(buf, len, &s, &e)) {
		ok(false, "open small stream: %s", e.msg);
		free(buf);
		return;
	}
	mig_set_section_names(s, names, 5);
	r = mig_read_header(s, test_max, &sec, &e);
	is_int(r, 0, "header 1");
	r = mig_read_data(s, &sec, x, 4, &e);
	ok(r == -EINVAL && strstr(e.msg, "past its end"), "reading past a section: -EINVAL ('%s')",
	   e.msg);
	is_int(mig_read_data(s, &sec, x, 1, &e), 0, "then a piece within it");
	r = mig_read_end(s, &sec, &e);
	ok(r == -EINVAL && strstr(e.msg, "2 payload bytes unread"), "ending early: -EINVAL ('%s')",
	   e.msg);
	r = mig_read_header(s, test_max, &other, &e);
	is_int(r, -EINVAL, "next header before the end: -EINVAL");
	r = mig_read_payload(s, &sec, &p, &e);
	is_int(r, -EINVAL, "whole payload after a piece: -EINVAL");
	other = sec;
	other.offset++;
	is_int(mig_read_data(s, &other, x, 1, &e), -EINVAL, "another section's data: -EINVAL");
	ok(!mig_read_data(s, &sec, x + 1, 2, &e) && !mig_read_end(s, &sec, &e) &&
	   !memcmp(x, "abc", 3), "the stream still reads after misuse");
	is_int(mig_read_header(s, test_max, &sec, &e), 0, "header 2");
	p = x;
	ok(!mig_read_payload(s, &sec, &p, &e) && !p, "empty payload is NULL");
	is_int(mig_write_section(s, 1, 0, "x", 1, &e), -EBADF, "a buffer reader does not write");
	mig_close(s);

	/* A broken section makes the stream unusable. */
	buf[75 + 30] ^= 1;
	mig_open_buffer(buf, len, &s, &e);
	for (int i = 0; i < 3; i++)
		if (!mig_read_header(s, test_max, &sec, &e)) {
			p = NULL;
			r = mig_read_payload(s, &sec, &p, &e);
			free(p);
		}
	is_int(r, -EPROTO, "bad payload crc");
	is_int(mig_read_header(s, test_max, &sec, &e), -EPROTO, "and -EPROTO stays");
	mig_close(s);
	free(buf);

	snprintf(uri, sizeof(uri), "file:%s/misuse.mig", dir);
	if (!is_int(mig_open_outgoing(uri, NULL, &w, &e), 0, "file writer"))
		return;
	is_int(mig_section_data(w, "x", 1, &e), -EINVAL, "data outside a section: -EINVAL");
	is_int(mig_section_begin(w, 1, 0, 2, &e), 0, "begin");
	is_int(mig_section_begin(w, 1, 0, 2, &e), -EINVAL, "begin inside a section: -EINVAL");
	is_int(mig_section_data(w, "xyz", 3, &e), -EINVAL, "more data than the length: -EINVAL");
	is_int(mig_section_data(w, "x", 1, &e), 0, "data");
	r = mig_section_end(w, &e);
	ok(r == -EINVAL && strstr(e.msg, "1 payload bytes not written"), "end short of the length: -EINVAL ('%s')",
	   e.msg);
	ok(!mig_section_data(w, "y", 1, &e) && !mig_section_end(w, &e), "then completes");
	is_int(mig_read_header(w, test_max, &sec, &e), -EBADF, "an outgoing file does not read");
	mig_close(w);
}

/* ---- cancellation and dead peers ----------------------------------- */

static atomic_bool peer_release, flood_done;
static struct mig_stream *_Atomic flood_stream;

static void *silent_peer(void *arg)
{
	struct peer *w = arg;
	struct vmm_error e = { "" };
	struct mig_stream *s;

	w->r = connect_retry(w->uri, &s, &e);
	if (w->r) {
		snprintf(w->why, sizeof(w->why), "%s", e.msg);
		return NULL;
	}
	while (!atomic_load(&peer_release))
		sleep_ms(10);
	mig_close(s);
	return NULL;
}

struct blocked {
	struct mig_stream *s;
	atomic_bool returned;
	int r;			/* r, t and e: read after the join */
	double t;
	struct vmm_error e;
};

static void *blocked_reader(void *arg)
{
	struct blocked *b = arg;
	struct mig_section sec;

	b->r = mig_read_header(b->s, test_max, &sec, &b->e);
	b->t = now_s();
	atomic_store(&b->returned, true);
	return NULL;
}

/* Join within a deadline, or the test cannot go on. */
static bool join_within(pthread_t t, double seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)seconds;
	ts.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return !pthread_timedjoin_np(t, NULL, &ts);
}

static void *flood_writer(void *arg)
{
	static unsigned char chunk[1 << 20];
	struct peer *w = arg;
	struct vmm_error e = { "" };
	struct mig_stream *s;
	int r;

	r = connect_retry(w->uri, &s, &e);
	if (r) {
		w->r = r;
		snprintf(w->why, sizeof(w->why), "%s", e.msg);
		atomic_store(&flood_done, true);
		return NULL;
	}
	atomic_store(&flood_stream, s);
	r = mig_section_begin(s, 3, 0, 64ULL << 20, &e);
	for (int i = 0; !r && i < 64; i++)
		r = mig_section_data(s, chunk, sizeof(chunk), &e);
	w->r = r;
	snprintf(w->why, sizeof(w->why), "%s", e.msg);
	atomic_store(&flood_done, true);
	return NULL;
}

static void *accept_and_close(void *arg)
{
	struct peer *w = arg;
	struct vmm_error e = { "" };
	struct mig_stream *s;

	w->r = mig_open_incoming(w->uri, 5000, NULL, &s, &e);
	if (w->r)
		snprintf(w->why, sizeof(w->why), "%s", e.msg);
	else
		mig_close(s);
	return NULL;
}

static void test_cancel(void)
{
	struct vmm_error e = { "" };
	struct blocked b = { .s = NULL };
	struct mig_stream *s, *in;
	struct peer w = { 0 };
	struct mig_section sec;
	pthread_t pt, rt;
	char uri[128], path[128];
	double t0;
	size_t len;
	void *buf;
	int r;

	/* A reader blocked on a connected, silent peer. */
	snprintf(uri, sizeof(uri), "unix:%s/cancel.sock", dir);
	w.uri = uri;
	pthread_create(&pt, NULL, silent_peer, &w);
	r = mig_open_incoming(uri, 5000, NULL, &in, &e);
	if (!is_int(r, 0, "cancel: peer connected")) {
		tap_diag("%s", e.msg);
		atomic_store(&peer_release, true);
		pthread_join(pt, NULL);
		return;
	}
	b.s = in;
	pthread_create(&rt, NULL, blocked_reader, &b);
	sleep_ms(200);
	ok(!atomic_load(&b.returned), "cancel: the reader is blocked on a silent peer");
	t0 = now_s();
	mig_cancel(in);
	if (!ok(join_within(rt, 5), "cancel: the blocked reader returns")) {
		tap_diag("a reader thread is stuck in mig_read_header; giving up");
		exit(tap_done() | 1);
	}
	is_int(b.r, -ECANCELED, "cancel: it returns -ECANCELED ('%s')", b.e.msg);
	ok(b.t - t0 < 1.0, "cancel: within a second (%.3f s)", b.t - t0);
	is_int(mig_read_header(in, test_max, &sec, &e), -ECANCELED, "cancel: later reads too");
	is_int(mig_write_section(in, 1, 0, "x", 1, &e), -ECANCELED, "cancel: and writes");
	atomic_store(&peer_release, true);
	pthread_join(pt, NULL);
	mig_close(in);

	/* A writer blocked on a peer that does not read. */
	snprintf(uri, sizeof(uri), "unix:%s/flood.sock", dir);
	w = (struct peer){ .uri = uri };
	pthread_create(&pt, NULL, flood_writer, &w);
	r = mig_open_incoming(uri, 5000, NULL, &in, &e);
	if (!is_int(r, 0, "cancel: writer's peer connected")) {
		tap_diag("%s", e.msg);
		pthread_join(pt, NULL);
		return;
	}
	while (!atomic_load(&flood_stream))
		sleep_ms(10);
	sleep_ms(300);
	ok(!atomic_load(&flood_done), "cancel: the writer is blocked on a full socket");
	t0 = now_s();
	mig_cancel(atomic_load(&flood_stream));
	if (!ok(join_within(pt, 5), "cancel: the blocked writer returns")) {
		tap_diag("a writer thread is stuck in mig_section_data; giving up");
		exit(tap_done() | 1);
	}
	ok(now_s() - t0 < 1.0, "cancel: writer within a second (%.3f s)", now_s() - t0);
	is_int(w.r, -ECANCELED, "cancel: the writer gets -ECANCELED ('%s')", w.why);
	mig_close(atomic_load(&flood_stream));
	mig_close(in);

	/* Files and buffers: checked between transfers. */
	snprintf(uri, sizeof(uri), "file:%s/cancel.mig", dir);
	if (!mig_open_outgoing(uri, NULL, &s, &e)) {
		mig_cancel(s);
		is_int(mig_write_section(s, 1, 0, "x", 1, &e), -ECANCELED, "cancel: file writer");
		mig_close(s);
	}
	snprintf(path, sizeof(path), "%s/small.mig", dir);
	buf = slurp(path, &len);
	if (buf && !mig_open_buffer(buf, len, &s, &e)) {
		mig_cancel(s);
		is_int(mig_read_header(s, test_max, &sec, &e), -ECANCELED, "cancel: buffer reader");
		mig_close(s);
	}
	free(buf);

	/* A peer that went away: -EPIPE, not SIGPIPE. */
	snprintf(uri, sizeof(uri), "unix:%s/dead.sock", dir);
	w = (struct peer){ .uri = uri };
	pthread_create(&pt, NULL, accept_and_close, &w);
	r = connect_retry(uri, &s, &e);
	pthread_join(pt, NULL);
	if (is_int(r, 0, "dead peer: connected") && is_int(w.r, 0, "dead peer: accepted")) {
		for (int i = 0; i < 16 && !r; i++)
			r = mig_write_section(s, 3, 0, big, BIG_LEN, &e);
		ok(r == -EPIPE || r == -ECONNRESET, "dead peer: the writer gets -EPIPE ('%s')", e.msg);
		mig_close(s);
	}

	/* Nobody comes. */
	snprintf(uri, sizeof(uri), "unix:%s/nobody.sock", dir);
	t0 = now_s();
	r = mig_open_incoming(uri, 100, NULL, &s, &e);
	ok(r == -ETIMEDOUT && now_s() - t0 < 2, "incoming times out ('%s')", e.msg);
	ok(access(uri + 5, F_OK) < 0, "and removes its socket file");
}

/* ---- URIs ---------------------------------------------------------- */

static void test_uris(void)
{
	static const char *const good[] = {
		"tcp:127.0.0.1:4444", "tcp:[::1]:4444", "tcp:localhost:1", "tcp:host:65535",
		"tcp::4444", "unix:/tmp/x.sock", "unix:rel", "file:/tmp/x.mig", "file:x",
	};
	static const char *const bad[] = {
		"tcp:", "tcp:host", "tcp:host:99999", "unix:", "foo:bar", "file:", "tcp:host:0",
		"tcp:host:", "tcp:host:12a", "tcp:host:-1", "tcp:::1:4444", "tcp:[::1", "tcp:[]:1",
		"tcp:[::1]4444", "tcp:host:000004444", "", "TCP:host:1", "file",
	};
	struct vmm_error e = { "" };
	char longpath[200];
	struct mig_stream *s;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!is_int(mig_uri_check(good[i], &e), 0, "uri '%s' accepted", good[i]))
			tap_diag("%s", e.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.msg[0] = 0;
		int r = mig_uri_check(bad[i], &e);

		ok(r == -EINVAL && strstr(e.msg, bad[i]), "uri '%s' refused ('%s')", bad[i], e.msg);
	}
	memset(longpath, 'a', sizeof(longpath));
	memcpy(longpath, "unix:", 5);
	longpath[sizeof(longpath) - 1] = 0;
	is_int(mig_uri_check(longpath, &e), -ENAMETOOLONG, "unix path longer than sun_path refused");
	is_int(mig_open_outgoing("tcp:host", NULL, &s, &e), -EINVAL, "open_outgoing checks the uri");
	is_int(mig_open_incoming("foo:bar", 0, NULL, &s, &e), -EINVAL, "open_incoming checks the uri");
	ok(mig_open_incoming("file:/nonexistent/x.mig", 0, NULL, &s, &e) == -ENOENT &&
	   strstr(e.msg, "/nonexistent/x.mig"), "missing file: -ENOENT naming it ('%s')", e.msg);
}

/* ---- fuzz seeds ---------------------------------------------------- */

static int write_corpus(const char *out)
{
	unsigned char data[2000];
	struct vmm_error e = { "" };
	struct mig_stream *s;
	char path[512];
	int r = 0;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13 + (i >> 7));
	snprintf(path, sizeof(path), "%s/small", out);
	r |= write_small(path, &e);

	snprintf(path, sizeof(path), "file:%s/preamble-only", out);
	if (!(r |= mig_open_outgoing(path, NULL, &s, &e)))
		mig_close(s);

	snprintf(path, sizeof(path), "file:%s/pieces", out);
	if (!(r |= mig_open_outgoing(path, NULL, &s, &e))) {
		r |= mig_section_begin(s, 5, 9, sizeof(data), &e);
		for (size_t at = 0; !r && at < sizeof(data); at += 500)
			r |= mig_section_data(s, data + at, 500, &e);
		r |= mig_section_end(s, &e);
		r |= mig_write_section(s, 16, 0xffffffff, "last", 4, &e);
		mig_close(s);
	}

	snprintf(path, sizeof(path), "file:%s/many", out);
	if (!(r |= mig_open_outgoing(path, NULL, &s, &e))) {
		for (uint32_t i = 0; !r && i < 24; i++)
			r |= mig_write_section(s, 1 + i % 16, i, data + i, (i * 7) % 61, &e);
		mig_close(s);
	}
	if (r)
		fprintf(stderr, "write corpus: %s\n", e.msg);
	return r ? 1 : 0;
}

static void cleanup(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (!d)
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
	snprintf(dir, sizeof(dir), "/tmp/test_mig_stream.XXXXXX");
	if (!mkdtemp(dir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_crc();
	test_uris();
	test_round_trips();
	test_corruption();
	test_malformed();
	test_misuse();
	test_cancel();
	cleanup();
	return tap_done();
}
