// SPDX-License-Identifier: GPL-2.0-or-later
/* A snapshot's RAM image as libvmras's lazy page source (see lazy_image.h). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lazy_image.h"
#include "util/crc32c.h"
#include "vmras/lazy.h"
#include "vmras/memmap.h"
#include "vmras/vmras.h"

#define PAGE 4096ULL
#define MAX_STEP_PAGES 512	/* kinds and CRCs of a fetch on the stack up to 2 MiB */

#define CRC_BLOCK 1024		/* CRCs read from the file 4 KiB (4 MiB of guest) at a time */

struct lazy_image {
	struct vmras *ras;
	int fd;
	uint64_t data_off, crc_off, npages;
	uint8_t *kinds;
	atomic_uint_fast64_t bad;
	struct vmras_lazy_source src;
	/*
	 * The CRCs, read a block at a time the first time a page of it is
	 * asked for (calloc'd: untouched blocks cost nothing); crc_loaded[b]
	 * is set (release) once block b is in, under crc_lock.
	 */
	uint32_t *crc;
	atomic_uchar *crc_loaded;
	pthread_mutex_t crc_lock;
};


/* Read len bytes at off whole (short reads continued): 0 or -errno (-EIO at EOF). */
static int read_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t got = pread(fd, p, len, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		p += got;
		off += (uint64_t)got;
		len -= (uint64_t)got;
	}
	return 0;
}

/* The CRCs of pages [p, p + n) into out: 0, or -errno if they do not read back. */
static int crcs_of(struct lazy_image *li, uint64_t p, uint64_t n, uint32_t *out)
{
	for (uint64_t b = p / CRC_BLOCK; b <= (p + n - 1) / CRC_BLOCK; b++) {
		uint64_t first = b * CRC_BLOCK, count = li->npages - first < CRC_BLOCK
								? li->npages - first : CRC_BLOCK;
		unsigned char raw[CRC_BLOCK * 4];
		int err = 0;

		if (atomic_load_explicit(&li->crc_loaded[b], memory_order_acquire))
			continue;
		pthread_mutex_lock(&li->crc_lock);
		if (!atomic_load_explicit(&li->crc_loaded[b], memory_order_relaxed)) {
			err = read_full(li->fd, raw, count * 4, li->crc_off + first * 4);
			for (uint64_t k = 0; !err && k < count; k++)
				li->crc[first + k] = (uint32_t)raw[k * 4] | (uint32_t)raw[k * 4 + 1] << 8 |
						     (uint32_t)raw[k * 4 + 2] << 16 |
						     (uint32_t)raw[k * 4 + 3] << 24;
			if (!err)
				atomic_store_explicit(&li->crc_loaded[b], 1, memory_order_release);
		}
		pthread_mutex_unlock(&li->crc_lock);
		if (err)
			return err;
	}
	memcpy(out, li->crc + p, n * sizeof(*out));
	return 0;
}

static void lost(struct lazy_image *li, uint64_t page, const char *why)
{
	if (atomic_fetch_add(&li->bad, 1) < 16)
		fprintf(stderr, "vmras run: snapshot page 0x%" PRIx64 " %s: the guest gets it poisoned\n",
			(uint64_t)(page * PAGE), why);
}

/*
 * Pages [p, p + n) into buf, kinds[] saying what each is: a data page that
 * does not read back, or does not match its CRC, is poisoned (and said).
 */
static void read_pages(struct lazy_image *li, uint64_t p, uint64_t n, unsigned char *buf,
		       uint8_t *kinds)
{
	uint32_t crcs[MAX_STEP_PAGES];
	uint64_t want = 0, k;
	int err = 0;

	memcpy(kinds, li->kinds + p, n);
	for (k = 0; k < n; k++)
		if (kinds[k] == VMRAS_PAGE_DATA)
			want = k + 1;
	if (!want)
		return;
	/* The CRCs stay in the file until needed: a restore does not read them all first. */
	err = crcs_of(li, p, want, crcs);
	/* One read for the span: zero and poisoned pages inside it are zeros in the file. */
	if (!err && read_full(li->fd, buf, want * PAGE, li->data_off + p * PAGE)) {
		/* Something in the span does not read: page by page, so only it is lost. */
		for (k = 0; k < want; k++)
			if (kinds[k] == VMRAS_PAGE_DATA &&
			    read_full(li->fd, buf + k * PAGE, PAGE, li->data_off + (p + k) * PAGE)) {
				kinds[k] = VMRAS_PAGE_POISONED;
				lost(li, p + k, "does not read back");
			}
	}
	for (k = 0; k < want; k++) {
		if (kinds[k] != VMRAS_PAGE_DATA)
			continue;
		if (err) {
			kinds[k] = VMRAS_PAGE_POISONED;
			lost(li, p + k, "has a checksum that does not read back");
		} else if (vr_crc32c(0, buf + k * PAGE, PAGE) != crcs[k]) {
			kinds[k] = VMRAS_PAGE_POISONED;
			lost(li, p + k, "fails its checksum");
		}
	}
}

/*
 * A buffer for a fetch of len bytes: each thread that fetches keeps one of
 * REUSE_MAX (a fresh mapping per call costs a page fault per page), freed
 * when the thread ends.
 */
#define REUSE_MAX (2ULL << 20)
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static int buf_key_err;

static void make_buf_key(void)
{
	buf_key_err = pthread_key_create(&buf_key, free);
}

static unsigned char *fetch_buf(uint64_t len)
{
	void *b;

	if (len <= REUSE_MAX && !pthread_once(&buf_once, make_buf_key) && !buf_key_err) {
		b = pthread_getspecific(buf_key);
		if (!b && !posix_memalign(&b, PAGE, REUSE_MAX) && pthread_setspecific(buf_key, b)) {
			free(b);
			b = NULL;
		}
		if (b)
			return b;
	}
	b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return b == MAP_FAILED ? NULL : b;
}

static void fetch_buf_put(unsigned char *b, uint64_t len)
{
	if (!buf_key_err && len <= REUSE_MAX && b == pthread_getspecific(buf_key))
		return;
	munmap(b, len);
}

static int fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	struct lazy_image *li = opaque;
	uint64_t p = gpa / PAGE, n = len / PAGE;
	uint8_t *kinds;
	unsigned char *buf;
	int err = -ENOMEM;

	(void)urgent;
	if (p >= li->npages || n > li->npages - p || !n)
		return -EINVAL;
	/* A 1 GiB page is read in pieces of the most a step may have. */
	if (n > MAX_STEP_PAGES) {
		kinds = malloc(n);
		buf = fetch_buf(len);
		if (kinds && buf) {
			for (uint64_t k = 0; k < n; k += MAX_STEP_PAGES)
				read_pages(li, p + k, n - k < MAX_STEP_PAGES ? n - k : MAX_STEP_PAGES,
					   buf + k * PAGE, kinds + k);
			err = vmras_lazy_supply(li->ras, gpa, len, buf, kinds);
		}
		free(kinds);
		if (buf)
			fetch_buf_put(buf, len);
		return err;
	}
	uint8_t step_kinds[MAX_STEP_PAGES];

	buf = fetch_buf(len);
	if (!buf)
		return -ENOMEM;
	read_pages(li, p, n, buf, step_kinds);
	err = vmras_lazy_supply(li->ras, gpa, len, buf, step_kinds);
	fetch_buf_put(buf, len);
	return err;
}

/* Page p of the image is guest RAM at p * 4096: one region at GPA 0, as the VMM lays it out. */
static bool fits_layout(struct vmras *ras, uint64_t npages)
{
	const struct vmras_memmap *m = vmras_get_memmap(ras);
	const struct vmras_region *r = vmras_memmap_count(m) == 1 ? vmras_memmap_region(m, 0)
								   : NULL;

	return r && r->gpa == 0 && r->size == npages * PAGE;
}

int lazy_image_begin(struct vmras *ras, int fd, uint64_t data_off, uint64_t crc_off,
		     uint64_t npages, const uint8_t *kinds, bool prefetch,
		     struct lazy_image **out, struct vmm_error *e)
{
	struct lazy_image *li = calloc(1, sizeof(*li));
	struct stat st;
	int r;

	if (!li)
		return vmm_fail(e, -ENOMEM, "allocate the lazy image");
	li->ras = ras;
	li->data_off = data_off;
	li->crc_off = crc_off;
	li->npages = npages;
	li->fd = dup(fd);
	li->kinds = malloc(npages);
	li->crc = calloc(npages, sizeof(*li->crc));
	li->crc_loaded = calloc((npages + CRC_BLOCK - 1) / CRC_BLOCK, sizeof(*li->crc_loaded));
	pthread_mutex_init(&li->crc_lock, NULL);
	if (li->fd < 0 || !li->kinds || !li->crc || !li->crc_loaded) {
		r = vmm_fail(e, li->fd < 0 ? -errno : -ENOMEM, "set up the lazy image");
		goto fail;
	}
	if (!fits_layout(ras, npages)) {
		r = vmm_failf(e, -EINVAL, "lazy restore: guest RAM is not one region at GPA 0 of the image's size");
		goto fail;
	}
	if (fstat(li->fd, &st) || (uint64_t)st.st_size < data_off + npages * PAGE ||
	    crc_off + npages * 4 > data_off) {
		r = vmm_failf(e, -EPROTO, "the snapshot file is shorter than its RAM image");
		goto fail;
	}
	memcpy(li->kinds, kinds, npages);
	li->src = (struct vmras_lazy_source){ .fetch = fetch, .prefetch = prefetch };
	r = vmras_lazy_begin(ras, &li->src, li);
	if (r) {
		vmm_fail(e, r, r == -EOPNOTSUPP ? "lazy restore (it needs anon, shmem or hugetlb RAM, not a file or guest_memfd, and a userfaultfd that takes KVM's faults)"
						: "lazy restore");
		goto fail;
	}
	*out = li;
	return 0;
fail:
	lazy_image_free(li);
	return r;
}

void lazy_image_free(struct lazy_image *li)
{
	if (!li)
		return;
	if (li->fd >= 0)
		close(li->fd);
	free(li->kinds);
	free(li->crc);
	free(li->crc_loaded);
	pthread_mutex_destroy(&li->crc_lock);
	free(li);
}

uint64_t lazy_image_bad_pages(const struct lazy_image *li)
{
	return li ? atomic_load(&li->bad) : 0;
}
