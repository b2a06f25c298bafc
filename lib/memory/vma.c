// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "memory/vma.h"

#ifndef MPOL_F_ADDR
#define MPOL_F_ADDR (1 << 1)
#endif
#ifndef MPOL_DEFAULT
#define MPOL_DEFAULT 0
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

static bool has_flag(const char *flags, const char *f)
{
	size_t n = strlen(f);

	for (const char *p = flags; (p = strstr(p, f)); p += n)
		if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* The VmFlags line of the mapping holding hva. */
static int read_vmflags(uint64_t hva, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[1024];
	bool inside = false;
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		uint64_t lo, hi;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " ", &lo, &hi) == 2 && strchr(line, '-') &&
		    line[0] != 'V') {
			if (inside)
				break;
			inside = hva >= lo && hva < hi;
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			size_t n = strnlen(line + 8, size - 1);

			memcpy(out, line + 8, n);
			out[n] = '\0';
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

int vr_vma_flags_read(uint64_t hva, struct vr_vma_attrs *a)
{
	char flags[512];
	int err;

	memset(a, 0, sizeof(*a));
	err = read_vmflags(hva, flags, sizeof(flags));
	if (err)
		return err;
	a->dontfork = has_flag(flags, "dc");
	a->dontdump = has_flag(flags, "dd");
	a->wipeonfork = has_flag(flags, "wf");
	a->locked = has_flag(flags, "lo");
	a->mergeable = has_flag(flags, "mg");
	a->hugepage = has_flag(flags, "hg");
	a->nohugepage = has_flag(flags, "nh");
	return 0;
}

int vr_vma_attrs_get(struct vmras *v, const struct vmras_region *r, uint64_t hva,
		     struct vr_vma_attrs *a)
{
	int mode;

	memset(a, 0, sizeof(*a));
	for (unsigned int i = 0; i < vmras_memmap_count(v->map); i++)
		if (vmras_memmap_region(v->map, i) == r)
			*a = v->region_attrs[i];
	a->have_policy = false;
	/* No NUMA (ENOSYS) means no policy to keep. */
	if (!syscall(SYS_get_mempolicy, &mode, a->nodes, VR_VMA_MAX_NODES,
		     (void *)(uintptr_t)hva, MPOL_F_ADDR)) {
		a->have_policy = mode != MPOL_DEFAULT;
		a->policy = mode;
	} else if (errno != ENOSYS) {
		return -errno;
	}
	return 0;
}

static int advise(uint64_t hva, uint64_t len, bool on, int advice)
{
	if (!on)
		return 0;
	return madvise((void *)(uintptr_t)hva, len, advice) ? -errno : 0;
}

int vr_vma_attrs_apply(uint64_t hva, uint64_t len, const struct vr_vma_attrs *a)
{
	void *p = (void *)(uintptr_t)hva;
	int err = 0;

	if (a->have_policy &&
	    syscall(SYS_mbind, p, len, a->policy, a->nodes, VR_VMA_MAX_NODES, 0))
		return -errno;
	err = advise(hva, len, a->dontfork, MADV_DONTFORK) ?:
	      advise(hva, len, a->dontdump, MADV_DONTDUMP) ?:
	      advise(hva, len, a->wipeonfork, MADV_WIPEONFORK) ?:
	      advise(hva, len, a->mergeable, MADV_MERGEABLE) ?:
	      advise(hva, len, a->hugepage, MADV_HUGEPAGE) ?:
	      advise(hva, len, a->nohugepage, MADV_NOHUGEPAGE);
	if (err)
		return err;
	/* On fault only: locking now would fault in (and fill) every page. */
	if (a->locked && syscall(SYS_mlock2, p, len, MLOCK_ONFAULT))
		return -errno;
	return 0;
}
