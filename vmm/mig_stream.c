// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The migration stream's framing and transports. Writes go through a
 * 256 KiB buffer so a section header is not a syscall of its own, reads
 * through a 64 KiB one; pieces larger than the buffer bypass it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mig_stream.h"
#include "util/crc32c.h"

#define PREAMBLE_SIZE 16
#define HEADER_SIZE 24
#define CRC_SIZE 4
#define WBUF_SIZE (256 * 1024)
#define RBUF_SIZE (64 * 1024)
/* One write(2) at most this big, so a cancelled file write stops soon. */
#define WRITE_CHUNK (8u << 20)
#define DIRECT_WRITE (64 * 1024)	/* writes this large skip the buffer */

_Static_assert(sizeof(MIG_MAGIC) - 1 == 8, "the magic fills 8 bytes");

enum mig_transport { MIG_TCP, MIG_UNIX, MIG_FILE };

struct mig_uri {
	enum mig_transport transport;
	char host[256];		/* tcp, without brackets; "" for any/loopback */
	char port[6];
	const char *path;	/* unix, file: in the caller's string */
};

struct mig_stream {
	int fd;			/* -1: a buffer reader */
	bool is_socket, readable, writable;
	atomic_bool cancelled;
	/*
	 * Sticky, one per direction: framing is lost after a failed transfer,
	 * but a reader that met a bad section may still answer its peer why.
	 */
	int rerr, werr;
	const char *const *names;
	unsigned int nnames;

	unsigned char *wbuf;
	size_t wlen;
	uint64_t out_off;	/* including what still sits in wbuf */
	uint64_t sent;		/* handed to the kernel: where a failed write stopped */
	bool w_open;		/* between mig_section_begin and _end */
	struct mig_section w_sec;
	uint64_t w_left;
	uint32_t w_crc;

	const unsigned char *rdata;	/* rbuf, or the buffer reader's bytes */
	unsigned char *rbuf;
	size_t rpos, rlen;
	uint64_t in_off;	/* consumed by the caller, not merely buffered */
	bool r_open;
	struct mig_section r_sec;
	uint64_t r_left;
	uint32_t r_crc;

	pthread_mutex_t side_lock;	/* mig_send_small's writers */
};

/* ---- little-endian fields ------------------------------------------ */

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const unsigned char *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- messages ------------------------------------------------------ */

void mig_set_section_names(struct mig_stream *s, const char *const *names, unsigned int n)
{
	s->names = names;
	s->nnames = names ? n : 0;
}

/*
 * "section 3 (ram) at offset 123: WHAT", or "section header at offset 123:
 * WHAT" when not even the type could be read (type < 0).
 */
static __attribute__((format(printf, 6, 7)))
int sec_fail(const struct mig_stream *s, struct vmm_error *e, int err, int64_t type,
	     uint64_t off, const char *fmt, ...)
{
	char what[200], name[64] = "";
	va_list ap;

	if (!e)
		return err;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (type < 0)
		return vmm_failf(e, err, "section header at offset %" PRIu64 ": %s", off, what);
	if ((uint64_t)type < s->nnames && s->names[type])
		snprintf(name, sizeof(name), " (%s)", s->names[type]);
	return vmm_failf(e, err, "section %" PRId64 "%s at offset %" PRIu64 ": %s", type, name,
			 off, what);
}

/* ---- URIs ---------------------------------------------------------- */

static int bad_uri(struct vmm_error *e, const char *uri, const char *why)
{
	return vmm_failf(e, -EINVAL, "migration URI '%s': %s", uri, why);
}

static int uri_parse(const char *uri, struct mig_uri *u, struct vmm_error *e)
{
	const char *rest, *host, *colon, *port;
	size_t host_len;
	unsigned long p;

	memset(u, 0, sizeof(*u));
	if (!strncmp(uri, "file:", 5) || !strncmp(uri, "unix:", 5)) {
		u->transport = uri[0] == 'f' ? MIG_FILE : MIG_UNIX;
		u->path = uri + 5;
		if (!*u->path)
			return bad_uri(e, uri, "no path");
		if (u->transport == MIG_UNIX &&
		    strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return vmm_failf(e, -ENAMETOOLONG,
					 "migration URI '%s': socket path longer than %zu bytes", uri,
					 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return 0;
	}
	if (strncmp(uri, "tcp:", 4))
		return bad_uri(e, uri, "want tcp:HOST:PORT, unix:PATH or file:PATH");
	u->transport = MIG_TCP;
	rest = uri + 4;
	if (*rest == '[') {
		host = rest + 1;
		colon = strchr(host, ']');
		if (!colon)
			return bad_uri(e, uri, "no ']' after the IPv6 address");
		host_len = (size_t)(colon - host);
		if (!host_len)
			return bad_uri(e, uri, "empty IPv6 address");
		colon++;
		if (*colon != ':')
			return bad_uri(e, uri, "want tcp:HOST:PORT");
	} else {
		host = rest;
		colon = strchr(rest, ':');
		if (!colon)
			return bad_uri(e, uri, "want tcp:HOST:PORT");
		if (strchr(colon + 1, ':'))
			return bad_uri(e, uri, "an IPv6 address goes in brackets: tcp:[ADDR]:PORT");
		host_len = (size_t)(colon - host);
	}
	if (host_len >= sizeof(u->host))
		return bad_uri(e, uri, "host name too long");
	memcpy(u->host, host, host_len);
	port = colon + 1;
	if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
		return bad_uri(e, uri, "the port must be a number from 1 to 65535");
	p = strtoul(port, NULL, 10);
	if (p < 1 || p > 65535)
		return bad_uri(e, uri, "the port must be a number from 1 to 65535");
	snprintf(u->port, sizeof(u->port), "%lu", p);
	return 0;
}

int mig_uri_check(const char *uri, struct vmm_error *e)
{
	struct mig_uri u;

	return uri_parse(uri, &u, e);
}

/* ---- sockets ------------------------------------------------------- */

static int resolve(const struct mig_uri *u, bool passive, struct addrinfo **res,
		   struct vmm_error *e)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	int r = getaddrinfo(u->host[0] ? u->host : NULL, u->port, &hints, res);

	if (!r)
		return 0;
	if (r == EAI_SYSTEM)
		return vmm_fail(e, errno ? -errno : -EIO, "resolve '%s'", u->host);
	return vmm_failf(e, r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH, "resolve '%s': %s",
			 u->host, gai_strerror(r));
}

/* connect(2), finishing one that a signal interrupted: 0 or -errno. */
/* Waits in short slices so that *cancel (if any) is seen soon. */
#define CANCEL_POLL_MS 100

static bool open_cancelled(const atomic_bool *cancel)
{
	return cancel && atomic_load(cancel);
}

/* Set or clear O_NONBLOCK: 0 or -errno. */
static int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, const atomic_bool *cancel)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t elen = sizeof(int);
	int err, n;

	/* Non-blocking: a peer that never answers must not hold a cancel up. */
	err = set_nonblock(fd, true);
	if (err)
		return err;
	/* A unix listener with a full backlog says EAGAIN at once: ask again, 10 s at most. */
	for (int tries = 0; connect(fd, sa, len) < 0; tries++) {
		if (errno == EINTR || errno == EINPROGRESS)
			goto wait;
		if (errno != EAGAIN || tries >= 100)
			return -errno;
		if (open_cancelled(cancel))
			return -ECANCELED;
		poll(NULL, 0, CANCEL_POLL_MS);
	}
	goto blocking;
wait:
	/* It goes on in the background; wait for its outcome. */
	while ((n = poll(&pfd, 1, CANCEL_POLL_MS)) <= 0) {
		if (n < 0 && errno != EINTR)
			return -errno;
		if (open_cancelled(cancel))
			return -ECANCELED;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		return -errno;
	if (err)
		return -err;
blocking:
	/* The stream itself blocks (cancel shuts the socket down). */
	return set_nonblock(fd, false);
}

static int tcp_connect(const struct mig_uri *u, const char *uri, const atomic_bool *cancel,
		       int *out, struct vmm_error *e)
{
	struct addrinfo *res, *ai;
	int r, fd = -1, err = -EHOSTUNREACH;

	r = resolve(u, false, &res, e);
	if (r)
		return r;
	/*
	 * No socket options: Nagle may stay on (we send in large writes) and
	 * the kernel's buffer autotuning beats any fixed SO_SNDBUF.
	 */
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		err = connect_fd(fd, ai->ai_addr, ai->ai_addrlen, cancel);
		if (!err || err == -ECANCELED) {
			if (err) {
				close(fd);
				fd = -1;
			}
			break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return vmm_fail(e, err, "connect to %s", uri);
	*out = fd;
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

static int unix_connect(const char *path, const atomic_bool *cancel, int *out,
			struct vmm_error *e)
{
	struct sockaddr_un sa;
	int fd, r;

	r = unix_addr(path, &sa);
	if (r)
		return vmm_fail(e, r, "unix socket %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmm_fail(e, -errno, "socket for unix:%s", path);
	r = connect_fd(fd, (struct sockaddr *)&sa, sizeof(sa), cancel);
	if (r) {
		close(fd);
		return vmm_fail(e, r, "connect to unix:%s", path);
	}
	*out = fd;
	return 0;
}

/* A non-blocking listener (accept after poll must not block) with SO_REUSEADDR. */
static int listener(int family, int proto, const struct sockaddr *sa, socklen_t len)
{
	int one = 1, fd, err;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, sa, len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int tcp_listen(const struct mig_uri *u, const char *uri, int *out, struct vmm_error *e)
{
	struct addrinfo *res, *ai;
	int r, fd = -EADDRNOTAVAIL;

	r = resolve(u, true, &res, e);
	if (r)
		return r;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = listener(ai->ai_family, ai->ai_protocol, ai->ai_addr, ai->ai_addrlen);
		if (fd < 0)
			continue;
		if (!listen(fd, 1))
			break;
		r = -errno;
		close(fd);
		fd = r;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return vmm_fail(e, fd, "listen on %s", uri);
	*out = fd;
	return 0;
}

static int unix_listen(const char *path, int *out, struct vmm_error *e)
{
	struct sockaddr_un sa, tmp = { 0 };
	struct stat st;
	int fd, r;

	r = unix_addr(path, &sa);
	if (r)
		return vmm_fail(e, r, "unix socket %s", path);
	/* A stale socket from an earlier run is replaced; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return vmm_failf(e, -EEXIST, "migration path %s exists and is not a socket",
					 path);
		if (unlink(path) < 0)
			return vmm_fail(e, -errno, "remove stale socket %s", path);
	}
	/*
	 * Made under a temporary name and renamed into place once it listens,
	 * owner only (guest memory goes through it): whoever sees the path can
	 * connect at once, and nobody else could before the chmod. (umask
	 * would do the latter but is process-wide, and other threads run.)
	 */
	if (snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp.sun_path))
		return vmm_failf(e, -ENAMETOOLONG, "unix socket path %s is too long", path);
	tmp.sun_family = AF_UNIX;
	unlink(tmp.sun_path);
	fd = listener(AF_UNIX, 0, (struct sockaddr *)&tmp, sizeof(tmp));
	if (fd < 0)
		return vmm_fail(e, fd, "bind unix:%s", tmp.sun_path);
	if (chmod(tmp.sun_path, 0600) < 0 || listen(fd, 1) < 0 ||
	    rename(tmp.sun_path, sa.sun_path) < 0) {
		r = vmm_fail(e, -errno, "listen on unix:%s", sa.sun_path);
		close(fd);
		unlink(tmp.sun_path);
		return r;
	}
	*out = fd;
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int accept_one(int lfd, int timeout_ms, const atomic_bool *cancel, const char *uri,
		      int *out, struct vmm_error *e)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };

	for (;;) {
		int ms = -1, n, fd;

		int64_t left = deadline - now_ms();

		if (open_cancelled(cancel))
			return vmm_failf(e, -ECANCELED, "waiting for a migration peer on %s: "
					 "cancelled", uri);
		if (timeout_ms >= 0)
			ms = left > 0 ? (int)left : 0;
		if (cancel && (ms < 0 || ms > CANCEL_POLL_MS))
			ms = CANCEL_POLL_MS;
		n = poll(&pfd, 1, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vmm_fail(e, -errno, "wait for a migration peer on %s", uri);
		}
		if (!n && timeout_ms >= 0 && deadline - now_ms() <= 0)
			return vmm_failf(e, -ETIMEDOUT, "no migration peer connected to %s within %d ms",
					 uri, timeout_ms);
		if (!n)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		/* The peer may have gone again before we took it. */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return vmm_fail(e, -errno, "accept on %s", uri);
	}
}

/* ---- transfers ----------------------------------------------------- */

static struct mig_stream *stream_new(int fd, bool is_socket, bool readable, bool writable)
{
	struct mig_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->fd = fd;
	s->is_socket = is_socket;
	s->readable = readable;
	s->writable = writable;
	atomic_init(&s->cancelled, false);
	pthread_mutex_init(&s->side_lock, NULL);
	return s;
}

static void stream_free(struct mig_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->wbuf);
	free(s->rbuf);
	pthread_mutex_destroy(&s->side_lock);
	free(s);
}

static bool cancelled(const struct mig_stream *s)
{
	return atomic_load(&((struct mig_stream *)s)->cancelled);
}

/*
 * All of iov[0..cnt) out (it is consumed): 0 or -errno (-ECANCELED once
 * mig_cancel was called). At most WRITE_CHUNK a call, so a cancelled file
 * write stops soon.
 */
static int out_writev(struct mig_stream *s, struct iovec *iov, int cnt)
{
	for (;;) {
		struct iovec v[2];
		size_t left = WRITE_CHUNK, done;
		int k = 0;
		ssize_t r;

		while (cnt && !iov->iov_len) {
			iov++;
			cnt--;
		}
		if (!cnt)
			return 0;
		for (int i = 0; i < cnt && k < 2 && left; i++, k++) {
			v[k].iov_base = iov[i].iov_base;
			v[k].iov_len = iov[i].iov_len < left ? iov[i].iov_len : left;
			left -= v[k].iov_len;
		}
		if (cancelled(s))
			return -ECANCELED;
		/* MSG_NOSIGNAL: a dead peer is -EPIPE, not SIGPIPE. */
		if (s->is_socket)
			r = sendmsg(s->fd, &(struct msghdr){ .msg_iov = v, .msg_iovlen = (size_t)k },
				    MSG_NOSIGNAL);
		else
			r = writev(s->fd, v, k);
		if (r < 0) {
			int err = -errno;

			if (err == -EINTR)
				continue;
			return cancelled(s) ? -ECANCELED : err;
		}
		if (!r)
			return cancelled(s) ? -ECANCELED : -EIO;
		s->sent += (uint64_t)r;
		for (done = (size_t)r; cnt && done >= iov->iov_len; iov++, cnt--)
			done -= iov->iov_len;
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
}

static int out_write_all(struct mig_stream *s, const void *buf, size_t n)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = n };

	return out_writev(s, &v, 1);
}

static int out_flush(struct mig_stream *s)
{
	int r;

	if (!s->wlen)
		return 0;
	r = out_write_all(s, s->wbuf, s->wlen);
	if (!r)
		s->wlen = 0;
	return r;
}

static int out_put(struct mig_stream *s, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	int r;

	/* Large: straight from the caller's memory, behind what is buffered. */
	if (n >= DIRECT_WRITE) {
		struct iovec v[2] = { { s->wbuf, s->wlen }, { (void *)p, n } };

		r = out_writev(s, v, 2);
		if (!r) {
			s->wlen = 0;
			s->out_off += n;
		}
		return r;
	}
	while (n) {
		size_t k;

		if (!s->wbuf) {
			s->wbuf = malloc(WBUF_SIZE);
			if (!s->wbuf)
				return -ENOMEM;
		}
		k = WBUF_SIZE - s->wlen < n ? WBUF_SIZE - s->wlen : n;
		memcpy(s->wbuf + s->wlen, p, k);
		s->wlen += k;
		s->out_off += k;
		p += k;
		n -= k;
		if (s->wlen == WBUF_SIZE) {
			r = out_flush(s);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * Up to n bytes into buf; *got < n only at the end of the stream.
 * 0 or -errno (-ECANCELED once mig_cancel was called: shutdown(2) makes a
 * blocked read return 0, which is no end of stream then).
 */
static int in_read(struct mig_stream *s, void *buf, size_t n, size_t *got)
{
	unsigned char *p = buf;

	*got = 0;
	while (*got < n) {
		size_t want = n - *got;
		bool direct;
		ssize_t r;

		if (s->rpos < s->rlen) {
			size_t k = s->rlen - s->rpos < want ? s->rlen - s->rpos : want;

			memcpy(p + *got, s->rdata + s->rpos, k);
			s->rpos += k;
			s->in_off += k;
			*got += k;
			continue;
		}
		if (cancelled(s))
			return -ECANCELED;
		if (s->fd < 0)
			return 0;
		if (!s->rbuf) {
			s->rbuf = malloc(RBUF_SIZE);
			if (!s->rbuf)
				return -ENOMEM;
			s->rdata = s->rbuf;
		}
		/* Large: straight into the caller's memory, what follows into rbuf. */
		direct = want >= RBUF_SIZE;
		if (direct)
			r = readv(s->fd, (struct iovec[2]){ { p + *got, want }, { s->rbuf, RBUF_SIZE } },
				  2);
		else
			r = read(s->fd, s->rbuf, RBUF_SIZE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r ? -errno : 0;

			return cancelled(s) ? -ECANCELED : err;
		}
		if (direct) {
			size_t k = (size_t)r < want ? (size_t)r : want;

			*got += k;
			s->in_off += k;
			s->rpos = 0;
			s->rlen = (size_t)r - k;
		} else {
			s->rpos = 0;
			s->rlen = (size_t)r;
		}
	}
	return 0;
}

/* ---- opening and closing ------------------------------------------- */

static int write_preamble(struct mig_stream *s)
{
	unsigned char p[PREAMBLE_SIZE];
	int r;

	memcpy(p, MIG_MAGIC, 8);
	put_le32(p + 8, MIG_VERSION);
	put_le32(p + 12, 0);
	/* Sent at once: the peer checks the version before we have a section. */
	r = out_put(s, p, sizeof(p));
	return r ? r : out_flush(s);
}

static int read_preamble(struct mig_stream *s, struct vmm_error *e)
{
	unsigned char p[PREAMBLE_SIZE];
	uint32_t version, flags;
	size_t got;
	int r;

	r = in_read(s, p, sizeof(p), &got);
	if (r)
		return vmm_fail(e, r == -ECANCELED || r == -ENOMEM ? r : -EIO,
				"read migration preamble");
	if (got < sizeof(p))
		return vmm_failf(e, -EPROTO, "migration stream truncated in its preamble (%zu of %d bytes)",
				 got, PREAMBLE_SIZE);
	if (memcmp(p, MIG_MAGIC, 8))
		return vmm_failf(e, -EPROTO, "not a vmras migration stream (no \"%s\" at offset 0)",
				 MIG_MAGIC);
	version = get_le32(p + 8);
	flags = get_le32(p + 12);
	if (version != MIG_VERSION)
		return vmm_failf(e, -EPROTO, "migration stream version %" PRIu32 ", this VMM reads version %d",
				 version, MIG_VERSION);
	if (flags)
		return vmm_failf(e, -EPROTO, "migration stream flags 0x%" PRIx32 " unknown to version %d",
				 flags, MIG_VERSION);
	return 0;
}

/*
 * file: a regular file only (a FIFO or a device would block where no
 * cancel reaches); opened O_NONBLOCK for that check, blocking again after.
 */
static int regular_file(int fd, const char *path, struct vmm_error *e)
{
	struct stat st;
	int err;

	if (fstat(fd, &st) < 0)
		return vmm_fail(e, -errno, "stat migration file %s", path);
	if (!S_ISREG(st.st_mode))
		return vmm_failf(e, -EINVAL, "migration file %s is not a regular file", path);
	err = set_nonblock(fd, false);
	if (err)
		return vmm_fail(e, err, "open migration file %s", path);
	return 0;
}

int mig_open_outgoing(const char *uri, const atomic_bool *cancel, struct mig_stream **out,
		      struct vmm_error *e)
{
	struct mig_stream *s;
	struct mig_uri u;
	int r, fd = -1;

	r = uri_parse(uri, &u, e);
	if (r)
		return r;
	switch (u.transport) {
	case MIG_TCP:
		r = tcp_connect(&u, uri, cancel, &fd, e);
		break;
	case MIG_UNIX:
		r = unix_connect(u.path, cancel, &fd, e);
		break;
	case MIG_FILE:
		/* Guest memory goes in it: owner only. */
		fd = open(u.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0600);
		r = fd < 0 ? vmm_fail(e, -errno, "create migration file %s", u.path)
			   : regular_file(fd, u.path, e);
		if (r && fd >= 0)
			close(fd);
		break;
	}
	if (r)
		return r;
	s = stream_new(fd, u.transport != MIG_FILE, u.transport != MIG_FILE, true);
	if (!s) {
		close(fd);
		return vmm_fail(e, -ENOMEM, "allocate migration stream");
	}
	r = write_preamble(s);
	if (r) {
		stream_free(s);
		return vmm_fail(e, r, "write migration preamble to %s", uri);
	}
	*out = s;
	return 0;
}

int mig_open_incoming(const char *uri, int timeout_ms, const atomic_bool *cancel,
		      struct mig_stream **out, struct vmm_error *e)
{
	struct mig_stream *s;
	struct mig_uri u;
	int r, fd = -1, lfd = -1;

	r = uri_parse(uri, &u, e);
	if (r)
		return r;
	if (u.transport == MIG_FILE) {
		fd = open(u.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			return vmm_fail(e, -errno, "open migration file %s", u.path);
		r = regular_file(fd, u.path, e);
		if (r) {
			close(fd);
			return r;
		}
	} else {
		r = u.transport == MIG_TCP ? tcp_listen(&u, uri, &lfd, e) :
					     unix_listen(u.path, &lfd, e);
		if (r)
			return r;
		r = accept_one(lfd, timeout_ms, cancel, uri, &fd, e);
		close(lfd);
		if (u.transport == MIG_UNIX)
			unlink(u.path);
		if (r)
			return r;
	}
	s = stream_new(fd, u.transport != MIG_FILE, true, u.transport != MIG_FILE);
	if (!s) {
		close(fd);
		return vmm_fail(e, -ENOMEM, "allocate migration stream");
	}
	r = read_preamble(s, e);
	if (r) {
		stream_free(s);
		return r;
	}
	*out = s;
	return 0;
}

int mig_open_buffer(const void *buf, size_t len, struct mig_stream **out, struct vmm_error *e)
{
	struct mig_stream *s = stream_new(-1, false, true, false);
	int r;

	if (!s)
		return vmm_fail(e, -ENOMEM, "allocate migration stream");
	s->rdata = buf;
	s->rlen = buf ? len : 0;
	r = read_preamble(s, e);
	if (r) {
		stream_free(s);
		return r;
	}
	*out = s;
	return 0;
}

int mig_flush(struct mig_stream *s, struct vmm_error *e)
{
	int r;

	if (s->werr)
		return vmm_fail(e, s->werr, "migration stream unusable after an earlier error");
	r = out_flush(s);
	if (r)
		return s->werr = vmm_fail(e, r, "write migration stream at offset %" PRIu64,
					 s->sent);
	return 0;
}

void mig_close(struct mig_stream *s)
{
	if (!s)
		return;
	/* Best effort: a writer that cares calls mig_flush first. */
	if (!s->werr)
		out_flush(s);
	stream_free(s);
}

void mig_cancel(struct mig_stream *s)
{
	atomic_store(&s->cancelled, true);
	/* Wakes a blocked read (returns 0) or send (EPIPE); the fd stays ours. */
	if (s->is_socket)
		shutdown(s->fd, SHUT_RDWR);
}

int mig_send_small(struct mig_stream *s, uint32_t type, uint32_t id, const void *payload,
		   uint32_t len)
{
	unsigned char f[HEADER_SIZE + MIG_SMALL_MAX + CRC_SIZE];
	size_t n = HEADER_SIZE + len + CRC_SIZE, done = 0;
	int r = 0;

	if (!s->is_socket || !s->writable)
		return -EBADF;
	if (len > MIG_SMALL_MAX)
		return -EMSGSIZE;
	put_le32(f, type);
	put_le32(f + 4, id);
	put_le64(f + 8, len);
	put_le32(f + 16, vr_crc32c(0, f, 16));
	put_le32(f + 20, 0);
	if (len)
		memcpy(f + HEADER_SIZE, payload, len);
	put_le32(f + HEADER_SIZE + len, vr_crc32c(0, f + HEADER_SIZE, len));
	pthread_mutex_lock(&s->side_lock);
	while (!r && done < n) {
		ssize_t k = send(s->fd, f + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k > 0) {
			done += (size_t)k;
		} else if (k < 0 && errno == EINTR) {
			continue;
		} else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && done) {
			/* A frame begun is finished: wait for room, a cancel ends the wait. */
			struct pollfd pfd = { .fd = s->fd, .events = POLLOUT };

			if (cancelled(s))
				r = -ECANCELED;
			else
				poll(&pfd, 1, 100);
		} else {
			/* Nothing sent and no room: -EAGAIN, say so. */
			r = cancelled(s) ? -ECANCELED : k < 0 ? -errno : -EIO;
		}
	}
	pthread_mutex_unlock(&s->side_lock);
	return r == -EWOULDBLOCK ? -EAGAIN : r;
}

bool mig_is_file(const struct mig_stream *s)
{
	return s->fd >= 0 && !s->is_socket;
}

int mig_sync(struct mig_stream *s, struct vmm_error *e)
{
	int r = mig_flush(s, e);

	if (!r && !s->is_socket && s->fd >= 0 && fsync(s->fd) < 0)
		r = s->werr = vmm_fail(e, -errno, "fsync the migration file");
	return r;
}

bool mig_input_wait(const struct mig_stream *s, int timeout_ms)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };

	if (s->rpos < s->rlen)
		return true;
	if (!s->is_socket || !s->readable)
		return false;
	return poll(&pfd, 1, timeout_ms) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR));
}

bool mig_input_pending(const struct mig_stream *s)
{
	return mig_input_wait(s, 0);
}

void mig_drain(struct mig_stream *s, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	char buf[65536];

	if (!s->is_socket)
		return;
	if (!s->werr)
		out_flush(s);
	shutdown(s->fd, SHUT_WR);
	for (;;) {
		int64_t left = end - now_ms();
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		int n;

		if (left <= 0 || cancelled(s))
			return;
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || read(s->fd, buf, sizeof(buf)) <= 0)
			return;
	}
}

uint64_t mig_out_offset(const struct mig_stream *s)
{
	return s->out_off;
}

uint64_t mig_in_offset(const struct mig_stream *s)
{
	return s->in_off;
}

uint64_t mig_bytes(const struct mig_stream *s)
{
	return s->out_off + s->in_off;
}

/* ---- writer -------------------------------------------------------- */

static int wr_usable(struct mig_stream *s, struct vmm_error *e)
{
	if (!s->writable)
		return vmm_failf(e, -EBADF, "migration stream is not open for writing");
	if (cancelled(s))
		return vmm_fail(e, -ECANCELED, "migration stream");
	if (s->werr)
		return vmm_fail(e, s->werr, "migration stream unusable after an earlier error");
	return 0;
}

static int wr_fail(struct mig_stream *s, int r, struct vmm_error *e)
{
	s->werr = r;
	if (r == -ENOMEM)
		return vmm_fail(e, r, "allocate migration write buffer");
	return sec_fail(s, e, r, s->w_sec.type, s->w_sec.offset, "write at offset %" PRIu64 ": %s",
			s->sent, strerror(-r));
}

int mig_section_begin(struct mig_stream *s, uint32_t type, uint32_t id, uint64_t len,
		      struct vmm_error *e)
{
	unsigned char h[HEADER_SIZE];
	int r;

	r = wr_usable(s, e);
	if (r)
		return r;
	if (s->w_open)
		return sec_fail(s, e, -EINVAL, s->w_sec.type, s->w_sec.offset,
				"begins section %" PRIu32 " before its end", type);
	put_le32(h, type);
	put_le32(h + 4, id);
	put_le64(h + 8, len);
	put_le32(h + 16, vr_crc32c(0, h, 16));
	put_le32(h + 20, 0);
	s->w_sec = (struct mig_section){ .type = type, .id = id, .len = len, .offset = s->out_off };
	s->w_open = true;
	s->w_left = len;
	s->w_crc = 0;
	r = out_put(s, h, sizeof(h));
	return r ? wr_fail(s, r, e) : 0;
}

int mig_section_data(struct mig_stream *s, const void *buf, size_t len, struct vmm_error *e)
{
	int r;

	r = wr_usable(s, e);
	if (r)
		return r;
	if (!s->w_open)
		return vmm_failf(e, -EINVAL, "migration data outside a section");
	if (len > s->w_left)
		return sec_fail(s, e, -EINVAL, s->w_sec.type, s->w_sec.offset,
				"%zu bytes more than its length (%" PRIu64 " left)", len, s->w_left);
	if (!len)
		return 0;
	s->w_crc = vr_crc32c(s->w_crc, buf, len);
	s->w_left -= len;
	r = out_put(s, buf, len);
	return r ? wr_fail(s, r, e) : 0;
}

int mig_section_end(struct mig_stream *s, struct vmm_error *e)
{
	unsigned char c[CRC_SIZE];
	int r;

	r = wr_usable(s, e);
	if (r)
		return r;
	if (!s->w_open)
		return vmm_failf(e, -EINVAL, "migration section end without a section");
	if (s->w_left)
		return sec_fail(s, e, -EINVAL, s->w_sec.type, s->w_sec.offset,
				"ended with %" PRIu64 " payload bytes not written", s->w_left);
	put_le32(c, s->w_crc);
	r = out_put(s, c, sizeof(c));
	/*
	 * A section as large as the buffer cost syscalls anyway: send its
	 * tail now so the peer can check it. Small ones wait for company.
	 */
	if (!r && s->w_sec.len >= WBUF_SIZE)
		r = out_flush(s);
	if (r)
		return wr_fail(s, r, e);
	s->w_open = false;
	return 0;
}

int mig_write_section(struct mig_stream *s, uint32_t type, uint32_t id, const void *payload,
		      uint64_t len, struct vmm_error *e)
{
	const unsigned char *p = payload;
	int r;

	r = mig_section_begin(s, type, id, len, e);
	while (!r && len) {
		size_t k = len < (1u << 30) ? (size_t)len : (1u << 30);

		r = mig_section_data(s, p, k, e);
		p += k;
		len -= k;
	}
	return r ? r : mig_section_end(s, e);
}

/* ---- reader -------------------------------------------------------- */

static int rd_usable(struct mig_stream *s, struct vmm_error *e)
{
	int r;

	if (!s->readable)
		return vmm_failf(e, -EBADF, "migration stream is not open for reading");
	if (cancelled(s))
		return vmm_fail(e, -ECANCELED, "migration stream");
	if (s->rerr)
		return vmm_fail(e, s->rerr, "migration stream unusable after an earlier error");
	/*
	 * The peer may be waiting for what we wrote before it answers. A
	 * write direction that failed earlier does not stop the read: the
	 * peer may have said why it stopped reading.
	 */
	if (!s->werr) {
		r = out_flush(s);
		if (r) {
			s->werr = r;
			return vmm_fail(e, r, "write migration stream at offset %" PRIu64
					" before reading", s->sent);
		}
	}
	return 0;
}

/* In the open section, in_read came back with r, or short (r == 0). */
static int rd_fail(struct mig_stream *s, int r, struct vmm_error *e)
{
	const struct mig_section *sec = &s->r_sec;

	if (!r) {
		s->rerr = -EPROTO;
		return sec_fail(s, e, -EPROTO, sec->type, sec->offset,
				"truncated at offset %" PRIu64, s->in_off);
	}
	s->rerr = r == -ECANCELED || r == -ENOMEM ? r : -EIO;
	return sec_fail(s, e, s->rerr, sec->type, sec->offset, "read at offset %" PRIu64 ": %s",
			s->in_off, strerror(-r));
}

/* The stream is readable and sec is the section mig_read_header opened last. */
static int rd_section(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e)
{
	int r = rd_usable(s, e);

	if (r)
		return r;
	if (!s->r_open || sec->offset != s->r_sec.offset || sec->type != s->r_sec.type)
		return sec_fail(s, e, -EINVAL, sec->type, sec->offset,
				"is not the section being read");
	return 0;
}

int mig_read_header(struct mig_stream *s, mig_max_len_fn max_len, struct mig_section *sec,
		    struct vmm_error *e)
{
	unsigned char h[HEADER_SIZE];
	uint64_t off = s->in_off, len, max;
	uint32_t type, crc, pad;
	size_t got;
	int r;

	r = rd_usable(s, e);
	if (r)
		return r;
	if (s->r_open)
		return sec_fail(s, e, -EINVAL, s->r_sec.type, s->r_sec.offset,
				"not read to its end (%" PRIu64 " payload bytes left)", s->r_left);
	r = in_read(s, h, sizeof(h), &got);
	if (!r && !got)
		return vmm_failf(e, -ENODATA, "migration stream ends at offset %" PRIu64, off);
	type = get_le32(h);
	if (r || got < sizeof(h)) {
		s->rerr = !r ? -EPROTO : r == -ECANCELED || r == -ENOMEM ? r : -EIO;
		if (!r)
			return sec_fail(s, e, s->rerr, got >= 4 ? (int64_t)type : -1, off,
					"truncated at offset %" PRIu64 " in the header", s->in_off);
		return sec_fail(s, e, s->rerr, got >= 4 ? (int64_t)type : -1, off,
				"read at offset %" PRIu64 ": %s", s->in_off, strerror(-r));
	}
	len = get_le64(h + 8);
	crc = get_le32(h + 16);
	pad = get_le32(h + 20);
	s->rerr = -EPROTO;	/* until the header passes */
	if (vr_crc32c(0, h, 16) != crc)
		return sec_fail(s, e, -EPROTO, type, off,
				"header checksum mismatch (stored 0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
				crc, vr_crc32c(0, h, 16));
	if (pad)
		return sec_fail(s, e, -EPROTO, type, off, "header pad 0x%08" PRIx32 ", want 0", pad);
	max = max_len(type);
	if (!max)
		return vmm_failf(e, -EPROTO, "unknown section type %" PRIu32 " at offset %" PRIu64,
				 type, off);
	if (len > max)
		return sec_fail(s, e, -EPROTO, type, off,
				"length %" PRIu64 " exceeds the %" PRIu64 " allowed", len, max);
	s->rerr = 0;
	*sec = (struct mig_section){ .type = type, .id = get_le32(h + 4), .len = len, .offset = off };
	s->r_sec = *sec;
	s->r_open = true;
	s->r_left = len;
	s->r_crc = 0;
	return 0;
}

int mig_read_data(struct mig_stream *s, const struct mig_section *sec, void *buf, size_t len,
		  struct vmm_error *e)
{
	size_t got;
	int r;

	r = rd_section(s, sec, e);
	if (r)
		return r;
	if (len > s->r_left)
		return sec_fail(s, e, -EINVAL, sec->type, sec->offset,
				"reading %zu bytes past its end (%" PRIu64 " left)", len, s->r_left);
	r = in_read(s, buf, len, &got);
	if (r || got < len)
		return rd_fail(s, r, e);
	if (len)
		s->r_crc = vr_crc32c(s->r_crc, buf, len);
	s->r_left -= len;
	return 0;
}

int mig_read_end(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e)
{
	unsigned char c[CRC_SIZE];
	uint32_t crc;
	size_t got;
	int r;

	r = rd_section(s, sec, e);
	if (r)
		return r;
	if (s->r_left)
		return sec_fail(s, e, -EINVAL, sec->type, sec->offset,
				"ended with %" PRIu64 " payload bytes unread", s->r_left);
	r = in_read(s, c, sizeof(c), &got);
	if (r || got < sizeof(c))
		return rd_fail(s, r, e);
	crc = get_le32(c);
	if (crc != s->r_crc) {
		s->rerr = -EPROTO;
		return sec_fail(s, e, -EPROTO, sec->type, sec->offset,
				"payload checksum mismatch (stored 0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
				crc, s->r_crc);
	}
	s->r_open = false;
	return 0;
}

int mig_read_skip(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e)
{
	uint64_t skip;
	size_t buffered;
	int r = rd_section(s, sec, e);

	if (r)
		return r;
	if (s->is_socket)
		return sec_fail(s, e, -EINVAL, sec->type, sec->offset, "cannot be skipped on a socket");
	skip = s->r_left + CRC_SIZE;
	buffered = s->rlen - s->rpos;
	if (skip <= buffered) {
		s->rpos += skip;
	} else if (s->fd < 0) {
		return rd_fail(s, 0, e);
	} else {
		if (lseek(s->fd, (off_t)(skip - buffered), SEEK_CUR) < 0)
			return rd_fail(s, -errno, e);
		s->rpos = s->rlen = 0;
	}
	s->in_off += skip;
	s->r_left = 0;
	s->r_open = false;
	return 0;
}

int mig_file_fd(const struct mig_stream *s)
{
	return s->is_socket ? -1 : s->fd;
}

int mig_read_payload(struct mig_stream *s, const struct mig_section *sec, void **payload,
		     struct vmm_error *e)
{
	void *p = NULL;
	int r;

	r = rd_section(s, sec, e);
	if (r)
		return r;
	if (s->r_left != sec->len)
		return sec_fail(s, e, -EINVAL, sec->type, sec->offset,
				"partly read already (%" PRIu64 " of %" PRIu64 " bytes left)",
				s->r_left, sec->len);
	if (sec->len > SIZE_MAX)
		return sec_fail(s, e, -EFBIG, sec->type, sec->offset,
				"%" PRIu64 " bytes do not fit in memory", sec->len);
	/* A buffer that cannot hold it is truncated: say so before allocating. */
	if (s->fd < 0 && sec->len > s->rlen - s->rpos) {
		s->in_off += s->rlen - s->rpos;
		s->rpos = s->rlen;
		return rd_fail(s, 0, e);
	}
	if (sec->len) {
		p = malloc((size_t)sec->len);
		if (!p)
			return sec_fail(s, e, -ENOMEM, sec->type, sec->offset,
					"allocate %" PRIu64 " bytes for its payload", sec->len);
	}
	r = mig_read_data(s, sec, p, (size_t)sec->len, e);
	if (!r)
		r = mig_read_end(s, sec, e);
	if (r) {
		free(p);
		return r;
	}
	*payload = p;
	return 0;
}
