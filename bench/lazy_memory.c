// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Lazy memory (issue 11), each figure against a baseline measured in the
 * same run:
 *   - fault service latency, p50 and p99, of a page served from a
 *     snapshot file (libvmras's router + the VMM's file source: pread,
 *     CRC-32C check, UFFDIO_COPY) against a bare userfaultfd round trip
 *     (fault, UFFDIO_COPY of a page already in memory, wake); goal <= 1.25;
 *   - prefetch bandwidth (the whole file into guest RAM in the background,
 *     no faults) against memcpy of the same size; goal >= 0.5;
 *   - fault service latency from a migration peer over loopback TCP
 *     (post-copy's page request and pages section, vmm/postcopy_proto.c,
 *     a source thread that answers, a receiver thread that supplies)
 *     against a bare socket round trip (the same request and answer on
 *     the same connection) plus the bare userfaultfd round trip; goal <= 1.5;
 *   - pages per second per vCPU: two threads fault their halves in.
 * The file is in the page cache (it was just written), as on a host that
 * restores what it saved; a cold cache measures the disk instead.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kabi/userfaultfd.h"
#include "lazy_image.h"
#include "postcopy_proto.h"
#include "util/crc32c.h"
#include "vmras/lazy.h"
#include "vmras/vmras.h"
#include "vmras/x86_mce.h"

#define PAGE 4096ULL
#define FAULT_MEM (64ULL << 20)
#define PREFETCH_MEM (256ULL << 20)
#define NFAULTS 4000
#define ROUNDS 8
#define GPA 0ULL	/* the file source maps page p of the image to GPA p * 4096 */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, unsigned int p)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(n - 1) * p / 100];
}

/* Distinct pages in a scattered order, the same every run: a vCPU does not fault in sequence. */
static void page_order(uint64_t *order, uint64_t npages, size_t n)
{
	for (size_t i = 0; i < n; i++)
		order[i] = (i * 7919) % npages; /* 7919 is prime, npages a power of two */
}

static void touch_pages(const volatile char *mem, const uint64_t *order, size_t n,
			uint64_t *lat)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		(void)mem[order[i] * PAGE];
		lat[i] = now_ns() - t0;
	}
}

/* This thread on cpu, every other thread of the process on other_cpu (-1: anywhere). */
static void pin_threads(int cpu, int other_cpu)
{
	pid_t self = (pid_t)syscall(SYS_gettid);
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	cpu_set_t set;

	while (d && (de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);
		int want = tid == self ? cpu : other_cpu;

		if (tid <= 0)
			continue;
		CPU_ZERO(&set);
		if (want < 0)
			for (int c = 0; c < CPU_SETSIZE; c++)
				CPU_SET(c, &set);
		else
			CPU_SET(want, &set);
		(void)sched_setaffinity(tid, sizeof(set), &set);
	}
	if (d)
		closedir(d);
}

/* ---- the baseline: a bare userfaultfd round trip ------------------------ */

struct bare {
	int uffd;
	char *src;
	volatile bool stop;
};

static void *bare_handler(void *arg)
{
	struct bare *b = arg;
	struct uffd_msg msg;

	while (!b->stop) {
		struct pollfd p = { .fd = b->uffd, .events = POLLIN };

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = { .dst = msg.arg.pagefault.address & ~(PAGE - 1),
					 .src = (uintptr_t)b->src, .len = PAGE };

		if (ioctl(b->uffd, UFFDIO_COPY, &c) && errno != EEXIST)
			fprintf(stderr, "lazy_memory: UFFDIO_COPY: %s\n", strerror(errno));
	}
	return NULL;
}

static int bare_setup(struct bare *b, char **mem, pthread_t *t)
{
	struct uffdio_api api = { .api = UFFD_API };

	b->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	*mem = mmap(NULL, FAULT_MEM, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	b->src = malloc(PAGE);
	if (b->uffd < 0 || *mem == MAP_FAILED || !b->src || ioctl(b->uffd, UFFDIO_API, &api))
		return -errno;
	memset(b->src, 0x5a, PAGE);
	struct uffdio_register reg = { .range = { (uintptr_t)*mem, FAULT_MEM },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(b->uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	return -pthread_create(t, NULL, bare_handler, b);
}

static void bare_teardown(struct bare *b, char *mem, pthread_t t)
{
	b->stop = true;
	pthread_join(t, NULL);
	munmap(mem, FAULT_MEM);
	close(b->uffd);
	free(b->src);
}

/* ---- libvmras with the VMM's snapshot-file source ----------------------- */

struct lazy_vm {
	struct vmras *ras;
	struct lazy_image *li;
	char *ram;
	uint64_t size;
};

static void noop_vcpus(void *o)
{
	(void)o;
}

static void noop_blocked(void *o, unsigned int vcpu, bool blocked)
{
	(void)o;
	(void)vcpu;
	(void)blocked; /* no vCPUs here */
}

/*
 * A snapshot image of size bytes (every page data), in the page cache:
 * the CRCs first (little-endian), the pages from DATA_OFF on.
 */
#define DATA_OFF(size) ((((size) / PAGE * 4) + PAGE - 1) & ~(PAGE - 1))

static int write_image(const char *path, uint64_t size, uint8_t **kinds)
{
	uint64_t n = size / PAGE;
	char *page = malloc(PAGE);
	uint32_t *crcs = malloc(n * sizeof(*crcs));
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	*kinds = calloc(n, 1);
	if (fd < 0 || !page || !*kinds || !crcs)
		return -ENOMEM;
	for (uint64_t p = 0; p < n; p++) {
		for (unsigned int k = 0; k < PAGE; k += 8)
			*(uint64_t *)(page + k) = p * 0x9e3779b97f4a7c15ULL + k;
		crcs[p] = vr_crc32c(0, page, PAGE); /* this host is little-endian, as the file */
		if (pwrite(fd, page, PAGE, (off_t)(DATA_OFF(size) + p * PAGE)) != (ssize_t)PAGE)
			return -EIO;
	}
	if (pwrite(fd, crcs, n * 4, 0) != (ssize_t)(n * 4))
		return -EIO;
	free(crcs);
	free(page);
	return fd;
}

static int lazy_vm_new(struct lazy_vm *lv, uint64_t size, int fd, uint64_t file_size,
		       const uint8_t *kinds, bool prefetch);
static void lazy_vm_free(struct lazy_vm *lv);

/* ---- a migration peer over loopback TCP ---------------------------------- */

#define REPLY_BYTES (PC_PAGES_HEAD + 1 + PAGE + 4)	/* head, kind, page, crc */

struct peer {
	int src_fd, dst_fd;	/* the source's end, the destination's end */
	pthread_t source, receiver;
	bool receiving;
	pthread_mutex_t send_lock;
	struct vmras *ras;
	char page[PAGE];
};

static int io_all(int fd, void *buf, size_t n, bool out)
{
	for (size_t done = 0; done < n;) {
		ssize_t k = out ? send(fd, (char *)buf + done, n - done, MSG_NOSIGNAL)
				: recv(fd, (char *)buf + done, n - done, 0);

		if (k <= 0 && !(k < 0 && errno == EINTR))
			return -1;
		done += k > 0 ? (size_t)k : 0;
	}
	return 0;
}

/* The source: each request answered with its pages, as a pages section would carry them. */
static void *peer_source(void *arg)
{
	struct peer *pr = arg;
	struct pc_guest g = { FAULT_MEM, PAGE };
	unsigned char req[PC_REQ_BYTES], reply[REPLY_BYTES];
	char why[160];

	while (!io_all(pr->src_fd, req, sizeof(req), false)) {
		uint64_t gpa, len;
		uint32_t flags, crc;

		if (pc_req_parse(req, sizeof(req), &g, &gpa, &len, &flags, why, sizeof(why)))
			break;
		for (uint64_t off = 0; off < len; off += PAGE) {
			pc_pages_head(reply, gpa + off, 1);
			reply[PC_PAGES_HEAD] = PC_DATA;
			memcpy(reply + PC_PAGES_HEAD + 1, pr->page, PAGE);
			crc = vr_crc32c(0, reply, PC_PAGES_HEAD + 1 + PAGE);
			memcpy(reply + PC_PAGES_HEAD + 1 + PAGE, &crc, 4);
			if (io_all(pr->src_fd, reply, sizeof(reply), true))
				return NULL;
		}
	}
	return NULL;
}

/* The destination's receiver: each answer checked and supplied. */
static void *peer_receiver(void *arg)
{
	struct peer *pr = arg;
	struct pc_guest g = { FAULT_MEM, PAGE };
	unsigned char reply[REPLY_BYTES];
	struct pc_pages pg;
	char why[160];

	while (!io_all(pr->dst_fd, reply, sizeof(reply), false)) {
		uint32_t crc;

		memcpy(&crc, reply + PC_PAGES_HEAD + 1 + PAGE, 4);
		if (crc != vr_crc32c(0, reply, PC_PAGES_HEAD + 1 + PAGE) ||
		    pc_pages_parse(reply, PC_PAGES_HEAD + 1 + PAGE, &g, &pg, why, sizeof(why)) ||
		    vmras_lazy_supply(pr->ras, pg.gpa, PAGE, pg.data, pg.kinds)) {
			fprintf(stderr, "lazy_memory: the peer's answer was refused\n");
			break;
		}
	}
	return NULL;
}

/* lazy memory's fetch: a page request on the connection. */
static int peer_fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	struct peer *pr = opaque;
	unsigned char req[PC_REQ_BYTES];
	int r;

	pc_req_encode(req, gpa, len, urgent ? PC_REQ_URGENT : 0);
	pthread_mutex_lock(&pr->send_lock);
	r = io_all(pr->dst_fd, req, sizeof(req), true) ? -EIO : 0;
	pthread_mutex_unlock(&pr->send_lock);
	return r;
}

/* A loopback TCP connection (no Nagle: a request is one small write) and its source. */
static int peer_open(struct peer *pr)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(pr->page, 0x3c, PAGE);
	pthread_mutex_init(&pr->send_lock, NULL);
	pr->dst_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || pr->dst_fd < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen) ||
	    connect(pr->dst_fd, (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	pr->src_fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	close(l);
	if (pr->src_fd < 0)
		return -errno;
	setsockopt(pr->src_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(pr->dst_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return -pthread_create(&pr->source, NULL, peer_source, pr);
}

static void peer_close(struct peer *pr)
{
	shutdown(pr->src_fd, SHUT_RDWR);
	shutdown(pr->dst_fd, SHUT_RDWR);
	pthread_join(pr->source, NULL);
	if (pr->receiving)
		pthread_join(pr->receiver, NULL);
	close(pr->src_fd);
	close(pr->dst_fd);
	pthread_mutex_destroy(&pr->send_lock);
}

/*
 * Faults served by the peer against a bare socket round trip (the same
 * request and answer, on the same connection) plus the bare userfaultfd
 * round trip measured before (bare50, bare99: handler on another CPU).
 */
static int peer_row(const uint64_t *order, uint64_t *lat, uint64_t *rt, uint64_t bare50,
		    uint64_t bare99)
{
	struct vmras_lazy_source src = { .fetch = peer_fetch, .prefetch = false };
	unsigned char req[PC_REQ_BYTES], reply[REPLY_BYTES];
	size_t n = NFAULTS / 2;
	struct peer pr = { 0 };
	struct lazy_vm lv = { 0 };
	uint64_t s50, s99, l50, l99;
	int r = peer_open(&pr);

	if (r) {
		printf("fault from a migration peer: skipped: loopback TCP: %s\n", strerror(-r));
		return 0;
	}
	pin_threads(0, 1);
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		pc_req_encode(req, order[i] * PAGE, PAGE, PC_REQ_URGENT);
		if (io_all(pr.dst_fd, req, sizeof(req), true) ||
		    io_all(pr.dst_fd, reply, sizeof(reply), false))
			return 1;
		rt[i] = now_ns() - t0;
	}
	/* The same guest as the file rows, but lazy from the peer. */
	if (lazy_vm_new(&lv, FAULT_MEM, -1, 0, NULL, false) ||
	    vmras_lazy_begin(lv.ras, &src, &pr))
		return 1;
	pr.ras = lv.ras;
	if (pthread_create(&pr.receiver, NULL, peer_receiver, &pr))
		return 1;
	pr.receiving = true;
	pin_threads(0, 1);
	touch_pages(lv.ram, order, n, lat);
	if (memcmp((const char *)lv.ram + order[0] * PAGE, pr.page, 64)) {
		fprintf(stderr, "lazy_memory: a page from the peer does not hold its data\n");
		return 1;
	}
	pin_threads(-1, -1);
	peer_close(&pr);
	lazy_vm_free(&lv);
	s50 = pct(rt, n, 50);
	s99 = pct(rt, n, 99);
	l50 = pct(lat, n, 50);
	l99 = pct(lat, n, 99);
	printf("fault from a migration peer over loopback TCP, handler on another CPU: p50 %.1f "
	       "us, p99 %.1f us; bare socket round trip p50 %.1f us, p99 %.1f us, plus the bare "
	       "userfaultfd round trip: p50 %.1f us, p99 %.1f us; ratio p50 %.2f, p99 %.2f "
	       "(goal <= 1.5)\n", l50 / 1e3, l99 / 1e3, s50 / 1e3, s99 / 1e3,
	       (s50 + bare50) / 1e3, (s99 + bare99) / 1e3, (double)l50 / (double)(s50 + bare50),
	       (double)l99 / (double)(s99 + bare99));
	return 0;
}

static int lazy_vm_new(struct lazy_vm *lv, uint64_t size, int fd, uint64_t file_size,
		       const uint8_t *kinds, bool prefetch)
{
	struct vmras_config cfg = { .ops = { .pause_vcpus = noop_vcpus,
					     .resume_vcpus = noop_vcpus,
					     .vcpu_blocked = noop_blocked } };
	struct vmras_x86_config x86 = { .mcg_cap = 10 };
	struct vmm_error e = { "" };
	struct vmras_region r = { .gpa = GPA, .size = size, .backing = VMRAS_BACKING_ANON,
				  .page_size = PAGE, .fd = -1 };

	lv->size = size;
	lv->ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (lv->ram == MAP_FAILED)
		return -errno;
	r.hva = lv->ram;
	vmras_policy_default(&cfg.policy);
	int err = vmras_new(&cfg, &lv->ras);

	err = err ?: vmras_add_region(lv->ras, &r);
	err = err ?: vmras_x86_setup(lv->ras, &x86);
	err = err ?: vmras_start(lv->ras);
	if (err) {
		fprintf(stderr, "lazy_memory: libvmras setup: %s\n", strerror(-err));
		return err;
	}
	/* fd < 0: the caller gives the source (the peer). */
	if (fd >= 0 && lazy_image_begin(lv->ras, fd, DATA_OFF(file_size), 0, size / PAGE, kinds,
					prefetch, &lv->li, &e)) {
		fprintf(stderr, "lazy_memory: %s\n", e.msg);
		return -EIO;
	}
	return 0;
}

static void lazy_vm_free(struct lazy_vm *lv)
{
	vmras_free(lv->ras);
	lazy_image_free(lv->li);
	munmap(lv->ram, lv->size);
}

struct toucher {
	const volatile char *mem;
	uint64_t npages;
	uint64_t ns;
};

static void *touch_half(void *arg)
{
	struct toucher *t = arg;
	uint64_t t0 = now_ns();

	for (uint64_t p = 0; p < t->npages; p++)
		(void)t->mem[p * PAGE];
	t->ns = now_ns() - t0;
	return NULL;
}

int main(void)
{
	char path[] = "/tmp/vmras-lazy-bench-XXXXXX";
	uint64_t *order = malloc(NFAULTS * sizeof(*order));
	uint64_t *bare = malloc(NFAULTS * sizeof(*bare)), *lazy = malloc(NFAULTS * sizeof(*lazy));
	/* (bare and lazy rounds alternate below) */
	uint64_t copy_ns = UINT64_MAX, pre_ns = UINT64_MAX, b50;
	uint64_t fresh_ns = UINT64_MAX;
	struct toucher th[2];
	pthread_t tid[2];
	struct lazy_vm lv;
	uint8_t *kinds;
	int fd, r;

	if (!mkdtemp(path) || !order || !bare || !lazy)
		return 1;
	strcat(path, "/image");
	page_order(order, FAULT_MEM / PAGE, NFAULTS);

	/*
	 * 1. Fault latency: bare and lazy in alternating rounds, so that the
	 * host's noise (a busy neighbour, where the threads land) hits both.
	 */
	struct bare bctx = { 0 };
	char *bmem = NULL;
	pthread_t bthread;

	r = bare_setup(&bctx, &bmem, &bthread);
	if (r) {
		printf("lazy_memory: skipped: no userfaultfd here (%s)\n", strerror(-r));
		return 0;
	}
	fd = write_image(path, PREFETCH_MEM, &kinds);
	if (fd < 0 || lazy_vm_new(&lv, FAULT_MEM, fd, PREFETCH_MEM, kinds, false)) {
		fprintf(stderr, "lazy_memory: setup failed\n");
		return 1;
	}
	/*
	 * Where the threads run decides the round trip here (a wake-up across
	 * CPUs of this nested host costs about 60 us): the faulting thread on
	 * CPU 0 and every other thread (the bare handler, libvmras's router)
	 * on CPU 1, the same for both. Then all on CPU 0.
	 */
	for (int same = 0; same < 2; same++) {
		uint64_t *b = same ? bare + NFAULTS / 2 : bare, *l = same ? lazy + NFAULTS / 2 : lazy;

		pin_threads(0, same ? 0 : 1);
		for (size_t k = 0; k < NFAULTS / 2; k += NFAULTS / 2 / ROUNDS) {
			touch_pages(bmem, order + same * NFAULTS / 2 + k, NFAULTS / 2 / ROUNDS, b + k);
			touch_pages(lv.ram, order + same * NFAULTS / 2 + k, NFAULTS / 2 / ROUNDS, l + k);
		}
		printf("fault from a snapshot file, %s: p50 %.1f us, p99 %.1f us; bare userfaultfd "
		       "round trip: p50 %.1f us, p99 %.1f us; ratio p50 %.2f, p99 %.2f (goal <= 1.25)\n",
		       same ? "handler on the faulting CPU" : "handler on another CPU",
		       pct(l, NFAULTS / 2, 50) / 1e3, pct(l, NFAULTS / 2, 99) / 1e3,
		       pct(b, NFAULTS / 2, 50) / 1e3, pct(b, NFAULTS / 2, 99) / 1e3,
		       (double)pct(l, NFAULTS / 2, 50) / (double)pct(b, NFAULTS / 2, 50),
		       (double)pct(l, NFAULTS / 2, 99) / (double)pct(b, NFAULTS / 2, 99));
	}
	pin_threads(-1, -1);
	bare_teardown(&bctx, bmem, bthread);
	lazy_vm_free(&lv);
	if (peer_row(order, lazy, lazy + NFAULTS / 2, pct(bare, NFAULTS / 2, 50),
		     pct(bare, NFAULTS / 2, 99)))
		return 1;

	/*
	 * 2. Prefetch bandwidth against memcpy, best of 3: memcpy into memory
	 * already touched (no allocation), and into fresh memory (the kernel
	 * allocates each page on its first write, as UFFDIO_COPY must).
	 */
	for (int rep = 0; rep < 3; rep++) {
		char *a = mmap(NULL, PREFETCH_MEM, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *b = mmap(NULL, PREFETCH_MEM, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t t0;

		if (a == MAP_FAILED || b == MAP_FAILED)
			return 1;
		memset(a, 1, PREFETCH_MEM);
		t0 = now_ns();
		memcpy(b, a, PREFETCH_MEM);
		__asm__ volatile("" : : "r"(b) : "memory");
		if (now_ns() - t0 < fresh_ns)
			fresh_ns = now_ns() - t0;
		t0 = now_ns();
		memcpy(b, a, PREFETCH_MEM);
		__asm__ volatile("" : : "r"(b) : "memory");
		if (now_ns() - t0 < copy_ns)
			copy_ns = now_ns() - t0;
		munmap(a, PREFETCH_MEM);
		munmap(b, PREFETCH_MEM);
		t0 = now_ns();
		if (lazy_vm_new(&lv, PREFETCH_MEM, fd, PREFETCH_MEM, kinds, true) ||
		    vmras_lazy_wait(lv.ras, 120000))
			return 1;
		if (now_ns() - t0 < pre_ns)
			pre_ns = now_ns() - t0;
		if (memcmp((const char *)lv.ram + PREFETCH_MEM - PAGE, (const char[8]){ 0 }, 8) == 0) {
			fprintf(stderr, "lazy_memory: the prefetched memory is zeros\n");
			return 1;
		}
		lazy_vm_free(&lv);
	}
	printf("prefetch: %.0f MB/s; memcpy %.0f MB/s into touched memory, %.0f MB/s into fresh "
	       "memory; ratio %.2f and %.2f (goal >= 0.5)\n",
	       PREFETCH_MEM / (pre_ns / 1e3), PREFETCH_MEM / (copy_ns / 1e3),
	       PREFETCH_MEM / (fresh_ns / 1e3), (double)copy_ns / (double)pre_ns,
	       (double)fresh_ns / (double)pre_ns);

	/* 3. Pages per second per vCPU: two threads fault their halves in, no prefetch. */
	if (lazy_vm_new(&lv, FAULT_MEM, fd, PREFETCH_MEM, kinds, false))
		return 1;
	for (int i = 0; i < 2; i++) {
		th[i] = (struct toucher){ .mem = lv.ram + i * FAULT_MEM / 2,
					  .npages = FAULT_MEM / 2 / PAGE };
		pthread_create(&tid[i], NULL, touch_half, &th[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(tid[i], NULL);
	lazy_vm_free(&lv);
	b50 = pct(bare + NFAULTS / 2, NFAULTS / 2, 50);
	printf("pages per second per vCPU (2 faulting in order, no prefetch): %.0f and %.0f; "
	       "one bare round trip at p50 would be %.0f\n",
	       th[0].npages / (th[0].ns / 1e9), th[1].npages / (th[1].ns / 1e9), 1e9 / b50);
	close(fd);
	unlink(path);
	*strrchr(path, '/') = 0;
	rmdir(path);
	return 0;
}
