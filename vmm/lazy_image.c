// SPDX-License-Identifier: GPL-2.0-or-later
/* A snapshot's RAM image as libvmras's lazy page source (see lazy_image.h). */
#include <errno.h>
#include <inttypes.h>
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
#include "vmras/vmras.h"

#define PAGE 4096ULL

struct lazy_image {
	struct vmras *ras;
	int fd;
	uint64_t data_off, npages;
	uint8_t *kinds;
	uint32_t *crcs;
	atomic_uint_fast64_t bad;
	struct vmras_lazy_source src;
};

/* Read pages [p, p + n) into buf; kinds[] says what each is, bad ones poisoned. */
static void read_pages(struct lazy_image *li, uint64_t p, uint64_t n, unsigned char *buf,
		       uint8_t *kinds)
{
	uint64_t want = 0, k;
	ssize_t got = 0;

	memcpy(kinds, li->kinds + p, n);
	for (k = 0; k < n; k++)
		if (kinds[k] == VMRAS_PAGE_DATA)
			want = (k + 1) * PAGE;
	if (want) {
		/* One read for the span: zero and poisoned pages inside it are zeros in the file. */
		do
			got = pread(li->fd, buf, want, (off_t)(li->data_off + p * PAGE));
		while (got < 0 && errno == EINTR);
	}
	for (k = 0; k < n; k++) {
		if (kinds[k] != VMRAS_PAGE_DATA)
			continue;
		if (got < 0 || (uint64_t)got < (k + 1) * PAGE ||
		    vr_crc32c(0, buf + k * PAGE, PAGE) != li->crcs[p + k]) {
			kinds[k] = VMRAS_PAGE_POISONED;
			if (atomic_fetch_add(&li->bad, 1) < 16)
				fprintf(stderr, "vmras run: snapshot page 0x%" PRIx64 " %s: the guest gets it poisoned\n",
					(uint64_t)((p + k) * PAGE), got < 0 ? "does not read back"
								 : "fails its checksum");
		}
	}
}

/*
 * A buffer for a fetch of len bytes: each thread that fetches keeps one
 * up to REUSE_MAX (a fresh mapping per call costs a page fault per page).
 */
#define REUSE_MAX (2ULL << 20)
static __thread unsigned char *tls_buf;

static unsigned char *fetch_buf(uint64_t len)
{
	void *b;

	if (len > REUSE_MAX) {
		b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return b == MAP_FAILED ? NULL : b;
	}
	/* Kept for the thread's life: the library's few threads, 2 MiB each at most. */
	if (!tls_buf && posix_memalign(&b, PAGE, REUSE_MAX) == 0)
		tls_buf = b;
	return tls_buf;
}

static void fetch_buf_put(unsigned char *b, uint64_t len)
{
	if (len > REUSE_MAX)
		munmap(b, len);
}

static int fetch(void *opaque, uint64_t gpa, uint64_t len, bool urgent)
{
	struct lazy_image *li = opaque;
	uint64_t p = gpa / PAGE, n = len / PAGE;
	uint8_t stack_kinds[512], *kinds = stack_kinds;
	unsigned char *buf;
	int err;

	(void)urgent;
	if (p >= li->npages || n > li->npages - p || !n)
		return -EINVAL;
	buf = fetch_buf(len);
	if (n > sizeof(stack_kinds))
		kinds = malloc(n);
	if (!buf || !kinds) {
		if (buf)
			fetch_buf_put(buf, len);
		if (kinds != stack_kinds)
			free(kinds);
		return -ENOMEM;
	}
	read_pages(li, p, n, buf, kinds);
	err = vmras_lazy_supply(li->ras, gpa, len, buf, kinds);
	fetch_buf_put(buf, len);
	if (kinds != stack_kinds)
		free(kinds);
	return err;
}

int lazy_image_begin(struct vmras *ras, int fd, uint64_t data_off, uint64_t npages,
		     const uint8_t *kinds, const uint32_t *crcs, bool prefetch,
		     struct lazy_image **out, struct vmm_error *e)
{
	struct lazy_image *li = calloc(1, sizeof(*li));
	struct stat st;
	int r;

	if (!li)
		return vmm_fail(e, -ENOMEM, "allocate the lazy image");
	li->ras = ras;
	li->data_off = data_off;
	li->npages = npages;
	li->fd = dup(fd);
	li->kinds = malloc(npages);
	li->crcs = malloc(npages * sizeof(*crcs));
	if (li->fd < 0 || !li->kinds || !li->crcs) {
		r = vmm_fail(e, li->fd < 0 ? -errno : -ENOMEM, "set up the lazy image");
		goto fail;
	}
	if (fstat(li->fd, &st) || (uint64_t)st.st_size < data_off + npages * PAGE) {
		r = vmm_failf(e, -EPROTO, "the snapshot file is shorter than its RAM image");
		goto fail;
	}
	memcpy(li->kinds, kinds, npages);
	memcpy(li->crcs, crcs, npages * sizeof(*crcs));
	li->src = (struct vmras_lazy_source){ .fetch = fetch, .prefetch = prefetch };
	r = vmras_lazy_begin(ras, &li->src, li);
	if (r) {
		vmm_fail(e, r, r == -EOPNOTSUPP ? "lazy restore (it needs anon, shmem or hugetlb RAM and a userfaultfd)"
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
	free(li->crcs);
	free(li);
}

uint64_t lazy_image_bad_pages(const struct lazy_image *li)
{
	return li ? atomic_load(&li->bad) : 0;
}
