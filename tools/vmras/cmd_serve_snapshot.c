// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras serve-snapshot: the page-fault handler of Firecracker's
 * snapshot-restore protocol (docs/serve-snapshot.md), poison-aware.
 * Listen on a unix socket; take one client's handshake (a JSON array of
 * regions, the userfaultfd by SCM_RIGHTS); serve its missing-page faults
 * from the memory file (UFFDIO_COPY), balloon-removed pages as zeros and
 * the snapshot's bad pages as poison (UFFDIO_POISON), until the client's
 * process exits or a SIGTERM/SIGINT/SIGHUP/SIGQUIT. One thread: a ppoll
 * loop on the userfaultfd and a pidfd of the client. A fault it cannot
 * serve ends it at once (exit 1): its thread would wait for ever, and the
 * supervisor Firecracker's failure model asks for must see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "fc_handshake.h"
#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"

#define CMD "serve-snapshot"
#define DEFAULT_TIMEOUT_MS 30000	/* the handshake, once connected */
#define DEFAULT_SOCKET_MODE 0600
#define EVENT_BATCH 64		/* uffd_msg read at once */
#define MAX_FDS 8		/* descriptors taken from one recvmsg */
#define RETRY_MS 10		/* wait for events after an EAGAIN */
#define NOMEM_FIRST_MS 1	/* ENOMEM: retried after 1, 2, 4 ... ms */
#define NOMEM_MAX_MS 100	/* ... at most 100 ms apart */
#define NOMEM_GIVE_UP_MS 5000	/* ... and not for longer than 5 s */
#define MAX_REPORTS 16		/* stray poison offsets reported one by one */
#define UFFD_LINK "anon_inode:[userfaultfd]"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77		/* Linux 6.5; asm-generic, as on x86 */
#endif

/* What a fault came to, counted for --stats. */
struct stats {
	uint64_t faults;	/* page faults resolved (including EEXIST) */
	uint64_t copied;	/* pages copied from the memory file */
	uint64_t zero;		/* zero pages (removed ranges) */
	uint64_t poisoned;	/* pages poisoned (a huge page counts one) */
	uint64_t removes;	/* UFFD_EVENT_REMOVE */
	uint64_t unmaps;	/* UFFD_EVENT_UNMAP */
	uint64_t eagain;	/* copies retried after EAGAIN */
	uint64_t exist;		/* pages already there: woken */
	uint64_t gone;		/* faults whose range was unmapped meanwhile */
	uint64_t unserved;	/* a fault that could not be served (fatal: 0 or 1) */
	uint64_t nomem;		/* placements retried after ENOMEM */
};

struct region {
	struct fc_region fc;
	uint8_t *removed;	/* a bit a page: REMOVE seen; NULL until the first */
	size_t poisoned;	/* poison-list entries inside it */
};

struct server {
	const char *socket_path;
	int listen_fd, conn, uffd, pidfd, lock_fd;
	bool socket_made;
	dev_t socket_dev;
	ino_t socket_ino;
	mode_t socket_mode;	/* --socket-mode */
	uid_t socket_uid;	/* --socket-owner; (uid_t)-1: unchanged */
	gid_t socket_gid;
	size_t spare_fds;	/* descriptors that came with the userfaultfd */
	bool spare_ctrunc;	/* and some the kernel dropped */

	const uint8_t *file;	/* the memory file, mapped private read-only */
	uint64_t file_size;
	const uint8_t *zeros;	/* 2 MiB of zeros: huge zero pages are copied */

	struct region regions[FC_MAX_REGIONS];
	size_t nregions;

	uint64_t *poison;	/* sorted, unique, 4 KiB-aligned file offsets */
	size_t npoison, poison_cap;

	uint64_t *queue;	/* faults read and not yet served: a ring */
	size_t qhead, qlen, qcap;

	sigset_t waitmask;	/* ppoll's: the stop signals let through */
	bool nomem;		/* an ENOMEM is being retried: */
	uint64_t nomem_since;	/* since then (ms) */
	unsigned int nomem_wait; /* the next wait (ms) */
	struct stats st;
};

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
#define NSTOP (sizeof(stop_signals) / sizeof(stop_signals[0]))

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
	va_list ap;

	printf("%s %s: ", prog, CMD);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s serve-snapshot --socket PATH --memory FILE [--poison FILE]\n"
		"                            [--poison-offset OFF]... [--timeout-ms N]\n"
		"                            [--connect-timeout-ms N] [--socket-mode OCTAL]\n"
		"                            [--socket-owner UID[:GID]] [--stats] [--once]\n"
		"Serve a Firecracker snapshot's guest memory on demand: Firecracker's\n"
		"documented page-fault handler protocol (docs/serve-snapshot.md).\n"
		"\n"
		"  --socket PATH        unix socket to listen on (created; removed once the\n"
		"                       client connected, or at exit); PATH.lock is locked for\n"
		"                       the handler's life: a second handler on PATH is refused\n"
		"  --memory FILE        the snapshot's memory file; each region's contents are\n"
		"                       at its \"offset\" (the file may be larger)\n"
		"  --poison FILE        the snapshot's bad pages: one file offset a line, hex\n"
		"                       (0x...) or decimal, '#' starts a comment\n"
		"  --poison-offset OFF  one more bad page (repeatable)\n"
		"  --timeout-ms N       the handshake must arrive within N ms of the connection\n"
		"                       (default %d; 0: no limit)\n"
		"  --connect-timeout-ms N  wait at most N ms for the client to connect\n"
		"                       (default 0: no limit)\n"
		"  --socket-mode OCTAL  the socket's permissions (default %04o)\n"
		"  --socket-owner UID[:GID]  chown the socket (numeric ids; a jailed client's)\n"
		"  --stats              print one line of counters at exit\n"
		"  --once               serve one client, then exit (the default and only mode)\n"
		"\n"
		"A fault on a bad page is answered with UFFDIO_POISON (the guest's access gets\n"
		"a memory error), never with data or zeros. In a 2 MiB huge-page region a bad\n"
		"4 KiB page costs the whole huge page: the kernel can only poison a huge page\n"
		"whole. Balloon-removed pages (UFFD_EVENT_REMOVE) come back as zeros.\n"
		"Serves until the client's process exits, or SIGTERM/SIGINT/SIGHUP/SIGQUIT\n"
		"(exit 0). Exit 1 at once when something failed (a refused handshake, a fault\n"
		"that cannot be served: its thread would wait for ever), 2 on a usage error.\n"
		"If this process dies, Firecracker's vCPUs wait forever: supervise it.\n",
		prog, DEFAULT_TIMEOUT_MS, DEFAULT_SOCKET_MODE);
}

/* "0x..." (hex) or decimal, nothing else: 0 or -EINVAL. */
static int parse_offset(const char *s, uint64_t *out)
{
	unsigned long long v;
	int base = 10;
	char *end;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!((*s >= '0' && *s <= '9') || (base == 16 && strchr("abcdefABCDEF", *s) && *s)))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int poison_add(struct server *s, uint64_t off)
{
	if (s->npoison == s->poison_cap) {
		size_t cap = s->poison_cap ? s->poison_cap * 2 : 64;
		uint64_t *p = realloc(s->poison, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->poison = p;
		s->poison_cap = cap;
	}
	s->poison[s->npoison++] = off & ~(FC_PAGE_4K - 1);
	return 0;
}

/* The poison list file: 0, or 1 after saying what is wrong. */
static int poison_load(struct server *s, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	int rc = 0;

	if (!f) {
		tool_error(CMD, "--poison %s: %s", path, strerror(errno));
		return 1;
	}
	for (;;) {
		char *p, *e, *hash;
		uint64_t off;
		ssize_t n;

		errno = 0;
		n = getline(&line, &cap, f);
		if (n < 0) {
			if (errno) {
				tool_error(CMD, "--poison %s: %s", path, strerror(errno));
				rc = 1;
			}
			break;
		}
		lineno++;
		if (memchr(line, '\0', (size_t)n)) {
			tool_error(CMD, "--poison %s:%zu: a NUL byte", path, lineno);
			rc = 1;
			break;
		}
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		for (e = p + strlen(p); e > p && strchr(" \t\r\n", e[-1]); e--)
			;
		*e = '\0';
		if (!*p)
			continue;
		if (parse_offset(p, &off)) {
			tool_error(CMD, "--poison %s:%zu: not a file offset: '%.40s'", path, lineno, p);
			rc = 1;
			break;
		}
		if (poison_add(s, off)) {
			tool_error(CMD, "--poison %s: %s", path, strerror(ENOMEM));
			rc = 1;
			break;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void poison_sort(struct server *s)
{
	size_t n = 0;

	if (!s->npoison)
		return;
	qsort(s->poison, s->npoison, sizeof(*s->poison), cmp_u64);
	for (size_t i = 0; i < s->npoison; i++)
		if (!n || s->poison[n - 1] != s->poison[i])
			s->poison[n++] = s->poison[i];
	s->npoison = n;
}

/* Whether a bad page lies in file bytes [off, off + len). */
static bool poison_in(const struct server *s, uint64_t off, uint64_t len)
{
	size_t lo = 0, hi = s->npoison;

	while (lo < hi) {		/* the first entry >= off */
		size_t mid = lo + (hi - lo) / 2;

		if (s->poison[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->npoison && s->poison[lo] - off < len;
}

static int memory_open(struct server *s, const char *path)
{
	struct stat st;
	void *map;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		tool_error(CMD, "--memory %s: %s", path, strerror(errno));
		return 1;
	}
	if (fstat(fd, &st)) {
		tool_error(CMD, "--memory %s: %s", path, strerror(errno));
		close(fd);
		return 1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
		tool_error(CMD, "--memory %s: %s", path,
			   S_ISREG(st.st_mode) ? "the file is empty" : "not a regular file");
		close(fd);
		return 1;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (map == MAP_FAILED) {
		tool_error(CMD, "--memory %s: mmap: %s", path, strerror(errno));
		close(fd);
		return 1;
	}
	close(fd);
	s->file = map;
	s->file_size = (uint64_t)st.st_size;
	return 0;
}

/*
 * PATH.lock, created 0600 and flock'ed for the handler's life, so that a
 * second handler never renames its socket over a live one's. Never
 * removed: removing a lock file lets two holders lock two files.
 */
static int socket_lock(struct server *s, const char *path)
{
	size_t len = strlen(path) + sizeof(".lock");
	char *lock = malloc(len);
	int fd, rc = 1;

	if (!lock) {
		tool_error(CMD, "--socket %s: %s", path, strerror(ENOMEM));
		return 1;
	}
	snprintf(lock, len, "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		tool_error(CMD, "--socket %s: %s: %s", path, lock, strerror(errno));
	} else if (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno == EWOULDBLOCK)
			tool_error(CMD, "--socket %s: another serve-snapshot is serving it (%s is "
				   "locked): refused", path, lock);
		else
			tool_error(CMD, "--socket %s: flock %s: %s", path, lock, strerror(errno));
		close(fd);
	} else {
		s->lock_fd = fd;
		rc = 0;
	}
	free(lock);
	return rc;
}

/*
 * Listen at path: bound under a temporary name (with no permissions for
 * anyone else yet), given its owner and mode, and renamed into place once
 * listening, so that a client never finds the path refusing connections
 * or with the wrong permissions. A socket already there (a handler that
 * died; the lock says it is not live) is replaced.
 */
static int socket_listen(struct server *s, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof(sa.sun_path)];
	struct stat st;
	int fd, n;

	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		tool_error(CMD, "--socket %s: exists and is not a socket", path);
		return 1;
	}
	n = snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || strlen(path) >= sizeof(sa.sun_path)) {
		tool_error(CMD, "--socket %s: path too long for a unix socket (%zu bytes at most)",
			   path, sizeof(sa.sun_path) - 12);
		return 1;
	}
	memcpy(sa.sun_path, tmp, (size_t)n + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tool_error(CMD, "socket: %s", strerror(errno));
		return 1;
	}
	if (unlink(tmp) && errno != ENOENT) {
		tool_error(CMD, "--socket %s: unlink %s: %s", path, tmp, strerror(errno));
		goto fail;
	}
	{
		mode_t old = umask(0177);	/* single-threaded: nobody else sees it */
		int b = bind(fd, (struct sockaddr *)&sa, sizeof(sa)), err = errno;

		umask(old);
		if (b) {
			tool_error(CMD, "--socket %s: bind: %s", path, strerror(err));
			goto fail;
		}
	}
	if (s->socket_uid != (uid_t)-1 && chown(tmp, s->socket_uid, s->socket_gid)) {
		tool_error(CMD, "--socket-owner %u:%d: chown %s: %s", (unsigned int)s->socket_uid,
			   s->socket_gid == (gid_t)-1 ? -1 : (int)s->socket_gid, tmp, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	if (chmod(tmp, s->socket_mode)) {
		tool_error(CMD, "--socket-mode %04o: chmod %s: %s", (unsigned int)s->socket_mode, tmp,
			   strerror(errno));
		unlink(tmp);
		goto fail;
	}
	if (listen(fd, 1)) {
		tool_error(CMD, "--socket %s: listen: %s", path, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, path)) {
		tool_error(CMD, "--socket %s: rename from %s: %s", path, tmp, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	if (stat(path, &st)) {
		tool_error(CMD, "--socket %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	s->listen_fd = fd;
	s->socket_path = path;
	s->socket_made = true;
	s->socket_dev = st.st_dev;
	s->socket_ino = st.st_ino;
	return 0;
fail:
	close(fd);
	return 1;
}

/* Remove the socket unless someone else's is there by now. */
static void socket_remove(struct server *s)
{
	struct stat st;

	if (s->socket_made && stat(s->socket_path, &st) == 0 && st.st_dev == s->socket_dev &&
	    st.st_ino == s->socket_ino)
		unlink(s->socket_path);
	s->socket_made = false;
}

/*
 * ppoll one descriptor for events until deadline_ms (0: none) or a signal.
 * 1 ready, 0 timed out, -EINTR stopped by a stop signal, -errno.
 */
static int wait_fd(struct server *s, int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		struct timespec ts, *tsp = NULL;
		int r;

		if (stop_signal)
			return -EINTR;
		if (deadline_ms) {
			uint64_t t = now_ms();

			if (t >= deadline_ms)
				return 0;
			ts.tv_sec = (time_t)((deadline_ms - t) / 1000);
			ts.tv_nsec = (long)((deadline_ms - t) % 1000) * 1000000;
			tsp = &ts;
		}
		r = ppoll(&p, 1, tsp, &s->waitmask);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0)
			return 1;
	}
}

/*
 * accept the client, log and keep its credentials; 0, 1 failed, -EINTR,
 * -ESRCH the client is gone already (said).
 */
static int client_accept(struct server *s, uint64_t deadline_ms, int timeout_ms)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int r, pidfd, err;

	r = wait_fd(s, s->listen_fd, POLLIN, deadline_ms);
	if (r == -EINTR)
		return r;
	if (r <= 0) {
		if (r)
			tool_error(CMD, "waiting for a client on %s: %s", s->socket_path,
				   strerror(-r));
		else
			tool_error(CMD, "waiting for a client on %s: timed out, none connected "
				   "within --connect-timeout-ms %d", s->socket_path, timeout_ms);
		return 1;
	}
	s->conn = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (s->conn < 0) {
		tool_error(CMD, "accept on %s: %s", s->socket_path, strerror(errno));
		return 1;
	}
	if (getsockopt(s->conn, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		tool_error(CMD, "SO_PEERCRED: %s", strerror(errno));
		return 1;
	}
	info("client pid %d uid %u gid %u", (int)cred.pid, (unsigned int)cred.uid,
	     (unsigned int)cred.gid);
	/* The client's end is its process's exit: a pidfd (race-free from 6.5). */
	len = sizeof(pidfd);
	if (getsockopt(s->conn, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		s->pidfd = pidfd;
		return 0;
	}
	err = errno;
	s->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (s->pidfd >= 0)
		return 0;
	if (errno == ESRCH) {
		/* No process has the client's pid: it exited, its memory with it. */
		info("the client is gone (pid %d: no such process; SO_PEERPIDFD: %s): exiting",
		     (int)cred.pid, strerror(err));
		return -ESRCH;
	}
	fprintf(stderr, "%s %s: warning: no pidfd for client pid %d (%s): serving until a "
		"signal\n", prog, CMD, (int)cred.pid, strerror(errno));
	return 0;
}

/*
 * Read the handshake: bytes until they are one complete JSON value, the
 * first descriptor passed as the userfaultfd (others closed, and counted
 * for a warning once everything else is accepted). The value is parsed in
 * full only when a cheap resumable scan says it may be complete, or its
 * size doubled since the last parse (so that a bad beginning is still
 * refused early): a client that sends a byte at a time costs linear time.
 * 0, 1 after saying what was wrong, -EINTR.
 */
static int handshake_recv(struct server *s, int timeout_ms)
{
	char *buf = malloc(FC_MAX_MESSAGE);
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(MAX_FDS * sizeof(int))];
	} ctl;
	struct fc_region fc[FC_MAX_REGIONS];
	struct fc_scan scan = { 0 };
	size_t have = 0, n = 0, next_parse = 0;
	uint64_t deadline_ms = timeout_ms ? now_ms() + (uint64_t)timeout_ms : 0;
	char why[256];
	int r = -EAGAIN, rc = 1;

	if (!buf) {
		tool_error(CMD, "handshake: %s", strerror(ENOMEM));
		return 1;
	}
	while (r == -EAGAIN) {
		struct iovec iov = { .iov_base = buf + have, .iov_len = FC_MAX_MESSAGE - have };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
		ssize_t got;
		int w;

		if (have == FC_MAX_MESSAGE) {
			r = fc_handshake_parse(buf, have, fc, &n, why, sizeof(why));
			if (r == -EAGAIN)
				tool_error(CMD, "handshake: no complete JSON array in the first %d "
					   "bytes", FC_MAX_MESSAGE);
			break;
		}
		w = wait_fd(s, s->conn, POLLIN, deadline_ms);
		if (w == -EINTR) {
			rc = w;
			goto out;
		}
		if (w <= 0) {
			r = fc_handshake_parse(buf, have, fc, &n, why, sizeof(why));
			if (r == -EAGAIN)
				tool_error(CMD, "handshake: %s after %zu bytes (--timeout-ms %d)",
					   w ? strerror(-w) : "timed out", have, timeout_ms);
			break;
		}
		got = recvmsg(s->conn, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			tool_error(CMD, "handshake: recvmsg: %s", strerror(errno));
			goto out;
		}
		if (mh.msg_flags & MSG_CTRUNC)
			s->spare_ctrunc = true;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t nfd;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				if (s->uffd < 0) {
					s->uffd = fd;
				} else {
					close(fd);
					s->spare_fds++;
				}
			}
		}
		if (got == 0) {
			r = fc_handshake_parse(buf, have, fc, &n, why, sizeof(why));
			if (r == -EAGAIN)
				tool_error(CMD, "handshake: the client closed the connection after %zu "
					   "bytes, before a complete JSON array", have);
			break;
		}
		have += (size_t)got;
		if (fc_scan_closed(&scan, buf, have) || have >= next_parse) {
			r = fc_handshake_parse(buf, have, fc, &n, why, sizeof(why));
			next_parse = have * 2;
		}
	}
	if (r == -EINVAL)
		tool_error(CMD, "handshake: bad message: %s", why);
	if (r)
		goto out;
	if (s->uffd < 0) {
		tool_error(CMD, "handshake: no userfaultfd attached (SCM_RIGHTS)%s",
			   s->spare_ctrunc ? "; control data truncated" : "");
		goto out;
	}
	if (fc_handshake_check(fc, n, s->file_size, why, sizeof(why))) {
		tool_error(CMD, "handshake: %s", why);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		s->regions[i].fc = fc[i];
	s->nregions = n;
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * The descriptor must be a userfaultfd, non-blocking (its poll wants that):
 * its /proc/self/fd link says so, or without /proc (a jail) a UFFDIO_WAKE
 * of region 0's first page, which only a userfaultfd (with UFFDIO_API
 * done) takes; waking a page nobody waits on does nothing.
 */
static int uffd_check(struct server *s)
{
	char path[64], link[64];
	ssize_t n;
	int fl;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->uffd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0 && errno == ENOENT && access("/proc/self/fd", F_OK)) {
		struct uffdio_range range = { .start = s->regions[0].fc.base,
					      .len = s->regions[0].fc.page_size };
		long w = kabi_ioctl(s->uffd, UFFDIO_WAKE, &range);

		if (w < 0) {
			tool_error(CMD, "handshake: the descriptor passed is not a userfaultfd "
				   "(no /proc here; UFFDIO_WAKE: %s)", strerror((int)-w));
			return 1;
		}
	} else if (n < 0) {
		tool_error(CMD, "handshake: the descriptor passed: readlink %s: %s", path,
			   strerror(errno));
		return 1;
	} else {
		link[n] = '\0';
		if (strcmp(link, UFFD_LINK)) {
			tool_error(CMD, "handshake: the descriptor passed is not a userfaultfd (%s)",
				   link);
			return 1;
		}
	}
	fl = fcntl(s->uffd, F_GETFL);
	if (fl < 0) {
		tool_error(CMD, "userfaultfd: F_GETFL: %s", strerror(errno));
		return 1;
	}
	/* Shared with the client, which does not read it (Firecracker sets it too). */
	if (!(fl & O_NONBLOCK) && fcntl(s->uffd, F_SETFL, fl | O_NONBLOCK)) {
		tool_error(CMD, "userfaultfd: F_SETFL O_NONBLOCK: %s", strerror(errno));
		return 1;
	}
	return 0;
}

/* Which regions the bad pages fall in; 0 or 1 (out of memory). */
static int poison_place(struct server *s)
{
	size_t huge_lost = 0, ignored = 0;

	for (size_t i = 0; i < s->npoison; i++) {
		bool found = false;

		for (size_t j = 0; j < s->nregions; j++) {
			struct region *r = &s->regions[j];

			if (s->poison[i] >= r->fc.offset && s->poison[i] - r->fc.offset < r->fc.size) {
				r->poisoned++;
				found = true;
				if (r->fc.page_size != FC_PAGE_4K)
					huge_lost++;
			}
		}
		if (!found) {
			if (ignored++ < MAX_REPORTS)
				fprintf(stderr, "%s %s: warning: poison offset 0x%" PRIx64
					" is in no region: ignored\n", prog, CMD, s->poison[i]);
		}
	}
	if (huge_lost)
		info("%zu bad 4 KiB pages in 2 MiB huge-page regions: each costs its whole huge page",
		     huge_lost);
	return 0;
}

static void regions_log(const struct server *s)
{
	for (size_t i = 0; i < s->nregions; i++) {
		const struct region *r = &s->regions[i];

		info("region %zu: 0x%" PRIx64 "-0x%" PRIx64 " (%" PRIu64 " KiB, %s pages) from file "
		     "offset 0x%" PRIx64 ", %zu bad pages", i, r->fc.base, r->fc.base + r->fc.size,
		     r->fc.size >> 10, r->fc.page_size == FC_PAGE_4K ? "4 KiB" : "2 MiB huge",
		     r->fc.offset, r->poisoned);
	}
}

static struct region *region_of(struct server *s, uint64_t addr)
{
	for (size_t i = 0; i < s->nregions; i++)
		if (addr >= s->regions[i].fc.base && addr - s->regions[i].fc.base < s->regions[i].fc.size)
			return &s->regions[i];
	return NULL;
}

/*
 * A fault that cannot be served: its thread would wait for ever, so the
 * handler ends now (exit 1) with one line saying why, for the supervisor
 * that Firecracker's failure model asks for. Returns -EIO.
 */
static int unservable(struct server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int unservable(struct server *s, const char *fmt, ...)
{
	va_list ap;

	s->st.unserved++;
	fprintf(stderr, "%s %s: ", prog, CMD);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": a fault that cannot be served: exiting (its thread would wait for "
		"ever)\n");
	return -EIO;
}

/* Balloon (REMOVE) or munmap (UNMAP): later faults there get zeros. */
static int mark_removed(struct server *s, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < s->nregions; i++) {
		struct region *r = &s->regions[i];
		uint64_t ps = r->fc.page_size, from, to;

		if (end <= r->fc.base || start >= r->fc.base + r->fc.size)
			continue;
		if (!r->removed) {
			size_t bits = (size_t)(r->fc.size / ps);

			r->removed = calloc((bits + 7) / 8, 1);
			if (!r->removed)
				return -ENOMEM;
		}
		from = ((start > r->fc.base ? start : r->fc.base) - r->fc.base) / ps;
		to = ((end < r->fc.base + r->fc.size ? end : r->fc.base + r->fc.size) - r->fc.base +
		      ps - 1) / ps;
		for (; from < to && from % 8; from++)
			r->removed[from / 8] |= (uint8_t)(1u << (from % 8));
		if (to - from >= 8) {		/* whole bytes at once */
			memset(r->removed + from / 8, 0xff, (size_t)((to - from) / 8));
			from += (to - from) / 8 * 8;
		}
		for (; from < to; from++)
			r->removed[from / 8] |= (uint8_t)(1u << (from % 8));
	}
	return 0;
}

static void remap(struct server *s, uint64_t from, uint64_t to, uint64_t len)
{
	for (size_t i = 0; i < s->nregions; i++) {
		struct region *r = &s->regions[i];

		if (from + len <= r->fc.base || from >= r->fc.base + r->fc.size)
			continue;
		if (from == r->fc.base && len == r->fc.size) {
			r->fc.base = to;
			info("region %zu moved to 0x%" PRIx64 " (mremap)", i, to);
		} else {
			fprintf(stderr, "%s %s: warning: mremap of part of region %zu (0x%" PRIx64
				" + 0x%" PRIx64 " to 0x%" PRIx64 "): not followed\n", prog, CMD, i,
				from, len, to);
		}
	}
}

static int queue_push(struct server *s, uint64_t addr)
{
	if (s->qlen == s->qcap) {
		size_t cap = s->qcap ? s->qcap * 2 : EVENT_BATCH * 2;
		uint64_t *q = malloc(cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		for (size_t i = 0; i < s->qlen; i++)
			q[i] = s->queue[(s->qhead + i) % s->qcap];
		free(s->queue);
		s->queue = q;
		s->qcap = cap;
		s->qhead = 0;
	}
	s->queue[(s->qhead + s->qlen) % s->qcap] = addr;
	s->qlen++;
	return 0;
}

/* What a fault gets. */
enum place_op { PLACE_COPY, PLACE_ZERO, PLACE_POISON };

static const char *const place_name[] = {
	[PLACE_COPY] = "UFFDIO_COPY",
	[PLACE_ZERO] = "UFFDIO_ZEROPAGE",	/* or a copy of zeros (hugetlb) */
	[PLACE_POISON] = "UFFDIO_POISON",
};

static uint64_t *place_counter(struct server *s, enum place_op op)
{
	return op == PLACE_COPY ? &s->st.copied : op == PLACE_ZERO ? &s->st.zero : &s->st.poisoned;
}

/*
 * One ioctl placing len bytes at dst (from src for a copy): 0 or -errno;
 * *done: the bytes placed when it stopped partway (-EAGAIN).
 */
static long place(struct server *s, enum place_op op, uint64_t dst, uint64_t len,
		  const uint8_t *src, uint64_t *done)
{
	long r;

	*done = 0;
	switch (op) {
	case PLACE_COPY: {
		struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len };

		r = kabi_ioctl(s->uffd, UFFDIO_COPY, &c);
		*done = c.copy > 0 ? (uint64_t)c.copy : 0;
		return r;
	}
	case PLACE_ZERO:
		if (len == FC_PAGE_4K) {
			struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

			r = kabi_ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
			*done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
		} else {
			/* hugetlb has no UFFDIO_ZEROPAGE: 2 MiB of zeros copied. */
			struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)s->zeros, .len = len };

			r = kabi_ioctl(s->uffd, UFFDIO_COPY, &c);
			*done = c.copy > 0 ? (uint64_t)c.copy : 0;
		}
		return r;
	case PLACE_POISON: {
		struct uffdio_poison p = { .range = { .start = dst, .len = len } };

		r = kabi_ioctl(s->uffd, UFFDIO_POISON, &p);
		*done = p.updated > 0 ? (uint64_t)p.updated : 0;
		return r;
	}
	}
	return -EINVAL;
}

/*
 * The result of placing [page, page + len): 0 done (or nothing to do),
 * -EAGAIN retry after reading events, -ENOMEM retry after s->nomem_wait ms,
 * -ESRCH the client's memory is gone, -EIO a fault that cannot be served
 * (said: the handler ends).
 */
static int resolved(struct server *s, long r, enum place_op op, uint64_t page, uint64_t len)
{
	struct uffdio_range range = { .start = page, .len = len };
	uint64_t t;
	long w;

	if (r != -ENOMEM && r != -EAGAIN && r != -EINTR)
		s->nomem = false;
	switch (r) {
	case 0:
		(*place_counter(s, op))++;
		s->st.faults++;
		return 0;
	case -EAGAIN:
	case -EINTR:
		s->st.eagain++;
		return -EAGAIN;
	case -ENOMEM:	/* the hugetlb pool or the memory cgroup is exhausted: for now? */
		t = now_ms();
		if (!s->nomem) {
			s->nomem = true;
			s->nomem_since = t;
			s->nomem_wait = NOMEM_FIRST_MS;
		} else if (t - s->nomem_since >= NOMEM_GIVE_UP_MS) {
			return unservable(s, "%s at 0x%" PRIx64 " (0x%" PRIx64 " bytes): %s for %" PRIu64
					  " ms (hugetlb pool or memory cgroup exhausted)", place_name[op],
					  page, len, strerror(ENOMEM), t - s->nomem_since);
		} else {
			s->nomem_wait = s->nomem_wait * 2 > NOMEM_MAX_MS ? NOMEM_MAX_MS
									 : s->nomem_wait * 2;
		}
		s->st.nomem++;
		return -ENOMEM;
	case -EEXIST:	/* another fault of the same page was served first */
		s->st.exist++;
		s->st.faults++;
		w = kabi_ioctl(s->uffd, UFFDIO_WAKE, &range);
		if (w == -ESRCH)
			return -ESRCH;
		if (w < 0 && w != -ENOENT)
			return unservable(s, "UFFDIO_WAKE at 0x%" PRIx64 " (0x%" PRIx64 " bytes): %s",
					  page, len, strerror((int)-w));
		return 0;
	case -ENOENT:
		/*
		 * The range is no longer registered (unmapped meanwhile). Without
		 * UFFD_FEATURE_EVENT_UNMAP munmap does not wake its waiters: wake
		 * them (they fault again, or find nothing there).
		 */
		s->st.gone++;
		w = kabi_ioctl(s->uffd, UFFDIO_WAKE, &range);
		return w == -ESRCH ? -ESRCH : 0;
	case -ESRCH:
		return -ESRCH;
	default:
		/* EINVAL from UFFDIO_POISON: a kernel before 6.6, or one that wants the feature. */
		return unservable(s, "%s at 0x%" PRIx64 " (0x%" PRIx64 " bytes): %s", place_name[op],
				  page, len, strerror((int)-r));
	}
}

static int serve_fault(struct server *s, uint64_t addr)
{
	struct region *r = region_of(s, addr);
	uint64_t ps, page, index, off, done, small;
	const uint8_t *src = NULL;
	enum place_op op;
	long ret, ret4k;

	if (!r)
		return unservable(s, "fault at 0x%" PRIx64 " outside every region", addr);
	ps = r->fc.page_size;
	page = addr & ~(ps - 1);
	index = (page - r->fc.base) / ps;
	off = r->fc.offset + (page - r->fc.base);
	/* A bad page is poisoned, never zeros, even removed; refused: fatal. */
	if (r->poisoned && poison_in(s, off, ps)) {
		op = PLACE_POISON;
	} else if (r->removed && (r->removed[index / 8] & (1u << (index % 8)))) {
		op = PLACE_ZERO;
		src = s->zeros;
	} else {
		op = PLACE_COPY;
		src = s->file + off;
	}
	ret = place(s, op, page, ps, src, &done);
	if (ps != FC_PAGE_4K && (ret == -EEXIST || (ret == -EAGAIN && done))) {
		/*
		 * Part of a 2 MiB page is there already, or a part was placed
		 * and the rest hit one: 4 KiB memory declared with 2 MiB pages
		 * (a hugetlb page is placed whole or not at all). Retrying the
		 * 2 MiB would spin on EEXIST for ever: only the faulting 4 KiB
		 * page. In real hugetlb memory that is EINVAL: then the EEXIST
		 * was a huge page served first (woken), and a part placed is
		 * something that cannot be served.
		 */
		small = addr & ~(FC_PAGE_4K - 1);
		ret4k = place(s, op, small, FC_PAGE_4K, src ? src + (small - page) : NULL, &done);
		if (ret4k == -EINVAL && ret == -EEXIST)
			return resolved(s, ret, op, page, ps);
		return resolved(s, ret4k, op, small, FC_PAGE_4K);
	}
	return resolved(s, ret, op, page, ps);
}

/* Serve the queue in order; stop at an EAGAIN or ENOMEM (or the client gone, or -EIO). */
static int serve_queue(struct server *s)
{
	while (s->qlen) {
		int r = serve_fault(s, s->queue[s->qhead]);

		if (r)
			return r;
		s->qhead = (s->qhead + 1) % s->qcap;
		s->qlen--;
	}
	return 0;
}

/* One read of events: 0, -ESRCH (client gone), -ENOMEM, or 1 after an error. */
static int read_events(struct server *s)
{
	struct uffd_msg msgs[EVENT_BATCH];
	ssize_t n;
	int err;

	n = read(s->uffd, msgs, sizeof(msgs));
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		tool_error(CMD, "reading the userfaultfd: %s", strerror(errno));
		return 1;
	}
	if (n == 0)
		return -ESRCH;
	for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
		struct uffd_msg *m = &msgs[i];

		switch (m->event) {
		case UFFD_EVENT_PAGEFAULT:
			err = queue_push(s, m->arg.pagefault.address);
			break;
		case UFFD_EVENT_REMOVE:
			s->st.removes++;
			err = mark_removed(s, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_UNMAP:
			s->st.unmaps++;
			err = mark_removed(s, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_REMAP:
			remap(s, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
			err = 0;
			break;
		case UFFD_EVENT_FORK:
			/* A child's userfaultfd: not ours to serve. */
			close((int)m->arg.fork.ufd);
			fprintf(stderr, "%s %s: warning: the client forked with "
				"UFFD_FEATURE_EVENT_FORK: the child is not served\n", prog, CMD);
			err = 0;
			break;
		default:
			fprintf(stderr, "%s %s: warning: unknown userfaultfd event 0x%x: ignored\n",
				prog, CMD, m->event);
			err = 0;
			break;
		}
		if (err) {
			tool_error(CMD, "userfaultfd events: %s", strerror(-err));
			return 1;
		}
	}
	return 0;
}

/* Faults until the client is gone (0), a signal (0), or an error (1). */
static int serve(struct server *s)
{
	long wait_ns = 0;	/* before the next try of the queue's head */

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = s->uffd, .events = POLLIN },
			{ .fd = s->pidfd, .events = POLLIN },
		};
		struct timespec ts = { 0 }, *tsp = NULL;
		int r;

		if (stop_signal) {
			info("%s: exiting", strsignal(stop_signal));
			return 0;
		}
		if (s->qlen) {
			ts.tv_nsec = wait_ns;
			tsp = &ts;
		}
		r = ppoll(p, s->pidfd >= 0 ? 2 : 1, tsp, &s->waitmask);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			tool_error(CMD, "ppoll: %s", strerror(errno));
			return 1;
		}
		if (p[0].revents & (POLLERR | POLLNVAL)) {
			tool_error(CMD, "userfaultfd: %s", p[0].revents & POLLNVAL ? "closed"
				   : "not usable (UFFDIO_API not done by the client?)");
			return 1;
		}
		if (p[1].revents || (p[0].revents & POLLHUP))
			goto gone;
		if (p[0].revents & POLLIN) {
			r = read_events(s);
			if (r == -ESRCH)
				goto gone;
			if (r)
				return 1;
		}
		r = serve_queue(s);
		if (r == -ESRCH)
			goto gone;
		if (r == -EIO)
			return 1;
		/* EAGAIN: events are coming; ENOMEM: memory may be freed. */
		wait_ns = r == -EAGAIN ? RETRY_MS * 1000000L
			: r == -ENOMEM ? (long)s->nomem_wait * 1000000L : 0;
	}
gone:
	info("the client's memory is gone (its process exited): exiting");
	return 0;
}

int serve_snapshot_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "memory", required_argument, NULL, 'm' },
		{ "poison", required_argument, NULL, 'p' },
		{ "poison-offset", required_argument, NULL, 'o' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "connect-timeout-ms", required_argument, NULL, 'c' },
		{ "socket-mode", required_argument, NULL, 'M' },
		{ "socket-owner", required_argument, NULL, 'O' },
		{ "stats", no_argument, NULL, 'S' },
		{ "once", no_argument, NULL, '1' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct server s = { .listen_fd = -1, .conn = -1, .uffd = -1, .pidfd = -1, .lock_fd = -1,
			    .socket_mode = DEFAULT_SOCKET_MODE, .socket_uid = (uid_t)-1,
			    .socket_gid = (gid_t)-1 };
	const char *socket_path = NULL, *memory = NULL, *poison_files[16];
	size_t npoison_files = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block;
	long timeout_ms = DEFAULT_TIMEOUT_MS, connect_timeout_ms = 0;
	unsigned long ul;
	uint64_t deadline = 0, off;
	bool stats = false;
	int opt, rc = 1;
	char *end;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': socket_path = optarg; break;
		case 'm': memory = optarg; break;
		case 'p':
			if (npoison_files == sizeof(poison_files) / sizeof(poison_files[0])) {
				tool_error(CMD, "--poison: at most %zu files", npoison_files);
				goto usage;
			}
			poison_files[npoison_files++] = optarg;
			break;
		case 'o':
			if (parse_offset(optarg, &off)) {
				tool_error(CMD, "--poison-offset: not a file offset: '%s'", optarg);
				goto usage;
			}
			if (poison_add(&s, off)) {
				tool_error(CMD, "--poison-offset: %s", strerror(ENOMEM));
				goto out;
			}
			break;
		case 't':
		case 'c': {
			long *v = opt == 't' ? &timeout_ms : &connect_timeout_ms;

			errno = 0;
			*v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || *v < 0 || *v > INT_MAX) {
				tool_error(CMD, "--%s: not a number of milliseconds: '%s'",
					   opt == 't' ? "timeout-ms" : "connect-timeout-ms", optarg);
				goto usage;
			}
			break;
		}
		case 'M':
			errno = 0;
			ul = strtoul(optarg, &end, 8);
			if (errno || end == optarg || *end || *optarg < '0' || *optarg > '7' ||
			    ul > 0777) {
				tool_error(CMD, "--socket-mode: not an octal mode up to 0777: '%s'",
					   optarg);
				goto usage;
			}
			s.socket_mode = (mode_t)ul;
			break;
		case 'O':
			errno = 0;
			ul = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *optarg < '0' || *optarg > '9' ||
			    ul >= (uid_t)-1 || (*end && *end != ':')) {
				tool_error(CMD, "--socket-owner: not UID or UID:GID (numbers): '%s'",
					   optarg);
				goto usage;
			}
			s.socket_uid = (uid_t)ul;
			if (*end == ':') {
				const char *g = end + 1;

				errno = 0;
				ul = strtoul(g, &end, 10);
				if (errno || end == g || *g < '0' || *g > '9' || *end ||
				    ul >= (gid_t)-1) {
					tool_error(CMD, "--socket-owner: not UID or UID:GID (numbers): "
						   "'%s'", optarg);
					goto usage;
				}
				s.socket_gid = (gid_t)ul;
			}
			break;
		case 'S': stats = true; break;
		case '1': break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			goto usage;
		}
	}
	if (optind < argc) {
		tool_error(CMD, "unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (!socket_path || !memory) {
		tool_error(CMD, "--socket PATH and --memory FILE are required");
		goto usage;
	}

	/*
	 * SIGTERM, SIGINT, SIGHUP, SIGQUIT only while waiting (ppoll), then a
	 * clean exit (the socket file removed).
	 */
	sigemptyset(&block);
	for (size_t i = 0; i < NSTOP; i++)
		sigaddset(&block, stop_signals[i]);
	if (sigprocmask(SIG_BLOCK, &block, &s.waitmask)) {
		tool_error(CMD, "sigprocmask: %s", strerror(errno));
		goto out;
	}
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NSTOP; i++) {
		sigdelset(&s.waitmask, stop_signals[i]);
		if (sigaction(stop_signals[i], &sa, NULL)) {
			tool_error(CMD, "sigaction: %s", strerror(errno));
			goto out;
		}
	}
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		tool_error(CMD, "sigaction: %s", strerror(errno));
		goto out;
	}

	for (size_t i = 0; i < npoison_files; i++)
		if (poison_load(&s, poison_files[i]))
			goto out;
	poison_sort(&s);
	if (memory_open(&s, memory) || socket_lock(&s, socket_path) ||
	    socket_listen(&s, socket_path))
		goto out;
	info("listening on %s (%s, %" PRIu64 " bytes; %zu bad pages)", socket_path, memory,
	     s.file_size, s.npoison);
	/*
	 * The connection is waited for without a limit unless asked: the
	 * handler is started before Firecracker's snapshot load, however long
	 * before. The handshake then has --timeout-ms from the connection.
	 */
	if (connect_timeout_ms)
		deadline = now_ms() + (uint64_t)connect_timeout_ms;
	rc = client_accept(&s, deadline, (int)connect_timeout_ms);
	if (!rc)
		rc = handshake_recv(&s, (int)timeout_ms);
	if (rc == -EINTR) {
		info("%s: exiting", strsignal(stop_signal));
		rc = 0;
		goto out;
	}
	if (rc == -ESRCH) {
		rc = 0;
		goto out;
	}
	if (rc || (rc = uffd_check(&s)) || (rc = poison_place(&s)))
		goto out;
	/* Everything accepted: only now a warning about spare descriptors. */
	if (s.spare_fds || s.spare_ctrunc)
		fprintf(stderr, "%s %s: warning: handshake: %zu more descriptors than the "
			"userfaultfd%s: closed\n", prog, CMD, s.spare_fds,
			s.spare_ctrunc ? " (and more the kernel dropped)" : "");
	/*
	 * No second client: the socket is closed and its file removed now
	 * (Firecracker connects once and drops its end after the handshake,
	 * so that end says nothing). The lock stays held while we serve.
	 */
	socket_remove(&s);
	close(s.listen_fd);
	s.listen_fd = -1;
	close(s.conn);
	s.conn = -1;
	for (size_t i = 0; i < s.nregions; i++) {
		if (s.regions[i].fc.page_size != FC_PAGE_4K && !s.zeros) {
			void *z = mmap(NULL, FC_PAGE_2M, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (z == MAP_FAILED) {
				tool_error(CMD, "mmap of a zero huge page: %s", strerror(errno));
				rc = 1;
				goto out;
			}
			s.zeros = z;
		}
	}
	regions_log(&s);
	rc = serve(&s);
out:
	if (stats)
		info("stats: faults=%" PRIu64 " copied=%" PRIu64 " zero=%" PRIu64 " poisoned=%" PRIu64
		     " removes=%" PRIu64 " unmaps=%" PRIu64 " eagain=%" PRIu64 " exist=%" PRIu64
		     " gone=%" PRIu64 " unserved=%" PRIu64 " nomem=%" PRIu64, s.st.faults,
		     s.st.copied, s.st.zero, s.st.poisoned, s.st.removes, s.st.unmaps, s.st.eagain,
		     s.st.exist, s.st.gone, s.st.unserved, s.st.nomem);
	socket_remove(&s);
	if (s.lock_fd >= 0)
		close(s.lock_fd);
	for (size_t i = 0; i < s.nregions; i++)
		free(s.regions[i].removed);
	if (s.zeros)
		munmap((void *)s.zeros, FC_PAGE_2M);
	if (s.file)
		munmap((void *)s.file, s.file_size);
	if (s.pidfd >= 0)
		close(s.pidfd);
	if (s.uffd >= 0)
		close(s.uffd);
	if (s.conn >= 0)
		close(s.conn);
	if (s.listen_fd >= 0)
		close(s.listen_fd);
	free(s.queue);
	free(s.poison);
	return rc;
usage:
	rc = 2;
	goto out;
}
