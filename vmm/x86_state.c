// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A vCPU's state as one blob (the layout is in x86_state.h). Loading first
 * checks the blob alone, then against what the destination takes (read by
 * saving it: the parts and MSRs it has, its XSAVE size, its banks); only
 * then does it set anything. A value KVM still refuses (a non-canonical
 * LSTAR, say) makes the load put the destination's saved state back.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "x86_state.h"

#define X86S_MAGIC "X86S"
#define X86S_VERSION 1
#define X86S_HDR_SIZE 12	/* magic, version, nparts */
#define PART_HDR_SIZE 8		/* tag, len */
#define MSR_ENTRY_SIZE 16	/* index, pad, value */
#define MSRS_MAX 256
/* Far above any XSAVE area KVM has (with AMX tiles: 11 KiB). */
#define XSAVE_MAX (1U << 20)
#define MCE_BANKS_MAX 32	/* KVM_MAX_MCE_BANKS */
#define MSR_IA32_MC0_CTL2 0x280	/* CMCI threshold, one per bank */

enum x86s_tag {
	TAG_REGS = 1,
	TAG_SREGS,
	TAG_XSAVE,
	TAG_FPU,
	TAG_XCRS,
	TAG_MSRS,
	TAG_LAPIC,
	TAG_VCPU_EVENTS,
	TAG_MP_STATE,
	TAG_DEBUGREGS,
	TAG_COUNT
};

static const char *const tag_names[TAG_COUNT] = {
	[TAG_REGS] = "REGS",
	[TAG_SREGS] = "SREGS",
	[TAG_XSAVE] = "XSAVE",
	[TAG_FPU] = "FPU",
	[TAG_XCRS] = "XCRS",
	[TAG_MSRS] = "MSRS",
	[TAG_LAPIC] = "LAPIC",
	[TAG_VCPU_EVENTS] = "VCPU_EVENTS",
	[TAG_MP_STATE] = "MP_STATE",
	[TAG_DEBUGREGS] = "DEBUGREGS",
};

/* Each fixed-size part is a KVM struct as is; 0: sized by its own rule. */
static const uint32_t tag_sizes[TAG_COUNT] = {
	[TAG_REGS] = sizeof(struct kvm_regs),
	[TAG_SREGS] = sizeof(struct kvm_sregs),
	[TAG_FPU] = sizeof(struct kvm_fpu),
	[TAG_XCRS] = sizeof(struct kvm_xcrs),
	[TAG_LAPIC] = sizeof(struct kvm_lapic_state),
	[TAG_VCPU_EVENTS] = sizeof(struct kvm_vcpu_events),
	[TAG_MP_STATE] = sizeof(struct kvm_mp_state),
	[TAG_DEBUGREGS] = sizeof(struct kvm_debugregs),
};

/* The blob carries these structs raw: their sizes are its format. */
_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs size");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs size");
_Static_assert(sizeof(struct kvm_fpu) == 416, "kvm_fpu size");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "kvm_xsave size");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "kvm_xcrs size");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "kvm_lapic_state size");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events size");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "kvm_mp_state size");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "kvm_debugregs size");
_Static_assert(sizeof(struct kvm_msr_entry) == MSR_ENTRY_SIZE, "kvm_msr_entry size");

/*
 * The MSRs outside kvm_sregs that the guest's state needs (EFER, FS/GS
 * base and APIC base are in kvm_sregs); machine-check MSRs are added per
 * MCG_CAP.
 */
static const struct {
	uint32_t index;
	const char *name;
} fixed_msrs[] = {
	{ 0x00000010, "TSC" },		/* so the guest's time goes on from here */
	{ 0x0000003b, "TSC_ADJUST" },
	{ 0x00000174, "SYSENTER_CS" },
	{ 0x00000175, "SYSENTER_ESP" },
	{ 0x00000176, "SYSENTER_EIP" },
	{ 0x000001a0, "MISC_ENABLE" },
	{ 0x00000277, "PAT" },
	{ 0xc0000081, "STAR" },
	{ 0xc0000082, "LSTAR" },
	{ 0xc0000083, "CSTAR" },
	{ 0xc0000084, "SYSCALL_MASK" },
	{ 0xc0000102, "KERNEL_GS_BASE" },
	{ 0xc0000103, "TSC_AUX" },
};

#define NFIXED (sizeof(fixed_msrs) / sizeof(fixed_msrs[0]))
/* fixed, MCG_STATUS, MCG_CTL, MCG_EXT_CTL, then CTL, STATUS, ADDR, MISC, CTL2 a bank */
_Static_assert(NFIXED + 3 + 5 * MCE_BANKS_MAX <= MSRS_MAX, "MSR list too long");

union msr_buf {
	struct kvm_msrs hdr;
	char bytes[sizeof(struct kvm_msrs) + MSRS_MAX * sizeof(struct kvm_msr_entry)];
};

/* A blob's parts, found and checked by blob_parse. */
struct blob {
	const uint8_t *part[TAG_COUNT];	/* payload, NULL: absent */
	uint32_t len[TAG_COUNT];
	uint32_t nmsrs;
};

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* The bank a machine-check bank MSR belongs to, or -1. */
static int msr_bank(uint32_t index)
{
	if (index >= MSR_IA32_MC0_CTL && index < MSR_IA32_MCx_CTL(MCE_BANKS_MAX))
		return (int)((index - MSR_IA32_MC0_CTL) / 4);
	if (index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + MCE_BANKS_MAX)
		return (int)(index - MSR_IA32_MC0_CTL2);
	return -1;
}

/* "LSTAR", "MC3_STATUS", "?" for messages. */
static const char *msr_name(uint32_t index, char buf[24])
{
	static const char *const bank_regs[] = { "CTL", "STATUS", "ADDR", "MISC" };
	int bank = msr_bank(index);

	for (size_t i = 0; i < NFIXED; i++)
		if (fixed_msrs[i].index == index)
			return fixed_msrs[i].name;
	switch (index) {
	case MSR_IA32_MCG_STATUS:
		return "MCG_STATUS";
	case MSR_IA32_MCG_CTL:
		return "MCG_CTL";
	case MSR_IA32_MCG_EXT_CTL:
		return "MCG_EXT_CTL";
	}
	if (bank < 0)
		return "unknown";
	if (index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + MCE_BANKS_MAX)
		snprintf(buf, 24, "MC%d_CTL2", bank);
	else
		snprintf(buf, 24, "MC%d_%s", bank, bank_regs[(index - MSR_IA32_MC0_CTL) % 4]);
	return buf;
}

static unsigned int mce_banks(const struct x86_machine *m)
{
	unsigned int banks = (unsigned int)(m->mcg_cap & MCG_BANKCNT_MASK);

	return banks < MCE_BANKS_MAX ? banks : MCE_BANKS_MAX;
}

/* The MSRs to save for a vCPU of m, in the order they are set back. */
static unsigned int msr_list(const struct x86_machine *m, uint32_t *idx)
{
	unsigned int n = 0;

	for (size_t i = 0; i < NFIXED; i++)
		idx[n++] = fixed_msrs[i].index;
	idx[n++] = MSR_IA32_MCG_STATUS;
	if (m->mcg_cap & MCG_CTL_P)
		idx[n++] = MSR_IA32_MCG_CTL;
	if (m->mcg_cap & MCG_LMCE_P)
		idx[n++] = MSR_IA32_MCG_EXT_CTL;
	for (unsigned int i = 0; i < mce_banks(m); i++) {
		idx[n++] = MSR_IA32_MCx_CTL(i);
		idx[n++] = MSR_IA32_MCx_STATUS(i);
		idx[n++] = MSR_IA32_MCx_ADDR(i);
		idx[n++] = MSR_IA32_MCx_MISC(i);
		if (m->mcg_cap & MCG_CMCI_P)
			idx[n++] = MSR_IA32_MC0_CTL2 + i;
	}
	return n;
}

/*
 * Read the MSRs of idx that this KVM has into out. KVM_GET_MSRS stops at
 * the first MSR it does not know and returns how many it read: that one is
 * left out and the read goes on after it, so a save works on any host.
 */
static int msrs_read(int vcpu_fd, const uint32_t *idx, unsigned int n, union msr_buf *out,
		     struct vmm_error *e)
{
	union msr_buf req;
	unsigned int done = 0, kept = 0;
	long r;

	while (done < n) {
		req.hdr.nmsrs = n - done;
		req.hdr.pad = 0;
		for (unsigned int i = 0; i < n - done; i++)
			req.hdr.entries[i] = (struct kvm_msr_entry){ .index = idx[done + i] };
		r = kabi__ioctl(vcpu_fd, KVM_GET_MSRS, (unsigned long)&req);
		if (r < 0)
			return vmm_fail(e, (int)r, "KVM_GET_MSRS");
		if (r > (long)(n - done))
			return vmm_failf(e, -EIO, "KVM_GET_MSRS read %ld of %u MSRs", r, n - done);
		memcpy(&out->hdr.entries[kept], req.hdr.entries,
		       (size_t)r * sizeof(req.hdr.entries[0]));
		kept += (unsigned int)r;
		done += (unsigned int)r;
		if (done < n)
			done++;
	}
	out->hdr.nmsrs = kept;
	out->hdr.pad = 0;
	return 0;
}

/* What this host's KVM can save, from /dev/kvm (a vCPU fd cannot tell). */
struct host_caps {
	bool xsave, xcrs;
	uint32_t xsave_size;	/* KVM_GET_XSAVE(2)'s size, when xsave */
};

static int host_caps_get(struct host_caps *c, struct vmm_error *e)
{
	long xsave, xsave2, xcrs;
	int fd;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vmm_fail(e, -errno, "open /dev/kvm");
	xsave = kabi_ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE);
	xsave2 = kabi_ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	xcrs = kabi_ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS);
	close(fd);
	if (xsave < 0 || xsave2 < 0 || xcrs < 0)
		return vmm_fail(e, (int)(xsave < 0 ? xsave : xsave2 < 0 ? xsave2 : xcrs),
				"KVM_CHECK_EXTENSION");
	c->xsave = xsave > 0;
	c->xcrs = xcrs > 0;
	/*
	 * KVM_CAP_XSAVE2 is the size of the largest XSAVE area a vCPU of this
	 * process can have (AMX tiles make it larger than struct kvm_xsave);
	 * 0 before Linux 5.17.
	 */
	c->xsave_size = sizeof(struct kvm_xsave);
	if (xsave2 > (long)sizeof(struct kvm_xsave)) {
		if (xsave2 > XSAVE_MAX || xsave2 % 4)
			return vmm_failf(e, -ENOTSUP, "KVM_CAP_XSAVE2 says %ld bytes", xsave2);
		c->xsave_size = (uint32_t)xsave2;
	}
	return 0;
}

struct writer {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nparts;
};

/* Room for a part's payload of len bytes (cap was sized for every part). */
static uint8_t *part_add(struct writer *w, enum x86s_tag tag, uint32_t len)
{
	uint8_t *p = w->buf + w->len;

	put_le32(p, tag);
	put_le32(p + 4, len);
	w->len += PART_HDR_SIZE + len;
	w->nparts++;
	return p + PART_HDR_SIZE;
}

/* A part holding a struct filled by a GET ioctl (the size is checked here). */
#define part_get(w, fd, cmd, tag, what, e)                                     \
	({                                                                     \
		what v_;                                                       \
		long r_ = kabi_ioctl(fd, cmd, &v_);                            \
		if (r_ >= 0)                                                   \
			memcpy(part_add(w, tag, sizeof(v_)), &v_, sizeof(v_)); \
		r_ < 0 ? vmm_fail(e, (int)r_, #cmd) : 0;                       \
	})

static int save_xsave(struct writer *w, int vcpu_fd, const struct host_caps *c,
		      struct vmm_error *e)
{
	uint8_t *p;
	long r;

	if (!c->xsave)
		return part_get(w, vcpu_fd, KVM_GET_FPU, TAG_FPU, struct kvm_fpu, e);
	/*
	 * KVM copies the vCPU's XSAVE size, which KVM_CAP_XSAVE2 bounds and
	 * which may be more than struct kvm_xsave: hence the raw ioctl into
	 * a part of that size (zero where the vCPU's area is shorter).
	 */
	p = part_add(w, TAG_XSAVE, c->xsave_size);
	memset(p, 0, c->xsave_size);
	if (c->xsave_size > sizeof(struct kvm_xsave)) {
		r = kabi__ioctl(vcpu_fd, KVM_GET_XSAVE2, (unsigned long)p);
		if (r < 0)
			return vmm_fail(e, (int)r, "KVM_GET_XSAVE2 (%u bytes)", c->xsave_size);
	} else {
		r = kabi__ioctl(vcpu_fd, KVM_GET_XSAVE, (unsigned long)p);
		if (r < 0)
			return vmm_fail(e, (int)r, "KVM_GET_XSAVE");
	}
	return 0;
}

static int save_msrs(struct writer *w, const struct x86_machine *m, int vcpu_fd,
		     struct vmm_error *e)
{
	uint32_t idx[MSRS_MAX];
	union msr_buf msrs;
	uint8_t *p;
	int r;

	r = msrs_read(vcpu_fd, idx, msr_list(m, idx), &msrs, e);
	if (r)
		return r;
	p = part_add(w, TAG_MSRS, 4 + msrs.hdr.nmsrs * MSR_ENTRY_SIZE);
	put_le32(p, msrs.hdr.nmsrs);
	for (unsigned int i = 0; i < msrs.hdr.nmsrs; i++) {
		uint8_t *x = p + 4 + i * MSR_ENTRY_SIZE;

		put_le32(x, msrs.hdr.entries[i].index);
		put_le32(x + 4, 0);
		put_le64(x + 8, msrs.hdr.entries[i].data);
	}
	return 0;
}

/* Without an in-kernel irqchip there is no LAPIC to save: no part. */
static int save_lapic(struct writer *w, int vcpu_fd, struct vmm_error *e)
{
	struct kvm_lapic_state lapic;
	long r;

	r = kabi_ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic);
	if (r == -ENXIO || r == -EINVAL)
		return 0;
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_GET_LAPIC");
	memcpy(part_add(w, TAG_LAPIC, sizeof(lapic)), &lapic, sizeof(lapic));
	return 0;
}

int x86_state_save(const struct x86_machine *m, int vcpu_fd, void **buf, size_t *len,
		   struct vmm_error *e)
{
	struct writer w = { 0 };
	struct host_caps c = { 0 };
	int r;

	r = host_caps_get(&c, e);
	if (r)
		return r;
	w.cap = X86S_HDR_SIZE + (TAG_COUNT - 1) * PART_HDR_SIZE + c.xsave_size + 4 +
		MSRS_MAX * MSR_ENTRY_SIZE;
	for (int t = 1; t < TAG_COUNT; t++)
		w.cap += tag_sizes[t];
	w.buf = malloc(w.cap);
	if (!w.buf)
		return vmm_fail(e, -ENOMEM, "allocate %zu bytes of vCPU state", w.cap);
	memcpy(w.buf, X86S_MAGIC, 4);
	put_le32(w.buf + 4, X86S_VERSION);
	w.len = X86S_HDR_SIZE;

	/* The order they are set back in (the blob may have any). */
	r = part_get(&w, vcpu_fd, KVM_GET_REGS, TAG_REGS, struct kvm_regs, e);
	if (!r)
		r = part_get(&w, vcpu_fd, KVM_GET_SREGS, TAG_SREGS, struct kvm_sregs, e);
	if (!r)
		r = save_xsave(&w, vcpu_fd, &c, e);
	if (!r && c.xcrs)
		r = part_get(&w, vcpu_fd, KVM_GET_XCRS, TAG_XCRS, struct kvm_xcrs, e);
	if (!r)
		r = save_msrs(&w, m, vcpu_fd, e);
	if (!r)
		r = save_lapic(&w, vcpu_fd, e);
	if (!r)
		r = part_get(&w, vcpu_fd, KVM_GET_DEBUGREGS, TAG_DEBUGREGS, struct kvm_debugregs,
			     e);
	if (!r)
		r = part_get(&w, vcpu_fd, KVM_GET_VCPU_EVENTS, TAG_VCPU_EVENTS,
			     struct kvm_vcpu_events, e);
	if (!r)
		r = part_get(&w, vcpu_fd, KVM_GET_MP_STATE, TAG_MP_STATE, struct kvm_mp_state, e);
	if (r) {
		free(w.buf);
		return r;
	}
	put_le32(w.buf + 8, w.nparts);
	*buf = w.buf;
	*len = w.len;
	return 0;
}

static int bad(struct vmm_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "vCPU state: ..." and -EPROTO: the blob itself is malformed. */
static int bad(struct vmm_error *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!e)
		return -EPROTO;
	n = snprintf(e->msg, sizeof(e->msg), "vCPU state: ");
	va_start(ap, fmt);
	vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return -EPROTO;
}

static int part_size_check(enum x86s_tag tag, uint32_t len, struct vmm_error *e)
{
	if (tag == TAG_XSAVE) {
		if (len < sizeof(struct kvm_xsave) || len > XSAVE_MAX || len % 4)
			return bad(e, "XSAVE part of %u bytes (%zu to %u, a multiple of 4)", len,
				   sizeof(struct kvm_xsave), XSAVE_MAX);
		return 0;
	}
	if (tag == TAG_MSRS)
		return len < 4 ? bad(e, "MSRS part of %u bytes, too short for its count", len)
			       : 0;
	if (len != tag_sizes[tag])
		return bad(e, "%s part of %u bytes, want %u", tag_names[tag], len,
			   tag_sizes[tag]);
	return 0;
}

static int msrs_check(const struct blob *b, struct vmm_error *e)
{
	const uint8_t *p = b->part[TAG_MSRS];
	uint32_t n = get_le32(p);

	if (n > MSRS_MAX)
		return bad(e, "%u MSRs, at most %u", n, MSRS_MAX);
	if (b->len[TAG_MSRS] != 4 + n * MSR_ENTRY_SIZE)
		return bad(e, "MSRS part of %u bytes for %u MSRs, want %u", b->len[TAG_MSRS], n,
			   4 + n * MSR_ENTRY_SIZE);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *x = p + 4 + i * MSR_ENTRY_SIZE;

		if (get_le32(x + 4))
			return bad(e, "MSR entry %u: padding not zero", i);
		for (uint32_t j = 0; j < i; j++)
			if (get_le32(p + 4 + j * MSR_ENTRY_SIZE) == get_le32(x))
				return bad(e, "MSR 0x%x twice", get_le32(x));
	}
	return 0;
}

/* Check the blob on its own: framing, sizes, the parts a vCPU needs. */
static int blob_parse(const void *buf, size_t len, struct blob *b, struct vmm_error *e)
{
	static const enum x86s_tag required[] = {
		TAG_REGS, TAG_SREGS, TAG_MSRS, TAG_DEBUGREGS, TAG_VCPU_EVENTS, TAG_MP_STATE,
	};
	const uint8_t *p = buf;
	uint32_t version, nparts;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	size_t off;
	int r;

	memset(b, 0, sizeof(*b));
	if (!buf || len < X86S_HDR_SIZE)
		return bad(e, "%zu bytes, shorter than its %u-byte header", len, X86S_HDR_SIZE);
	if (memcmp(p, X86S_MAGIC, 4))
		return bad(e, "bad magic (not an \"" X86S_MAGIC "\" blob)");
	version = get_le32(p + 4);
	if (version != X86S_VERSION)
		return bad(e, "version %u, this VMM reads version %u", version, X86S_VERSION);
	nparts = get_le32(p + 8);
	off = X86S_HDR_SIZE;
	for (uint32_t i = 0; i < nparts; i++) {
		uint32_t tag, plen;

		if (len - off < PART_HDR_SIZE)
			return bad(e, "part %u of %u at offset %zu: truncated (%zu bytes left)", i,
				   nparts, off, len - off);
		tag = get_le32(p + off);
		plen = get_le32(p + off + 4);
		if (tag == 0 || tag >= TAG_COUNT)
			return bad(e, "part %u at offset %zu: unknown tag %u", i, off, tag);
		if (b->part[tag])
			return bad(e, "part %u at offset %zu: a second %s part", i, off,
				   tag_names[tag]);
		off += PART_HDR_SIZE;
		if (plen > len - off)
			return bad(e, "part %u (%s) at offset %zu: %u bytes, only %zu left", i,
				   tag_names[tag], off - PART_HDR_SIZE, plen, len - off);
		r = part_size_check((enum x86s_tag)tag, plen, e);
		if (r)
			return r;
		b->part[tag] = p + off;
		b->len[tag] = plen;
		off += plen;
	}
	if (off != len)
		return bad(e, "%zu bytes after the last of its %u parts", len - off, nparts);
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!b->part[required[i]])
			return bad(e, "no %s part", tag_names[required[i]]);
	if (!b->part[TAG_XSAVE] == !b->part[TAG_FPU])
		return bad(e, "%s", b->part[TAG_XSAVE] ? "both XSAVE and FPU parts"
						       : "neither an XSAVE nor an FPU part");
	r = msrs_check(b, e);
	if (r)
		return r;
	b->nmsrs = get_le32(b->part[TAG_MSRS]);
	/* What KVM would refuse only after the parts before it were set. */
	if (b->part[TAG_XCRS]) {
		memcpy(&xcrs, b->part[TAG_XCRS], sizeof(xcrs));
		if (xcrs.nr_xcrs > KVM_MAX_XCRS || xcrs.flags)
			return bad(e, "XCRS part: %u XCRs (at most %u), flags 0x%x", xcrs.nr_xcrs,
				   KVM_MAX_XCRS, xcrs.flags);
	}
	memcpy(&dbg, b->part[TAG_DEBUGREGS], sizeof(dbg));
	if (dbg.flags)
		return bad(e, "DEBUGREGS part: flags 0x%llx", (unsigned long long)dbg.flags);
	return 0;
}

/* The i-th entry of a checked blob's MSR part: index at 0, value at 8. */
static const uint8_t *msr_at(const struct blob *b, uint32_t i)
{
	return b->part[TAG_MSRS] + 4 + i * MSR_ENTRY_SIZE;
}

static bool blob_has_msr(const struct blob *b, uint32_t index)
{
	for (uint32_t i = 0; i < b->nmsrs; i++)
		if (get_le32(msr_at(b, i)) == index)
			return true;
	return false;
}

/*
 * Does the blob fit the destination? d is the destination's own state,
 * just saved: the parts and MSRs it has are the ones it can take.
 */
static int dest_check(const struct x86_machine *m, const struct blob *b, const struct blob *d,
		      struct vmm_error *e)
{
	unsigned int banks = 0, dest_banks = mce_banks(m);
	struct kvm_vcpu_events be, de;
	char name[24];

	if (b->part[TAG_XSAVE] && !d->part[TAG_XSAVE])
		return vmm_failf(e, -EINVAL, "vCPU state has an XSAVE area, KVM here has no "
					     "KVM_CAP_XSAVE");
	if (b->part[TAG_XSAVE] && b->len[TAG_XSAVE] > d->len[TAG_XSAVE])
		return vmm_failf(e, -EINVAL, "vCPU state has a %u-byte XSAVE area, this VM's "
					     "is %u bytes", b->len[TAG_XSAVE], d->len[TAG_XSAVE]);
	if (b->part[TAG_XCRS] && !d->part[TAG_XCRS])
		return vmm_failf(e, -EINVAL, "vCPU state has XCRs, KVM here has no KVM_CAP_XCRS");
	if (b->part[TAG_LAPIC] && !d->part[TAG_LAPIC])
		return vmm_failf(e, -EINVAL, "vCPU state has a LAPIC, this VM has no in-kernel "
					     "irqchip");
	if (!b->part[TAG_LAPIC] && d->part[TAG_LAPIC])
		return vmm_failf(e, -EINVAL, "vCPU state has no LAPIC, this VM has an in-kernel "
					     "one");
	memcpy(&be, b->part[TAG_VCPU_EVENTS], sizeof(be));
	memcpy(&de, d->part[TAG_VCPU_EVENTS], sizeof(de));
	if (be.flags & ~de.flags)
		return vmm_failf(e, -EINVAL, "vCPU state has event flags 0x%x, this VM takes 0x%x",
				 be.flags, de.flags);

	for (uint32_t i = 0; i < b->nmsrs; i++) {
		int bank = msr_bank(get_le32(msr_at(b, i)));

		if (bank >= 0 && (unsigned int)bank + 1 > banks)
			banks = (unsigned int)bank + 1;
	}
	if (banks > dest_banks)
		return vmm_failf(e, -EINVAL,
				 "vCPU state has %u machine-check banks, this VM has %u", banks,
				 dest_banks);
	for (uint32_t i = 0; i < b->nmsrs; i++) {
		uint32_t index = get_le32(msr_at(b, i));

		if (!blob_has_msr(d, index))
			return vmm_failf(e, -EINVAL, "vCPU state has MSR 0x%x (%s), which this VM "
						     "does not have", index, msr_name(index, name));
	}
	return 0;
}

/* Set a part's struct (fixed size, checked by blob_parse) by a SET ioctl. */
#define part_set(b, fd, cmd, tag, what, e)                                     \
	({                                                                     \
		what v_;                                                       \
		long r_;                                                       \
		memcpy(&v_, (b)->part[tag], sizeof(v_));                       \
		r_ = kabi_ioctl(fd, cmd, &v_);                                 \
		r_ < 0 ? vmm_fail(e, (int)r_, #cmd) : 0;                       \
	})

static int load_xsave(int vcpu_fd, const struct blob *b, uint32_t dest_size,
		      struct vmm_error *e)
{
	uint8_t *x;
	long r;

	if (!b->part[TAG_XSAVE])
		return part_set(b, vcpu_fd, KVM_SET_FPU, TAG_FPU, struct kvm_fpu, e);
	/*
	 * KVM reads the vCPU's XSAVE size, maybe more than the blob's area:
	 * the rest is zero (XSTATE_BV in the header says those components are
	 * in their initial state).
	 */
	x = calloc(1, dest_size);
	if (!x)
		return vmm_fail(e, -ENOMEM, "allocate %u bytes of XSAVE area", dest_size);
	memcpy(x, b->part[TAG_XSAVE], b->len[TAG_XSAVE]);
	r = kabi__ioctl(vcpu_fd, KVM_SET_XSAVE, (unsigned long)x);
	free(x);
	return r < 0 ? vmm_fail(e, (int)r, "KVM_SET_XSAVE") : 0;
}

static int load_msrs(int vcpu_fd, const struct blob *b, struct vmm_error *e)
{
	union msr_buf msrs;
	char name[24];
	long r;

	msrs.hdr.nmsrs = b->nmsrs;
	msrs.hdr.pad = 0;
	for (uint32_t i = 0; i < b->nmsrs; i++) {
		msrs.hdr.entries[i] = (struct kvm_msr_entry){
			.index = get_le32(msr_at(b, i)), .data = get_le64(msr_at(b, i) + 8),
		};
	}
	r = kabi__ioctl(vcpu_fd, KVM_SET_MSRS, (unsigned long)&msrs);
	if (r < 0)
		return vmm_fail(e, (int)r, "KVM_SET_MSRS");
	if (r < (long)b->nmsrs) {
		const struct kvm_msr_entry *x = &msrs.hdr.entries[r];

		return vmm_failf(e, -EINVAL, "KVM_SET_MSRS: KVM refused MSR 0x%x (%s) = 0x%llx",
				 x->index, msr_name(x->index, name), (unsigned long long)x->data);
	}
	return 0;
}

/*
 * Set everything, in an order that keeps what KVM derives: SREGS (EFER,
 * CR4) before the MSRs, as KVM checks LSTAR and the like for canonical
 * addresses by the vCPU's mode; the machine-check MSRs in the same
 * host-initiated KVM_SET_MSRS (which KVM takes where a guest's write of a
 * nonzero MCi_STATUS would fault); then the events (a pending #MC) and the
 * MP state last, so nothing set after them drops a queued exception.
 */
static int blob_apply(int vcpu_fd, const struct blob *b, uint32_t dest_xsave,
		      struct vmm_error *e)
{
	int r;

	r = part_set(b, vcpu_fd, KVM_SET_SREGS, TAG_SREGS, struct kvm_sregs, e);
	if (!r)
		r = part_set(b, vcpu_fd, KVM_SET_REGS, TAG_REGS, struct kvm_regs, e);
	if (!r)
		r = load_xsave(vcpu_fd, b, dest_xsave, e);
	if (!r && b->part[TAG_XCRS])
		r = part_set(b, vcpu_fd, KVM_SET_XCRS, TAG_XCRS, struct kvm_xcrs, e);
	if (!r)
		r = load_msrs(vcpu_fd, b, e);
	if (!r && b->part[TAG_LAPIC])
		r = part_set(b, vcpu_fd, KVM_SET_LAPIC, TAG_LAPIC, struct kvm_lapic_state, e);
	if (!r)
		r = part_set(b, vcpu_fd, KVM_SET_DEBUGREGS, TAG_DEBUGREGS, struct kvm_debugregs, e);
	if (!r)
		r = part_set(b, vcpu_fd, KVM_SET_VCPU_EVENTS, TAG_VCPU_EVENTS,
			     struct kvm_vcpu_events, e);
	if (!r)
		r = part_set(b, vcpu_fd, KVM_SET_MP_STATE, TAG_MP_STATE, struct kvm_mp_state, e);
	return r;
}

/* The destination's own state (dest) parsed into d, and b checked against it. */
static int fit_check(const struct x86_machine *m, const struct blob *b, const void *dest,
		     size_t dest_len, struct blob *d, struct vmm_error *e)
{
	int r = blob_parse(dest, dest_len, d, e);

	return r ? r : dest_check(m, b, d, e);
}

int x86_state_check(const struct x86_machine *m, const void *buf, size_t len, const void *dest,
		    size_t dest_len, struct vmm_error *e)
{
	struct blob b, d;
	int r;

	r = blob_parse(buf, len, &b, e);
	if (r || !dest)
		return r;
	return fit_check(m, &b, dest, dest_len, &d, e);
}

int x86_state_load(const struct x86_machine *m, int vcpu_fd, const void *buf, size_t len,
		   struct vmm_error *e)
{
	struct blob b, d;
	void *prev = NULL;
	size_t prev_len;
	int r;

	r = blob_parse(buf, len, &b, e);
	if (r)
		return r;
	r = x86_state_save(m, vcpu_fd, &prev, &prev_len, e);
	if (r)
		return r;
	r = fit_check(m, &b, prev, prev_len, &d, e);
	if (r)
		goto out;
	r = blob_apply(vcpu_fd, &b, d.part[TAG_XSAVE] ? d.len[TAG_XSAVE] : 0, e);
	if (r) {
		struct vmm_error e2;
		size_t n = e ? strlen(e->msg) : 0;

		/* KVM refused a value: put back what the vCPU had. */
		if (blob_apply(vcpu_fd, &d, d.part[TAG_XSAVE] ? d.len[TAG_XSAVE] : 0, &e2) && e)
			snprintf(e->msg + n, sizeof(e->msg) - n,
				 "; putting the previous state back failed too: %s", e2.msg);
	}
out:
	free(prev);
	return r;
}
