// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras serve-snapshot (argv[1]: the vmras binary) against Firecracker's
 * side of its snapshot-restore protocol, played here as Firecracker plays
 * it: a userfaultfd with UFFD_FEATURE_EVENT_REMOVE only, anonymous guest
 * memory (and 2 MiB hugetlb when there are free huge pages) registered
 * MISSING, one JSON message with the userfaultfd by SCM_RIGHTS. Then:
 * threads fault every page concurrently and compare it with the memory
 * file; MADV_DONTNEED (UFFD_EVENT_REMOVE) reads back zeros, also while
 * other threads fault the range (retried until the handler met EAGAIN;
 * after the first remove returned, only zeros); the snapshot's bad pages
 * raise SIGBUS (a whole huge page in a hugetlb region, again after a
 * removal) with their neighbours intact; a KVM vCPU reads lazy pages and
 * OUTs their sums; the handler exits 0 on SIGTERM, SIGINT, SIGHUP, SIGQUIT
 * and when its client's process exits; a fault it cannot serve (a refused
 * UFFDIO_POISON) ends it at once with one line and exit 1; 4 KiB memory
 * declared with 2 MiB pages, one already there, is served without
 * spinning; a second handler on the same socket is refused (PATH.lock);
 * --socket-mode and --socket-owner; the wait for a connection has no limit
 * unless --connect-timeout-ms; without /proc the userfaultfd is still told
 * from other descriptors; bad handshakes are refused with one line and
 * exit status 1 or 2. Every wait is bounded: a hang is a failure (Bail
 * out!), not a stuck CI job.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/userfaultfd.h"
#include "kvm_util.h"
#include "tap.h"
#include "uffd_util.h"

#define PAGE 4096UL
#define HUGE (2UL << 20)
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

/* The memory file: region A (4 KiB pages), H (2 MiB), K (the vCPU's), slack. */
#define A_OFF 0UL
#define A_SIZE (8UL << 20)
#define A_PAGES (A_SIZE / PAGE)
#define H_OFF (8UL << 20)
#define H_SIZE (2 * HUGE)
#define K_OFF (12UL << 20)
#define K_SIZE (512UL << 10)
#define K_PAGES (K_SIZE / PAGE)
#define FILE_SIZE (14UL << 20)		/* larger than the regions need */
#define STRAY_BAD (13UL << 20)		/* a bad page in no region */
#define A_BAD1 100UL			/* bad pages of A (--poison, hex) */
#define A_BAD2 700UL			/* (--poison, decimal) */
#define H_BAD (H_OFF + HUGE + 5 * PAGE)	/* --poison-offset: H's second huge page */

#define THREADS 4
#define REMOVED_FIRST 200UL		/* pages of A removed after the first pass */
#define REMOVED_COUNT 64UL
#define RACE_OFF (4UL << 20)		/* file offset of the race's region */
#define RACE_COUNT 256UL		/* its pages, removed while faulted */
#define RACE_ROUNDS 20
#define RACE_ATTEMPTS 5			/* until an EAGAIN is seen */

#define PHASE_SECONDS 90		/* a phase that takes longer has hung */
#define EXIT_WAIT_MS 10000

/* The KVM guest's lazy memory: K at GPA 0x10000, code in a slot at 0. */
#define CODE_GPA 0x1000
#define K_GPA 0x10000
#define PORT_PAGE 0x10
#define PORT_TOTAL 0x11

/*
 * 16-bit real mode, at 0x1000; K_PAGES pages from segment 0x1000 (GPA
 * 0x10000) on: each page's dwords at 0, 0x404 and 0xffc summed and OUT,
 * then the sum of all those OUT. Assembled with `as --32` (.code16).
 */
static const uint8_t guest_code[] = {
	0xbb, 0x00, 0x10,		/* mov bx, 0x1000 */
	0xb9, 0x80, 0x00,		/* mov cx, 128             ; K_PAGES */
	0x66, 0x31, 0xf6,		/* xor esi, esi */
	/* 1009 1: */
	0x8e, 0xc3,			/* mov es, bx */
	0x26, 0x66, 0xa1, 0x00, 0x00,	/* mov eax, es:[0x000] */
	0x26, 0x66, 0x03, 0x06, 0x04, 0x04, /* add eax, es:[0x404] */
	0x26, 0x66, 0x03, 0x06, 0xfc, 0x0f, /* add eax, es:[0xffc] */
	0x66, 0xe7, 0x10,		/* out 0x10, eax           ; PORT_PAGE */
	0x66, 0x01, 0xc6,		/* add esi, eax */
	0x81, 0xc3, 0x00, 0x01,		/* add bx, 0x100           ; the next page */
	0x49,				/* dec cx */
	0x75, 0xe0,			/* jnz 1b */
	0x66, 0x89, 0xf0,		/* mov eax, esi */
	0x66, 0xe7, 0x11,		/* out 0x11, eax           ; PORT_TOTAL */
	0xf4,				/* hlt */
};
_Static_assert(K_PAGES == 128, "guest_code counts 128 pages");

static const char *vmras;
static char dir[64], sock_path[128], mem_path[128], poison_path[128], out_path[128],
	err_path[128];
static const uint8_t *file;		/* the memory file, mapped for comparisons */
static volatile pid_t handler_pid;	/* killed if the watchdog fires */
static const char *volatile phase = "setup";

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* A hang fails the test: TAP's Bail out!, the handler killed. */
static void on_alarm(int sig)
{
	static const char a[] = "not ok - timed out: ", b[] = "\nBail out! a wait hung\n";
	const char *p = phase;
	ssize_t w;

	(void)sig;
	w = write(1, a, sizeof(a) - 1);
	w = write(1, p, strlen(p));
	w = write(1, b, sizeof(b) - 1);
	(void)w;
	if (handler_pid > 0)
		kill(handler_pid, SIGKILL);
	_exit(1);
}

static void watchdog(const char *what)
{
	phase = what;
	alarm(PHASE_SECONDS);
}

/* The 8-byte word at a file offset (never 0, so never a zero page's). */
static uint64_t pattern(uint64_t off)
{
	uint64_t x = (off + 0x5eed) * 0x9e3779b97f4a7c15ULL;

	x ^= x >> 31;
	return x | 1;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = buf;

	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		p += n;
		len -= (size_t)n;
	}
	return close(fd) ? -errno : 0;
}

static int make_memory_file(void)
{
	uint64_t *buf = malloc(1 << 20);
	int fd, err = 0;
	void *map;

	if (!buf)
		return -ENOMEM;
	fd = open(mem_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	for (uint64_t off = 0; off < FILE_SIZE && !err; off += 1 << 20) {
		for (size_t i = 0; i < (1 << 20) / 8; i++)
			buf[i] = pattern(off + i * 8);
		if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20)
			err = -EIO;
	}
	free(buf);
	map = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED && !err)
		err = -errno;
	close(fd);
	if (!err)
		file = map;
	return err;
}

/* The whole file as a string (NULL if unreadable); sysfs files too. */
static char *read_text(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	char *s = malloc(cap);

	if (fd < 0 || !s) {
		if (fd >= 0)
			close(fd);
		free(s);
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (cap - len < 2) {
			char *t = realloc(s, cap * 2);

			if (!t)
				break;
			s = t;
			cap *= 2;
		}
		n = read(fd, s + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	s[len] = '\0';
	return s;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

struct spawn {
	const char *out, *err;	/* NULL: out_path, err_path */
	bool keep_socket;	/* do not remove a socket left at sock_path first */
	bool no_proc;		/* in a mount namespace with an empty /proc */
};

#define NO_PROC_EXIT 125	/* the child could not hide /proc */

/* The sanitizers' runtime (vmras is built as this test is) needs /proc. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
static const char *const no_proc_skip = "the sanitizers' runtime needs /proc";
#else
static const char *const no_proc_skip;
#endif

/* vmras serve-snapshot --socket --memory, then extra (NULL-terminated). */
static pid_t spawn_handler_with(const char *const *extra, const struct spawn *sp)
{
	const char *argv[24] = { vmras, "serve-snapshot", "--socket", sock_path,
				 "--memory", mem_path };
	size_t n = 6;
	pid_t pid;

	for (; extra && *extra && n < 23; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	if (!sp->keep_socket)
		unlink(sock_path);
	pid = fork();
	if (pid == 0) {
		int out = open(sp->out ? sp->out : out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int err = open(sp->err ? sp->err : err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(126);
		if (sp->no_proc && (unshare(CLONE_NEWNS) ||
				    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
				    mount("none", "/proc", "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")))
			_exit(NO_PROC_EXIT);
		execv(vmras, (char *const *)argv);
		_exit(127);
	}
	if (pid > 0)
		handler_pid = pid;
	return pid;
}

static pid_t spawn_handler(const char *const *extra)
{
	static const struct spawn plain;

	return spawn_handler_with(extra, &plain);
}

/*
 * waitpid within ms (and its rusage if ru); on a timeout the process is
 * killed: -ETIMEDOUT.
 */
static int wait_exit_ru(pid_t pid, unsigned int ms, int *status, struct rusage *ru)
{
	uint64_t end = now_ms() + ms;
	struct rusage dummy;

	if (!ru)
		ru = &dummy;
	for (;;) {
		pid_t r = wait4(pid, status, WNOHANG, ru);

		if (r == pid) {
			if (pid == handler_pid)
				handler_pid = 0;
			return 0;
		}
		if (r < 0)
			return -errno;
		if (now_ms() >= end) {
			kill(pid, SIGKILL);
			wait4(pid, status, 0, ru);
			if (pid == handler_pid)
				handler_pid = 0;
			return -ETIMEDOUT;
		}
		sleep_ms(5);
	}
}

static int wait_exit(pid_t pid, unsigned int ms, int *status)
{
	return wait_exit_ru(pid, ms, status, NULL);
}

/* Wait within ms for a socket at sock_path (the handler listening); its stat. */
static bool wait_socket(unsigned int ms, struct stat *st)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		if (!stat(sock_path, st) && S_ISSOCK(st->st_mode))
			return true;
		if (now_ms() >= end)
			return false;
		sleep_ms(5);
	}
}

static bool one_line(const char *s)
{
	return s && *s && strchr(s, '\n') == s + strlen(s) - 1;
}

struct stats {
	unsigned long faults, copied, zero, poisoned, removes, unmaps, eagain, exist, gone,
		unserved, nomem;
};

static bool parse_stats(const char *out, struct stats *st)
{
	const char *p = out ? strstr(out, "stats: ") : NULL;

	return p && sscanf(p, "stats: faults=%lu copied=%lu zero=%lu poisoned=%lu removes=%lu "
			   "unmaps=%lu eagain=%lu exist=%lu gone=%lu unserved=%lu nomem=%lu",
			   &st->faults, &st->copied, &st->zero, &st->poisoned, &st->removes,
			   &st->unmaps, &st->eagain, &st->exist, &st->gone, &st->unserved,
			   &st->nomem) == 11;
}

/* Connect to the handler's socket, waiting for it to appear; fd or -errno. */
static int connect_handler(unsigned int ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t end = now_ms() + ms;

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		err = -errno;
		close(fd);
		if ((err != -ENOENT && err != -ECONNREFUSED) || now_ms() >= end)
			return err;
		sleep_ms(5);
	}
}

/* len bytes, the first sendmsg carrying nfds descriptors; 0 or -errno. */
static int send_msg(int sock, const char *buf, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	bool first = true;

	do {
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (first && nfds > 0) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.b;
			mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
			memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
		}
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0)
			return -errno;
		first = false;
		buf += n;
		len -= (size_t)n;
	} while (len);
	return 0;
}

static int uffd_register(int uffd, void *p, size_t len)
{
	struct uffdio_register r = { .range = { .start = (uintptr_t)p, .len = len },
				     .mode = UFFDIO_REGISTER_MODE_MISSING };

	return (int)kabi_ioctl(uffd, UFFDIO_REGISTER, &r);
}

static bool same_as_file(const uint8_t *p, uint64_t off, size_t len)
{
	return !memcmp(p, file + off, len);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8)
		if (*(const volatile uint64_t *)(p + i))
			return false;
	return true;
}

static bool a_bad(size_t page)
{
	return page == A_BAD1 || page == A_BAD2;
}

/* --- (1) concurrent faults --- */

struct toucher {
	uint8_t *a;
	size_t start;
	pthread_barrier_t *bar;
	size_t wrong, first_wrong;
};

static void *touch_all(void *arg)
{
	struct toucher *t = arg;

	pthread_barrier_wait(t->bar);
	for (size_t i = 0; i < A_PAGES; i++) {
		size_t p = (t->start + i) % A_PAGES;

		if (a_bad(p))
			continue;
		if (!same_as_file(t->a + p * PAGE, A_OFF + p * PAGE, PAGE) && !t->wrong++)
			t->first_wrong = p;
	}
	return NULL;
}

static void test_concurrent_faults(uint8_t *a)
{
	struct toucher t[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t bar;
	size_t wrong = 0, first = 0, started = 0;
	uint64_t t0, ms;

	watchdog("concurrent faults");
	pthread_barrier_init(&bar, NULL, THREADS + 1);
	for (size_t i = 0; i < THREADS; i++) {
		t[i] = (struct toucher){ .a = a, .start = i * (A_PAGES / THREADS), .bar = &bar };
		if (pthread_create(&th[i], NULL, touch_all, &t[i]))
			break;
		started++;
	}
	if (!is_int(started, THREADS, "faults: %d touching threads started", THREADS)) {
		tap_diag("cannot go on without the threads");
		if (handler_pid > 0)
			kill(handler_pid, SIGKILL);
		exit(tap_done());
	}
	t0 = now_ms();
	pthread_barrier_wait(&bar);
	for (size_t i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (t[i].wrong && !wrong)
			first = t[i].first_wrong;
		wrong += t[i].wrong;
	}
	ms = now_ms() - t0;
	pthread_barrier_destroy(&bar);
	if (!is_int(wrong, 0, "faults: %d threads read all %lu pages of the 4 KiB region, every "
		    "byte as in the memory file", THREADS, A_PAGES - 2))
		tap_diag("first wrong page: %zu", first);
	tap_diag("%lu pages faulted in by %d threads in %" PRIu64 " ms: %.0f faults/s",
		 A_PAGES - 2, THREADS, ms, ms ? (double)(A_PAGES - 2) * 1000 / (double)ms : 0.0);
}

/* --- (2) UFFD_EVENT_REMOVE --- */

static void test_remove(uint8_t *a)
{
	uint8_t *r = a + REMOVED_FIRST * PAGE;
	size_t zero = 0;

	watchdog("MADV_DONTNEED (UFFD_EVENT_REMOVE)");
	if (!is_int(madvise(r, REMOVED_COUNT * PAGE, MADV_DONTNEED), 0,
		    "remove: MADV_DONTNEED of %lu faulted-in pages", REMOVED_COUNT))
		return;
	for (size_t p = 0; p < REMOVED_COUNT; p++)
		zero += all_zero(r + p * PAGE, PAGE);
	is_int(zero, REMOVED_COUNT, "remove: the removed pages read back as zeros");
	ok(same_as_file(r - PAGE, A_OFF + (REMOVED_FIRST - 1) * PAGE, PAGE) &&
	   same_as_file(r + REMOVED_COUNT * PAGE, A_OFF + (REMOVED_FIRST + REMOVED_COUNT) * PAGE,
			PAGE),
	   "remove: the pages either side keep the file's data");
}

/*
 * --- (2b) removes while other threads fault the range: the EAGAIN path ---
 * A handler of its own for each attempt, so that its --stats tell whether
 * the race met EAGAIN; attempts until one did.
 */
struct racer {
	uint8_t *m;
	volatile int *done, *removed;	/* removed: the first MADV_DONTNEED returned */
	size_t reads, zeros, wrong, data_after;
};

static void *race_reader(void *arg)
{
	struct racer *r = arg;

	while (!__atomic_load_n(r->done, __ATOMIC_ACQUIRE)) {
		for (size_t p = 0; p < RACE_COUNT; p++) {
			size_t w = (p * 37 % (PAGE / 8)) * 8;	/* one word a page, atomic */
			int removed = __atomic_load_n(r->removed, __ATOMIC_ACQUIRE);
			uint64_t v = *(volatile uint64_t *)(r->m + p * PAGE + w);

			__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
			if (!v)
				r->zeros++;
			else if (removed)	/* after a remove: zeros only, for good */
				r->data_after++;
			else if (v != pattern(RACE_OFF + p * PAGE + w))
				r->wrong++;
		}
	}
	return NULL;
}

struct race_result {
	bool ran, madv_ok, exit_ok;
	size_t reads, zeros, wrong, data_after, zero_after;
	unsigned long eagain;
};

static void race_once(struct race_result *res)
{
	const char *extra[] = { "--stats", NULL };
	struct racer rc[THREADS - 1];
	pthread_t th[THREADS - 1];
	volatile int done = 0, removed = 0;
	int uffd, sock = -1, status = 0, n;
	size_t started = 0, madv_failed = 0;
	char json[256], *out;
	struct stats st;
	uint8_t *m;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE);
	m = mmap(NULL, RACE_COUNT * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		 0);
	if (uffd < 0 || m == MAP_FAILED || uffd_register(uffd, m, RACE_COUNT * PAGE))
		goto out;
	pid = spawn_handler(extra);
	if (pid <= 0)
		goto out;
	sock = connect_handler(10000);
	n = snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":%lu,"
		     "\"page_size\":4096}]", (unsigned long)(uintptr_t)m, RACE_COUNT * PAGE,
		     RACE_OFF);
	if (sock < 0 || send_msg(sock, json, (size_t)n, &uffd, 1)) {
		kill(pid, SIGKILL);
		wait_exit(pid, EXIT_WAIT_MS, &status);
		goto out;
	}
	res->ran = true;
	for (size_t i = 0; i < THREADS - 1; i++) {
		rc[i] = (struct racer){ .m = m, .done = &done, .removed = &removed };
		if (pthread_create(&th[i], NULL, race_reader, &rc[i]))
			break;
		started++;
	}
	/* The readers fault the file's data in first (a pass each). */
	for (uint64_t end = now_ms() + EXIT_WAIT_MS; now_ms() < end; sleep_ms(1)) {
		size_t passes = 0;

		for (size_t i = 0; i < started; i++)
			passes += __atomic_load_n(&rc[i].reads, __ATOMIC_RELAXED) >= RACE_COUNT;
		if (passes == started)
			break;
	}
	for (int i = 0; i < RACE_ROUNDS; i++) {
		if (madvise(m, RACE_COUNT * PAGE, MADV_DONTNEED))
			madv_failed++;
		__atomic_store_n(&removed, 1, __ATOMIC_RELEASE);
		sleep_ms(2);
	}
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	for (size_t i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		res->reads += rc[i].reads;
		res->zeros += rc[i].zeros;
		res->wrong += rc[i].wrong;
		res->data_after += rc[i].data_after;
	}
	res->madv_ok = started == THREADS - 1 && !madv_failed;
	for (size_t p = 0; p < RACE_COUNT; p++)
		res->zero_after += all_zero(m + p * PAGE, PAGE);
	kill(pid, SIGTERM);
	res->exit_ok = !wait_exit(pid, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
		       WEXITSTATUS(status) == 0;
	out = read_text(out_path);
	if (parse_stats(out, &st))
		res->eagain = st.eagain;
	else
		res->exit_ok = false;
	free(out);
out:
	if (sock >= 0)
		close(sock);
	if (uffd >= 0)
		close(uffd);
	if (m != MAP_FAILED)
		munmap(m, RACE_COUNT * PAGE);
}

static void test_remove_race(void)
{
	struct race_result r, sum = { .ran = true, .madv_ok = true, .exit_ok = true };
	int attempts = 0;

	watchdog("MADV_DONTNEED racing faults");
	while (attempts < RACE_ATTEMPTS) {
		race_once(&r);
		attempts++;
		sum.ran &= r.ran;
		sum.madv_ok &= r.madv_ok;
		sum.exit_ok &= r.exit_ok;
		sum.reads += r.reads;
		sum.zeros += r.zeros;
		sum.wrong += r.wrong;
		sum.data_after += r.data_after;
		sum.eagain += r.eagain;
		tap_diag("remove race, attempt %d: %lu EAGAIN retries, %zu reads, %zu zeros",
			 attempts, r.eagain, r.reads, r.zeros);
		if (!r.ran || !r.madv_ok || r.zero_after != RACE_COUNT || r.eagain)
			break;
	}
	if (!sum.eagain)
		tap_diag("remove race: the EAGAIN path was not seen in %d attempts", attempts);
	ok(sum.ran && sum.madv_ok && sum.exit_ok,
	   "remove race: %d removes of %lu pages while %d threads fault them (%d attempts), the "
	   "handler exits 0", RACE_ROUNDS, RACE_COUNT, THREADS - 1, attempts);
	is_int(sum.wrong, 0, "remove race: before the first remove every word read is the file's "
	       "or zero (%zu reads, %zu zeros)", sum.reads, sum.zeros);
	is_int(sum.data_after, 0, "remove race: after the first remove returned, every word read "
	       "is zero");
	is_int(r.zero_after, RACE_COUNT, "remove race: afterwards the whole range reads as zeros");
}

/* --- (3) poison --- */

struct probe {
	const volatile char *p;
	int hit;
	siginfo_t si;
};

static void *probe_thread(void *arg)
{
	struct probe *pr = arg;

	pr->hit = test_read_sigbus(pr->p, &pr->si);
	return NULL;
}

/* Touch p in a thread of its own: 1 and si on SIGBUS, 0 if it read fine. */
static int touch_for_sigbus(const void *p, siginfo_t *si)
{
	struct probe pr = { .p = p };
	pthread_t th;

	if (pthread_create(&th, NULL, probe_thread, &pr))
		return -1;
	pthread_join(th, NULL);
	*si = pr.si;
	return pr.hit;
}

static bool sigbus_at(const uint8_t *p, const char *what)
{
	siginfo_t si;
	int hit = touch_for_sigbus(p, &si);

	return ok(hit == 1 && si.si_signo == SIGBUS &&
		  (si.si_code == BUS_ADRERR || si.si_code == BUS_MCEERR_AR) &&
		  (uintptr_t)si.si_addr - ((uintptr_t)p & ~(PAGE - 1)) < PAGE,
		  "poison: %s: SIGBUS (%s) at its address", what,
		  hit != 1 ? "none" : si.si_code == BUS_ADRERR ? "BUS_ADRERR"
		  : si.si_code == BUS_MCEERR_AR ? "BUS_MCEERR_AR" : "another si_code");
}

static void test_poison(uint8_t *a, uint8_t *h)
{
	char what[64];

	watchdog("poison");
	sigbus_at(a + A_BAD1 * PAGE, "bad page 100 of the 4 KiB region (--poison, hex)");
	sigbus_at(a + A_BAD1 * PAGE + 123, "bad page 100, a second touch");
	sigbus_at(a + A_BAD2 * PAGE + PAGE - 1, "bad page 700 (--poison, decimal)");
	ok(same_as_file(a + (A_BAD1 - 1) * PAGE, A_OFF + (A_BAD1 - 1) * PAGE, PAGE) &&
	   same_as_file(a + (A_BAD1 + 1) * PAGE, A_OFF + (A_BAD1 + 1) * PAGE, PAGE) &&
	   same_as_file(a + (A_BAD2 - 1) * PAGE, A_OFF + (A_BAD2 - 1) * PAGE, PAGE) &&
	   same_as_file(a + (A_BAD2 + 1) * PAGE, A_OFF + (A_BAD2 + 1) * PAGE, PAGE),
	   "poison: the bad pages' neighbours hold the file's data");
	/* A removed bad page is still bad: poisoned again, never zeros. */
	if (is_int(madvise(a + A_BAD1 * PAGE, PAGE, MADV_DONTNEED), 0,
		   "poison: MADV_DONTNEED of bad page 100"))
		sigbus_at(a + A_BAD1 * PAGE, "bad page 100 after its removal");

	if (!h) {
		tap_skip("poison: the huge-page region", "no 2 MiB huge pages");
		return;
	}
	watchdog("poison (hugetlb)");
	ok(same_as_file(h, H_OFF, HUGE), "poison: the good huge page holds the file's data");
	for (unsigned long off = 0; off < HUGE; off += HUGE / 2 - PAGE) {
		snprintf(what, sizeof(what), "the bad huge page's byte 0x%lx", off);
		sigbus_at(h + HUGE + off, what);
	}
	sigbus_at(h + (H_BAD - H_OFF), "the bad 4 KiB page in it (--poison-offset)");
	if (is_int(madvise(h, HUGE, MADV_DONTNEED), 0, "remove: MADV_DONTNEED of the good huge page"))
		ok(all_zero(h, HUGE), "remove: the huge page reads back as zeros (UFFDIO_COPY of zeros)");
	/* The bad huge page removed is still bad: poisoned again, never zeros. */
	if (is_int(madvise(h + HUGE, HUGE, MADV_DONTNEED), 0,
		   "poison: MADV_DONTNEED of the bad huge page")) {
		sigbus_at(h + HUGE, "the bad huge page after its removal");
		sigbus_at(h + (H_BAD - H_OFF), "its bad 4 KiB page after the removal");
	}
}

/* --- (4) a KVM vCPU reads lazy pages --- */

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void test_kvm(uint8_t *k)
{
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	uint32_t total = 0;
	size_t wrong = 0, first = 0;
	uint8_t *ram;
	int err;

	watchdog("KVM vCPU");
	err = kvmt_vm_create(&vm);
	if (err == -ENOENT || err == -EACCES) {
		tap_skip("kvm: a vCPU reads lazy pages", "no usable /dev/kvm (%s)", strerror(-err));
		return;
	}
	if (!is_int(err, 0, "kvm: KVM_CREATE_VM") ||
	    !is_int(kvmt_vm_add_ram(vm, 0, 0, 0x10000, 0, (void **)&ram), 0, "kvm: code slot") ||
	    !is_int(kvmt_vm_set_memslot(vm, 1, K_GPA, K_SIZE, k, 0), 0,
		    "kvm: the lazy region as a memslot at GPA 0x%x", K_GPA))
		goto out;
	memcpy(ram + CODE_GPA, guest_code, sizeof(guest_code));
	if (!is_int(kvmt_vcpu_create(vm, 0, CODE_GPA, &vcpu), 0, "kvm: vCPU"))
		goto out;
	for (size_t p = 0; p < K_PAGES; p++) {
		const uint8_t *f = file + K_OFF + p * PAGE;
		uint32_t want = le32(f) + le32(f + 0x404) + le32(f + 0xffc);

		err = kvmt_vcpu_run_to_out(vcpu, PORT_PAGE, 100);
		if (err) {
			is_int(err, 0, "kvm: the guest reads page %zu (exit %u)", p,
			       vcpu->run->exit_reason);
			goto out;
		}
		if (kvmt_io_value(vcpu->run) != want && !wrong++)
			first = p;
		total += want;
	}
	if (!is_int(wrong, 0, "kvm: the guest's sums of %lu lazy pages match the file", K_PAGES))
		tap_diag("first wrong page: %zu", first);
	err = kvmt_vcpu_run_to_out(vcpu, PORT_TOTAL, 100);
	ok(!err && kvmt_io_value(vcpu->run) == total, "kvm: and so does its total (0x%x)", total);
	ok(same_as_file(k, K_OFF, K_SIZE), "kvm: the region the guest faulted in is the file's");
out:
	kvmt_vm_free(vm);
}

/* --- the main run --- */

static uint8_t *map_huge(char *why, size_t why_size)
{
	char *s = read_text("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
	long free_pages = s ? strtol(s, NULL, 10) : 0;
	void *h;

	free(s);
	if (free_pages < 2) {
		snprintf(why, why_size, "%ld free 2 MiB huge pages (2 needed)", free_pages);
		return NULL;
	}
	h = mmap(NULL, H_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (h == MAP_FAILED) {
		snprintf(why, why_size, "mmap of 2 MiB huge pages: %s", strerror(errno));
		return NULL;
	}
	return h;
}

static void test_main_run(void)
{
	char hbad[32], json[1024], why[128] = "", line[64];
	const char *extra[] = { "--poison", poison_path, "--poison-offset", hbad, "--stats",
				"--timeout-ms", "20000", NULL };
	uint8_t *a = NULL, *k = NULL, *h = NULL;
	int uffd = -1, sock = -1, devnull = -1, status = 0, n;
	char *out = NULL, *err = NULL;
	struct stats st;
	pid_t pid;

	watchdog("main run: setup");
	snprintf(hbad, sizeof(hbad), "0x%lx", H_BAD);
	n = snprintf(json, sizeof(json), "# the snapshot's bad pages\n0x%lx\n  %lu   # decimal\n"
		     "\n0x%lx # in no region\n", A_OFF + A_BAD1 * PAGE, A_OFF + A_BAD2 * PAGE,
		     STRAY_BAD);
	if (!is_int(write_file(poison_path, json, (size_t)n), 0, "main: the poison list written"))
		return;
	uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE);
	if (!ok(uffd >= 0, "main: a userfaultfd with UFFD_FEATURE_EVENT_REMOVE, as Firecracker's "
		"(%s)", uffd < 0 ? strerror(-uffd) : "ok"))
		return;
	a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	k = mmap(NULL, K_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!ok(a != MAP_FAILED && k != MAP_FAILED, "main: guest memory mapped")) {
		a = a == MAP_FAILED ? NULL : a;
		k = k == MAP_FAILED ? NULL : k;
		goto out;
	}
	h = map_huge(why, sizeof(why));
	if (!h)
		tap_diag("no huge-page region: %s", why);
	if (!ok(!uffd_register(uffd, a, A_SIZE) && !uffd_register(uffd, k, K_SIZE) &&
		(!h || !uffd_register(uffd, h, H_SIZE)),
		"main: the regions registered MISSING"))
		goto out;
	/*
	 * A: "page_size" only; K: "page_size_kib" only, as Firecracker 1.7 to
	 * 1.11 (bytes, despite the name); H: both, as 1.12 on, and a key no
	 * Firecracker sends.
	 */
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":%lu,\"page_size\":4096},"
		     " {\"base_host_virt_addr\": %lu, \"size\": %lu, \"offset\": %lu, "
		     "\"page_size_kib\": 4096}",
		     (unsigned long)(uintptr_t)a, A_SIZE, A_OFF, (unsigned long)(uintptr_t)k, K_SIZE,
		     K_OFF);
	if (h)
		n += snprintf(json + n, sizeof(json) - (size_t)n,
			      ",\n {\"base_host_virt_addr\": %lu, \"size\": %lu, \"offset\": %lu, "
			      "\"page_size_kib\": 2097152, \"page_size\": 2097152, "
			      "\"future\": {\"x\": [1, 2.5e3, \"s\\u0041\", null, true]}}",
			      (unsigned long)(uintptr_t)h, H_SIZE, H_OFF);
	n += snprintf(json + n, sizeof(json) - (size_t)n, "]");

	pid = spawn_handler(extra);
	if (!ok(pid > 0, "main: vmras serve-snapshot started"))
		goto out;
	sock = connect_handler(10000);
	if (!ok(sock >= 0, "main: connected to its socket (%s)", sock < 0 ? strerror(-sock) : "ok"))
		goto stop;
	/* In two parts (the handler reads to a complete value), with a spare fd too. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	{
		int fds[2] = { uffd, devnull };
		int r1 = devnull < 0 ? -EBADF : send_msg(sock, json, 40, fds, 2), r2;

		sleep_ms(50);
		r2 = send_msg(sock, json + 40, (size_t)n - 40, NULL, 0);
		ok(!r1 && !r2, "main: the handshake sent in two parts, the userfaultfd and a spare "
		   "fd attached");
	}

	test_concurrent_faults(a);
	ok(access(sock_path, F_OK) && errno == ENOENT,
	   "main: the socket file is removed once the client is in (no second client)");
	test_remove(a);
	test_poison(a, h);
	test_kvm(k);

	watchdog("main run: SIGTERM");
	kill(pid, SIGTERM);
	if (!is_int(wait_exit(pid, EXIT_WAIT_MS, &status), 0, "main: the handler exits on SIGTERM"))
		goto out;
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "main: with status 0 (status 0x%x)",
	   status);
	out = read_text(out_path);
	err = read_text(err_path);
	snprintf(line, sizeof(line), "client pid %d uid %u", (int)getpid(), (unsigned int)getuid());
	ok(out && strstr(out, line), "main: it logged its client's SO_PEERCRED (%s)", line);
	ok(access(sock_path, F_OK) && errno == ENOENT, "main: its socket is gone");
	if (!ok(err && strstr(err, "poison offset 0xd00000 is in no region") &&
		strstr(err, "1 more descriptors than the userfaultfd") &&
		count_lines(err) == (h ? 2 : 3),
		"main: stderr has the warnings only (the stray bad page%s, the spare fd)",
		h ? "" : ", the huge page's with no huge-page region"))
		tap_diag("stderr: %s", err ? err : "(none)");
	if (!ok(parse_stats(out, &st), "main: --stats printed its line")) {
		tap_diag("stdout: %s", out ? out : "(none)");
		goto out;
	}
	tap_diag("%.*s", (int)strcspn(strstr(out, "stats: "), "\n"), strstr(out, "stats: "));
	ok(st.copied >= A_PAGES - 2 + K_PAGES + (h ? 1 : 0),
	   "main: stats: at least every good page copied (%lu)", st.copied);
	ok(st.zero >= REMOVED_COUNT + (h ? 1 : 0),
	   "main: stats: zero pages for the removed ranges (%lu)", st.zero);
	is_int(st.poisoned, 3 + (h ? 2 : 0), "main: stats: poisoned pages (100 twice, 700%s)",
	       h ? ", the bad huge page twice" : "");
	ok(st.removes >= 2 + (h ? 2 : 0), "main: stats: removes (%lu)", st.removes);
	ok(st.faults == st.copied + st.zero + st.poisoned + st.exist && !st.unserved && !st.nomem,
	   "main: stats: every fault served, none left (eagain %lu, exist %lu)", st.eagain,
	   st.exist);
	goto out;
stop:
	kill(pid, SIGKILL);
	wait_exit(pid, EXIT_WAIT_MS, &status);
out:
	free(out);
	free(err);
	if (sock >= 0)
		close(sock);
	if (devnull >= 0)
		close(devnull);
	if (uffd >= 0)
		close(uffd);
	if (a)
		munmap(a, A_SIZE);
	if (k)
		munmap(k, K_SIZE);
	if (h)
		munmap(h, H_SIZE);
}

/* --- the client's process exits: so does the handler --- */

static int client_child(void)
{
	int uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE), sock;
	uint8_t *m = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	char json[256];
	int n;

	if (uffd < 0 || m == MAP_FAILED || uffd_register(uffd, m, 16 * PAGE))
		return 3;
	sock = connect_handler(10000);
	if (sock < 0)
		return 4;
	n = snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":%lu,"
		     "\"page_size\":4096}]", (unsigned long)(uintptr_t)m, 16 * PAGE, 5 * PAGE);
	if (send_msg(sock, json, (size_t)n, &uffd, 1))
		return 5;
	for (int p = 0; p < 16; p++)
		if (!same_as_file(m + p * PAGE, (uint64_t)(5 + p) * PAGE, PAGE))
			return 6;
	return 0;	/* exits with the socket and the userfaultfd open, as Firecracker */
}

static void test_client_exit(void)
{
	const char *extra[] = { "--stats", NULL };
	int status = 0, hstatus = 0;
	pid_t h, c;
	char *out;

	watchdog("client exit");
	h = spawn_handler(extra);
	if (!ok(h > 0, "client exit: handler started"))
		return;
	c = fork();
	if (c == 0)
		_exit(client_child());
	if (!ok(c > 0 && !wait_exit(c, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
		WEXITSTATUS(status) == 0,
		"client exit: a client process read 16 lazy pages right and exited (status 0x%x)",
		status)) {
		kill(h, SIGKILL);
		wait_exit(h, EXIT_WAIT_MS, &hstatus);
		return;
	}
	ok(!wait_exit(h, EXIT_WAIT_MS, &hstatus) && WIFEXITED(hstatus) && WEXITSTATUS(hstatus) == 0,
	   "client exit: the handler exits 0 by itself when its client's process is gone "
	   "(status 0x%x)", hstatus);
	out = read_text(out_path);
	ok(out && strstr(out, "process exited") && strstr(out, "copied=16 "),
	   "client exit: it said why, after 16 pages copied");
	free(out);
}

/*
 * --- UFFDIO_POISON refused: the handler exits 1 at once, never zero-fills ---
 * A client that calls its hugetlb region 4 KiB pages: the kernel refuses a
 * 4 KiB UFFDIO_POISON there (EINVAL; the kernel names a hugetlb fault by
 * its huge page's start, so the bad page is the first), as a kernel before
 * 6.6 refuses every one. The fault cannot be served: the handler says so
 * in one line and exits 1 at once, for the supervisor to see; the client's
 * thread waits (as in Firecracker until the supervisor kills the microVM).
 */
static void test_poison_refused(void)
{
	const char *extra[] = { "--poison-offset", "0", "--stats", "--timeout-ms", "10000",
				NULL };
	char why[128], *err = NULL, *out = NULL;
	int status = 0, hstatus = 0, hr;
	struct stats st;
	uint8_t *h;
	pid_t pid, c;

	watchdog("UFFDIO_POISON refused");
	h = map_huge(why, sizeof(why));
	if (!h) {
		tap_skip("poison refused: the handler exits 1 at once", "%s", why);
		return;
	}
	munmap(h, H_SIZE);
	pid = spawn_handler(extra);
	if (!ok(pid > 0, "poison refused: handler started"))
		return;
	c = fork();
	if (c == 0) {
		int uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE), sock, n;
		uint8_t *m = mmap(NULL, HUGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
		char json[256];

		if (uffd < 0 || m == MAP_FAILED || uffd_register(uffd, m, HUGE))
			_exit(3);
		sock = connect_handler(10000);
		n = snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%lu,\"size\":%lu,"
			     "\"offset\":0,\"page_size\":4096}]", (unsigned long)(uintptr_t)m, HUGE);
		if (sock < 0 || send_msg(sock, json, (size_t)n, &uffd, 1))
			_exit(4);
		_exit(*(volatile uint8_t *)(m + 0x1000) == 0 ? 5 : 6);	/* never returns */
	}
	hr = wait_exit(pid, EXIT_WAIT_MS, &hstatus);
	ok(!hr && WIFEXITED(hstatus) && WEXITSTATUS(hstatus) == 1,
	   "poison refused: the handler exits 1 at once, its client still there (status 0x%x)",
	   hstatus);
	err = read_text(err_path);
	if (!ok(one_line(err) && strstr(err, "UFFDIO_POISON at 0x") &&
		strstr(err, "Invalid argument") && strstr(err, "cannot be served"),
		"poison refused: in one line: UFFDIO_POISON's EINVAL, a fault that cannot be served"))
		tap_diag("stderr: %s", err ? err : "(none)");
	out = read_text(out_path);
	ok(parse_stats(out, &st) && st.unserved == 1 && !st.copied && !st.zero && !st.poisoned,
	   "poison refused: it served nothing (no copy, no zero page)");
	if (c > 0) {
		ok(waitpid(c, &status, WNOHANG) == 0,
		   "poison refused: the client's touch got neither data nor zeros (it waits)");
		kill(c, SIGKILL);
		wait_exit(c, EXIT_WAIT_MS, &status);
	}
	free(err);
	free(out);
}

/*
 * --- 4 KiB memory declared with 2 MiB pages, a page of it there already ---
 * UFFDIO_COPY of 2 MiB stops at the present page (EAGAIN with a part
 * copied, or EEXIST when it is first): the handler must serve the faulting
 * 4 KiB page then, not spin on EEXIST for ever. Faults before, at and
 * after the present page complete, or the handler exits 1 in one line;
 * either way within the wait, and with little CPU.
 */
#define MIS_PRESENT 3UL			/* the page there before the handshake */

static int misdeclared_child(void)
{
	static const size_t touch[] = { 0, 10, 511, 2 };
	int uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE), sock, n;
	uint8_t *raw = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0), *m;
	char json[256];

	if (uffd < 0 || raw == MAP_FAILED)
		return 3;
	m = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	madvise(m, HUGE, MADV_NOHUGEPAGE);	/* 4 KiB pages, not a THP */
	memset(m + MIS_PRESENT * PAGE, 0xab, PAGE);
	if (uffd_register(uffd, m, HUGE))
		return 3;
	sock = connect_handler(10000);
	if (sock < 0)
		return 4;
	n = snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":%lu,"
		     "\"page_size\":2097152}]", (unsigned long)(uintptr_t)m, HUGE, H_OFF);
	if (send_msg(sock, json, (size_t)n, &uffd, 1))
		return 5;
	for (size_t i = 0; i < sizeof(touch) / sizeof(touch[0]); i++)
		if (!same_as_file(m + touch[i] * PAGE, H_OFF + touch[i] * PAGE, PAGE))
			return 6;
	return m[MIS_PRESENT * PAGE] == 0xab && m[MIS_PRESENT * PAGE + PAGE - 1] == 0xab ? 0 : 7;
}

static void test_misdeclared(void)
{
	const char *extra[] = { "--stats", NULL };
	int status = 0, hstatus = 0, hr;
	struct rusage ru;
	double cpu;
	char *err, *out;
	pid_t h, c;

	watchdog("4 KiB memory declared 2 MiB");
	h = spawn_handler(extra);
	if (!ok(h > 0, "misdeclared: handler started"))
		return;
	c = fork();
	if (c == 0)
		_exit(misdeclared_child());
	wait_exit(c, EXIT_WAIT_MS, &status);
	hr = wait_exit_ru(h, EXIT_WAIT_MS, &hstatus, &ru);
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	      (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	err = read_text(err_path);
	out = read_text(out_path);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		ok(!hr && WIFEXITED(hstatus) && WEXITSTATUS(hstatus) == 0,
		   "misdeclared: faults before, after and next to the present page read the file's "
		   "data, the present page kept; the handler exits 0 with its client");
	} else {
		if (!ok(!hr && WIFEXITED(hstatus) && WEXITSTATUS(hstatus) == 1 && one_line(err) &&
			strstr(err, "cannot be served"),
			"misdeclared: the client did not finish (status 0x%x): then the handler "
			"exited 1 with one line", status))
			tap_diag("stderr: %s", err ? err : "(none)");
	}
	ok(cpu < 2.0, "misdeclared: the handler did not spin (%.2f s of CPU)", cpu);
	if (out && strstr(out, "stats: "))
		tap_diag("%.*s", (int)strcspn(strstr(out, "stats: "), "\n"), strstr(out, "stats: "));
	free(err);
	free(out);
}

/* --- one handler per socket: PATH.lock --- */
static void test_second_handler(void)
{
	char out2[160], err2[160], lock[160];
	const struct spawn second = { .out = out2, .err = err2, .keep_socket = true };
	struct stat st, st2, lst;
	int status = 0, status2 = 0;
	char *err;
	pid_t h1, h2;

	watchdog("a second handler on the same socket");
	snprintf(out2, sizeof(out2), "%s/out2", dir);
	snprintf(err2, sizeof(err2), "%s/err2", dir);
	snprintf(lock, sizeof(lock), "%s.lock", sock_path);
	h1 = spawn_handler(NULL);
	if (!ok(h1 > 0 && wait_socket(EXIT_WAIT_MS, &st), "second: the first handler listens")) {
		if (h1 > 0) {
			kill(h1, SIGKILL);
			wait_exit(h1, EXIT_WAIT_MS, &status);
		}
		return;
	}
	ok((st.st_mode & 07777) == 0600 && !stat(lock, &lst) && (lst.st_mode & 07777) == 0600,
	   "second: the socket is 0600 by default, %s.lock 0600 (0%o, 0%o)", "PATH",
	   (unsigned int)(st.st_mode & 07777), (unsigned int)(lst.st_mode & 07777));
	h2 = spawn_handler_with(NULL, &second);
	handler_pid = h1;
	err = NULL;
	if (h2 > 0 && !wait_exit(h2, EXIT_WAIT_MS, &status2))
		err = read_text(err2);
	if (!ok(WIFEXITED(status2) && WEXITSTATUS(status2) == 1 && one_line(err) &&
		strstr(err, "another serve-snapshot is serving it"),
		"second: a second handler on the same path is refused, exit 1, one line"))
		tap_diag("status 0x%x, stderr: %s", status2, err ? err : "(none)");
	ok(!stat(sock_path, &st2) && st2.st_ino == st.st_ino && waitpid(h1, &status, WNOHANG) == 0,
	   "second: the first handler's socket is untouched, and it still runs");
	kill(h1, SIGTERM);
	ok(!wait_exit(h1, EXIT_WAIT_MS, &status) && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "second: the first handler exits 0 on SIGTERM");
	free(err);
	unlink(out2);
	unlink(err2);
}

/* --- --socket-mode, --socket-owner --- */
static void test_socket_perms(void)
{
	char owner[32];
	const char *extra[] = { "--socket-mode", "0660", "--socket-owner", owner, NULL };
	const char *bad[] = { "--socket-mode", "0999", NULL };
	uid_t uid = geteuid() == 0 ? 4242 : getuid();
	gid_t gid = geteuid() == 0 ? 4343 : getgid();
	struct stat st;
	int status = 0;
	pid_t h;

	watchdog("socket permissions");
	snprintf(owner, sizeof(owner), "%u:%u", (unsigned int)uid, (unsigned int)gid);
	h = spawn_handler(extra);
	if (!ok(h > 0 && wait_socket(EXIT_WAIT_MS, &st), "perms: handler listens"))
		goto out;
	ok((st.st_mode & 07777) == 0660 && st.st_uid == uid && st.st_gid == gid,
	   "perms: --socket-mode 0660 --socket-owner %s: the socket is 0%o %u:%u", owner,
	   (unsigned int)(st.st_mode & 07777), (unsigned int)st.st_uid, (unsigned int)st.st_gid);
out:
	if (h > 0) {
		kill(h, SIGTERM);
		wait_exit(h, EXIT_WAIT_MS, &status);
	}
	h = spawn_handler(bad);
	ok(h > 0 && !wait_exit(h, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
	   WEXITSTATUS(status) == 2, "perms: --socket-mode 0999 is a usage error (exit 2)");
}

/* --- stop signals, and waiting for the connection --- */
static void test_signals_and_waiting(void)
{
	static const int sigs[] = { SIGHUP, SIGQUIT, SIGINT };
	const char *short_hs[] = { "--timeout-ms", "100", NULL };
	const char *short_conn[] = { "--connect-timeout-ms", "200", NULL };
	struct stat st;
	int status = 0;
	char *err = NULL;
	pid_t h;

	watchdog("stop signals");
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		h = spawn_handler(NULL);
		if (h > 0 && wait_socket(EXIT_WAIT_MS, &st))
			kill(h, sigs[i]);
		ok(h > 0 && !wait_exit(h, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
		   WEXITSTATUS(status) == 0 && access(sock_path, F_OK) && errno == ENOENT,
		   "signals: %s: exit 0, the socket removed (status 0x%x)", strsignal(sigs[i]),
		   status);
	}
	watchdog("waiting for the connection");
	h = spawn_handler(short_hs);
	if (h > 0 && wait_socket(EXIT_WAIT_MS, &st)) {
		sleep_ms(500);
		ok(waitpid(h, &status, WNOHANG) == 0, "waiting: --timeout-ms 100 does not limit "
		   "the wait for a connection (still waiting after 500 ms)");
		kill(h, SIGTERM);
		wait_exit(h, EXIT_WAIT_MS, &status);
	} else {
		ok(false, "waiting: handler listens");
	}
	h = spawn_handler(short_conn);
	ok(h > 0 && !wait_exit(h, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
	   WEXITSTATUS(status) == 1 && one_line((err = read_text(err_path))) &&
	   strstr(err, "none connected within --connect-timeout-ms 200"),
	   "waiting: --connect-timeout-ms 200 and nobody connects: exit 1, one line");
	free(err);
}

/*
 * --- a client gone before the handler accepted it: exit 0 ---
 * The handler is stopped while a client connects, sends its handshake and
 * exits (reaped); continued, it finds no process behind the connection:
 * no pidfd (ESRCH: "the client is gone"), or one that says it exited.
 */
static void test_client_gone_first(void)
{
	int status = 0, hstatus = 0;
	struct stat st;
	char *out;
	pid_t h, c;

	watchdog("a client gone before the accept");
	h = spawn_handler(NULL);
	if (!ok(h > 0 && wait_socket(EXIT_WAIT_MS, &st), "gone first: handler listens"))
		goto kill;
	kill(h, SIGSTOP);
	c = fork();
	if (c == 0) {
		int uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE), sock;
		uint8_t *m = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char json[256];
		int n;

		if (uffd < 0 || m == MAP_FAILED || uffd_register(uffd, m, 16 * PAGE))
			_exit(3);
		sock = connect_handler(2000);
		n = snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%lu,\"size\":%lu,"
			     "\"offset\":0,\"page_size\":4096}]", (unsigned long)(uintptr_t)m,
			     16 * PAGE);
		_exit(sock < 0 || send_msg(sock, json, (size_t)n, &uffd, 1) ? 4 : 0);
	}
	ok(c > 0 && !wait_exit(c, EXIT_WAIT_MS, &status) && WIFEXITED(status) &&
	   WEXITSTATUS(status) == 0, "gone first: a client connected, sent its handshake and "
	   "exited while the handler was stopped");
	kill(h, SIGCONT);
	out = NULL;
	if (ok(!wait_exit(h, EXIT_WAIT_MS, &hstatus) && WIFEXITED(hstatus) &&
	       WEXITSTATUS(hstatus) == 0,
	       "gone first: continued, the handler exits 0 (status 0x%x)", hstatus)) {
		out = read_text(out_path);
		tap_diag("%s", out && strstr(out, "the client is gone") ? "no pidfd: ESRCH"
			 : "a pidfd of the exited client");
	}
	free(out);
	return;
kill:
	if (h > 0) {
		kill(h, SIGKILL);
		wait_exit(h, EXIT_WAIT_MS, &hstatus);
	}
}

/* --- no /proc (a jail): the userfaultfd is told by a UFFDIO_WAKE probe --- */
static int client_child(void);

static void test_no_proc(void)
{
	const struct spawn np = { .no_proc = true };
	const char *extra[] = { "--stats", NULL };
	int status = 0, hstatus = 0;
	char *out;
	pid_t h, c;

	watchdog("no /proc");
	if (no_proc_skip) {
		tap_skip("no /proc: a client served", "%s", no_proc_skip);
		return;
	}
	h = spawn_handler_with(extra, &np);
	if (h <= 0)
		return;
	for (uint64_t end = now_ms() + EXIT_WAIT_MS; now_ms() < end; sleep_ms(5)) {
		struct stat st;

		if (waitpid(h, &hstatus, WNOHANG) == h) {
			handler_pid = 0;
			if (WIFEXITED(hstatus) && WEXITSTATUS(hstatus) == NO_PROC_EXIT)
				tap_skip("no /proc: a client served", "cannot hide /proc here (not root?)");
			else
				ok(false, "no /proc: the handler exited before listening (0x%x)", hstatus);
			return;
		}
		if (!stat(sock_path, &st) && S_ISSOCK(st.st_mode))
			break;
	}
	c = fork();
	if (c == 0)
		_exit(client_child());
	wait_exit(c, EXIT_WAIT_MS, &status);
	wait_exit(h, EXIT_WAIT_MS, &hstatus);
	out = read_text(out_path);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && WIFEXITED(hstatus) &&
	   WEXITSTATUS(hstatus) == 0 && out && strstr(out, "copied=16 "),
	   "no /proc: the userfaultfd accepted by its UFFDIO_WAKE probe, 16 pages served "
	   "(status 0x%x, 0x%x)", status, hstatus);
	free(out);
}

/* --- (5) bad handshakes --- */

enum attach { NO_FD, UFFD, NOT_UFFD };

struct bad_case {
	const char *name;
	const char *json;	/* @: a page-aligned address; NULL: send nothing */
	enum attach attach;
	const char *expect;	/* in the one line on stderr */
	bool hang_up;		/* close the connection after sending */
	bool flood;		/* 70000 bytes of an unfinished array */
	bool spare;		/* a second descriptor attached (/dev/null) */
	bool no_proc;		/* the handler without /proc */
};

static void run_bad_case(const struct bad_case *bc)
{
	const char *extra[] = { "--timeout-ms", bc->json || bc->flood ? "5000" : "2000", "--stats",
				NULL };
	const struct spawn sp = { .no_proc = bc->no_proc };
	int uffd = -1, devnull = -1, sock, status = 0, fds[2], nfds, r;
	bool connected;
	unsigned long base = 0x7f0000000000UL;
	char json[1024], *err;
	size_t len = 0;
	pid_t pid;

	watchdog(bc->name);
	if (bc->no_proc && no_proc_skip) {
		tap_skip(bc->name, "%s", no_proc_skip);
		return;
	}
	for (const char *t = bc->json; t && *t && len + 24 < sizeof(json); t++) {
		if (*t == '@')
			len += (size_t)snprintf(json + len, sizeof(json) - len, "%lu", base);
		else
			json[len++] = *t;
	}
	json[len] = '\0';
	pid = spawn_handler_with(extra, &sp);
	if (pid <= 0) {
		ok(false, "refused: %s: handler started", bc->name);
		return;
	}
	sock = connect_handler(bc->no_proc ? 2000 : 10000);
	connected = sock >= 0;
	if (bc->attach == UFFD)
		uffd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE);
	else if (bc->attach == NOT_UFFD)
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (bc->spare && devnull < 0)
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	nfds = 0;
	if (uffd >= 0)
		fds[nfds++] = uffd;
	if (devnull >= 0)
		fds[nfds++] = devnull;
	if (sock >= 0 && bc->flood) {
		char *big = malloc(70000);

		if (big) {
			memset(big, ' ', 70000);
			big[0] = '[';
			r = send_msg(sock, big, 70000, &uffd, 1);
			(void)r;	/* the handler may stop reading first */
			free(big);
		}
	} else if (sock >= 0 && bc->json) {
		r = send_msg(sock, json, len, fds, nfds);
		(void)r;
	}
	if (sock >= 0 && bc->hang_up) {
		close(sock);
		sock = -1;
	}
	r = wait_exit(pid, EXIT_WAIT_MS, &status);
	if (bc->no_proc && !r && WIFEXITED(status) && WEXITSTATUS(status) == NO_PROC_EXIT) {
		tap_skip(bc->name, "cannot hide /proc here (not root?)");
		goto out;
	}
	err = read_text(err_path);
	if (err && *err && err[strlen(err) - 1] == '\n')
		err[strlen(err) - 1] = '\0';
	ok(connected && !r && WIFEXITED(status) &&
	   (WEXITSTATUS(status) == 1 || WEXITSTATUS(status) == 2) && err &&
	   !strncmp(err, "vmras serve-snapshot: ", 22) && !strchr(err, '\n') &&
	   strstr(err, bc->expect),
	   "refused: %s: exit %d, one line: %s", bc->name,
	   WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), err ? err : "(none)");
	free(err);
out:
	if (sock >= 0)
		close(sock);
	if (uffd >= 0)
		close(uffd);
	if (devnull >= 0)
		close(devnull);
}

static void test_bad_handshakes(void)
{
	static const struct bad_case cases[] = {
		{ "malformed JSON",
		  "[{\"base_host_virt_addr\": @ \"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		  UFFD, "bad message: byte" },
		{ "a region outside the file",
		  "[{\"base_host_virt_addr\": @, \"size\": 8192, \"offset\": 14675968, "
		  "\"page_size\": 4096}]", UFFD, "outside the memory file" },
		{ "a misaligned address",
		  "[{\"base_host_virt_addr\": 139637976727808, \"size\": 4096, \"offset\": 0, "
		  "\"page_size\": 4096}]",
		  UFFD, "not aligned" },
		{ "no fd attached",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		  NO_FD, "no userfaultfd attached" },
		{ "overlapping regions",
		  "[{\"base_host_virt_addr\": @, \"size\": 65536, \"offset\": 0, \"page_size\": 4096},"
		  " {\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		  UFFD, "overlap" },
		{ "page_size 12345",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 12345}]",
		  UFFD, "page size 12345 is neither" },
		{ "page_size and page_size_kib disagreeing",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 4096, "
		  "\"page_size_kib\": 2097152}]", UFFD, "disagree" },
		{ "page_size_kib 4 (it is bytes)",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size_kib\": 4}]",
		  UFFD, "page size 4 is neither" },
		{ "a descriptor that is not a userfaultfd",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		  NOT_UFFD, "not a userfaultfd" },
		{ "the client hanging up mid-message", "[{\"base_host_virt_addr\": @, \"si", UFFD,
		  "closed the connection after", true },
		{ "no handshake within --timeout-ms", NULL, NO_FD, "timed out" },
		{ "more than 64 KiB without a complete array", NULL, UFFD,
		  "no complete JSON array in the first 65536 bytes", false, true },
		{ "a region outside the file, with a spare descriptor (one line, no warning)",
		  "[{\"base_host_virt_addr\": @, \"size\": 8192, \"offset\": 14675968, "
		  "\"page_size\": 4096}]", UFFD, "outside the memory file", false, false, true },
		{ "a descriptor that is not a userfaultfd, without /proc (UFFDIO_WAKE probe)",
		  "[{\"base_host_virt_addr\": @, \"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		  NOT_UFFD, "not a userfaultfd (no /proc here; UFFDIO_WAKE: ", false, false, false,
		  true },
	};
	bool socket_left = false;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run_bad_case(&cases[i]);
		socket_left |= !access(sock_path, F_OK);
	}
	ok(!socket_left, "refused: every refusing handler removed its socket");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	const char *tmp = getenv("TMPDIR");

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-vmras\n", argv[0]);
		return 2;
	}
	vmras = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/vmras-ss-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		printf("Bail out! mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/uffd.sock", dir);
	snprintf(mem_path, sizeof(mem_path), "%s/memory", dir);
	snprintf(poison_path, sizeof(poison_path), "%s/poison", dir);
	snprintf(out_path, sizeof(out_path), "%s/out", dir);
	snprintf(err_path, sizeof(err_path), "%s/err", dir);
	if (access(vmras, X_OK)) {
		printf("Bail out! %s: %s\n", vmras, strerror(errno));
		return 1;
	}
	{
		int fd = test_uffd_open(UFFD_FEATURE_EVENT_REMOVE);

		if (fd < 0) {
			tap_skip("serve-snapshot", "no userfaultfd here (%s)", strerror(-fd));
			rmdir(dir);
			return tap_done();
		}
		close(fd);
	}
	if (!is_int(make_memory_file(), 0, "a %lu MiB memory file with a pattern a page",
		    FILE_SIZE >> 20))
		return tap_done();

	test_main_run();
	test_remove_race();
	test_client_exit();
	test_client_gone_first();
	test_no_proc();
	test_poison_refused();
	test_misdeclared();
	test_second_handler();
	test_socket_perms();
	test_signals_and_waiting();
	test_bad_handshakes();
	alarm(0);

	munmap((void *)file, FILE_SIZE);
	unlink(mem_path);
	unlink(poison_path);
	unlink(out_path);
	unlink(err_path);
	unlink(sock_path);
	{
		char lock[160];

		snprintf(lock, sizeof(lock), "%s.lock", sock_path);
		unlink(lock);
	}
	rmdir(dir);
	return tap_done();
}
