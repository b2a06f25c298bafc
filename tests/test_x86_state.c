// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vCPU state save/load (vmm/x86_state.c) on real KVM vCPUs set up exactly
 * as the reference VMM sets them up (x86_machine_init, x86_vcpu_init,
 * x86_vcpu_reset). Nothing runs guest code: the vCPUs are only read and
 * written.
 *   1. round trip: distinctive general registers, XMM/YMM state and MXCSR,
 *      XCR0, the syscall MSRs, PAT, TSC, MCG_STATUS = RIPV|MCIP and a bank's
 *      STATUS/ADDR/MISC, an injected #MC, NMI masking, debug registers;
 *      saved, loaded into a vCPU of another VM and read back with the GET
 *      ioctls, part by part and field by field
 *   2. bad blobs: truncated at every part boundary and inside every part,
 *      bad magic and version, lengths off by one, an MSR count of 1 << 30,
 *      unknown, repeated and missing parts, more banks than the destination
 *      has, values KVM refuses (a non-canonical LSTAR, an MCi_CTL of 5, an
 *      XSAVE header with XCOMP_BV set): every load fails and the
 *      destination's registers, XSAVE area, MSRs and events stay as they
 *      were; the good blob then loads into the same vCPU
 *   3. with an in-kernel irqchip: the LAPIC and a halted MP state round
 *      trip; a blob with a LAPIC into a VM without one, and the reverse,
 *      are refused and change nothing
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest/layout.h"
#include "kabi/ioctl.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "tap.h"
#include "x86.h"
#include "x86_state.h"

/* The blob's format as x86_state.h documents it, read independently here. */
enum {
	TAG_REGS = 1, TAG_SREGS, TAG_XSAVE, TAG_FPU, TAG_XCRS, TAG_MSRS, TAG_LAPIC,
	TAG_VCPU_EVENTS, TAG_MP_STATE, TAG_DEBUGREGS,
};
#define HDR 12
#define MAX_PARTS 16

#define MSR_TSC 0x10
#define MSR_PAT 0x277
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

#define BANK 1	/* the bank holding the distinctive error */
#define STATUS_SRAR 0xBD80000000000134ULL
#define ADDR_ERR 0x12345000ULL
#define MISC_4K 0x8cULL

static const struct {
	uint32_t index;
	const char *name;
	uint64_t value;		/* what the source vCPU gets */
} distinctive[] = {
	{ MSR_STAR, "STAR", 0x0023001000000000ULL },
	{ MSR_LSTAR, "LSTAR", 0xffffffff81600000ULL },
	{ MSR_CSTAR, "CSTAR", 0xffffffff81601000ULL },
	{ MSR_SYSCALL_MASK, "SYSCALL_MASK", 0x47700 },
	{ MSR_KERNEL_GS_BASE, "KERNEL_GS_BASE", 0xffff888012345000ULL },
	{ MSR_SYSENTER_CS, "SYSENTER_CS", 0x10 },
	{ MSR_SYSENTER_ESP, "SYSENTER_ESP", 0xfffffe0000003000ULL },
	{ MSR_SYSENTER_EIP, "SYSENTER_EIP", 0xffffffff81602000ULL },
	{ MSR_TSC_AUX, "TSC_AUX", 7 },
	{ MSR_PAT, "PAT", 0x0007010600070106ULL },	/* WB, WC, UC-, UC twice */
	{ MSR_TSC, "TSC", 1ULL << 40 },
	{ MSR_IA32_MCG_STATUS, "MCG_STATUS", MCG_STATUS_RIPV | MCG_STATUS_MCIP },
	{ MSR_IA32_MCx_STATUS(BANK), "MC1_STATUS", STATUS_SRAR },
	{ MSR_IA32_MCx_ADDR(BANK), "MC1_ADDR", ADDR_ERR },
	{ MSR_IA32_MCx_MISC(BANK), "MC1_MISC", MISC_4K },
};
#define NDISTINCTIVE (sizeof(distinctive) / sizeof(distinctive[0]))

static int kvm_fd;
static struct x86_machine mach;
static uint32_t xsave_size;	/* KVM_GET_XSAVE2's, at least 4096 */
static bool have_avx;

struct tvm {
	int vm_fd, fd;
};

static unsigned int mce_banks_of(const struct x86_machine *m)
{
	return (unsigned int)(m->mcg_cap & MCG_BANKCNT_MASK);
}

static void tvm_free(struct tvm *t)
{
	if (t->fd >= 0)
		close(t->fd);
	if (t->vm_fd >= 0)
		close(t->vm_fd);
	t->fd = t->vm_fd = -1;
}

/* A VM and its vCPU 0 as vmm.c and vcpu.c make them (no RAM: nothing runs). */
static int tvm_create(struct tvm *t, const struct x86_machine *m, bool irqchip)
{
	struct vmm_error e = { "" };
	long r;

	t->fd = -1;
	t->vm_fd = (int)kabi_ioctl_val(kvm_fd, KVM_CREATE_VM, 0);
	if (t->vm_fd < 0) {
		tap_diag("KVM_CREATE_VM: %s", strerror(-t->vm_fd));
		return t->vm_fd;
	}
	r = kabi_ioctl_val(t->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	if (r >= 0 && irqchip)
		r = kabi_ioctl_val(t->vm_fd, KVM_CREATE_IRQCHIP, 0);
	if (r < 0) {
		tap_diag("%s: %s", irqchip ? "KVM_CREATE_IRQCHIP" : "KVM_SET_TSS_ADDR",
			 strerror((int)-r));
		tvm_free(t);
		return (int)r;
	}
	t->fd = (int)kabi_ioctl_val(t->vm_fd, KVM_CREATE_VCPU, 0);
	r = t->fd < 0 ? vmm_fail(&e, t->fd, "KVM_CREATE_VCPU") : x86_vcpu_init(m, t->fd, 0, &e);
	if (!r)
		r = x86_vcpu_reset(m, t->fd, 0, GL_IMAGE, &e);
	if (r) {
		tap_diag("vCPU setup: %s", e.msg);
		tvm_free(t);
	}
	return (int)r;
}

/* ---- ioctl helpers ---------------------------------------------------- */

union msrs1 {
	struct kvm_msrs hdr;
	char bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
};

static int get_msr(int fd, uint32_t index, uint64_t *v)
{
	union msrs1 m = { .hdr.nmsrs = 1 };
	long r;

	m.hdr.entries[0].index = index;
	r = kabi__ioctl(fd, KVM_GET_MSRS, (unsigned long)&m);
	if (r != 1)
		return r < 0 ? (int)r : -EIO;
	*v = m.hdr.entries[0].data;
	return 0;
}

static int set_msr(int fd, uint32_t index, uint64_t v)
{
	union msrs1 m = { .hdr.nmsrs = 1 };
	long r;

	m.hdr.entries[0].index = index;
	m.hdr.entries[0].data = v;
	r = kabi__ioctl(fd, KVM_SET_MSRS, (unsigned long)&m);
	return r == 1 ? 0 : r < 0 ? (int)r : -EIO;
}

/* KVM_GET_XSAVE or, for a larger area, KVM_GET_XSAVE2 into buf (xsave_size). */
static int get_xsave(int fd, void *buf)
{
	memset(buf, 0, xsave_size);
	return (int)kabi__ioctl(fd, xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2
									    : KVM_GET_XSAVE,
				(unsigned long)buf);
}

/* Equal, or the first byte that differs said. */
static bool same(const void *a, const void *b, size_t n, const char *what)
{
	const uint8_t *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i]) {
			tap_result(false, "%s: identical", what);
			tap_diag("first difference at byte %zu of %zu: 0x%02x, want 0x%02x", i, n,
				 y[i], x[i]);
			return false;
		}
	return tap_result(true, "%s: identical (%zu bytes)", what, n);
}

/* ---- reading the blob (independently of x86_state.c) ------------------ */

struct part {
	size_t off;	/* of the part's header */
	uint32_t tag, len;
};

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static unsigned int parts_of(const uint8_t *b, size_t len, struct part *parts)
{
	unsigned int n = le32(b + 8);
	size_t off = HDR;

	for (unsigned int i = 0; i < n && i < MAX_PARTS && off + 8 <= len; i++) {
		parts[i] = (struct part){ off, le32(b + off), le32(b + off + 4) };
		off += 8 + parts[i].len;
	}
	return n;
}

static const struct part *find_part(const struct part *parts, unsigned int n, uint32_t tag)
{
	for (unsigned int i = 0; i < n; i++)
		if (parts[i].tag == tag)
			return &parts[i];
	return NULL;
}

/* The payload of part tag, or NULL. */
static uint8_t *payload(uint8_t *b, size_t len, uint32_t tag, uint32_t *plen)
{
	struct part parts[MAX_PARTS];
	unsigned int n = parts_of(b, len, parts);
	const struct part *p = find_part(parts, n, tag);

	if (!p)
		return NULL;
	if (plen)
		*plen = p->len;
	return b + p->off + 8;
}

/* The blob's MSR value, or false when it has no such MSR. */
static bool blob_msr(uint8_t *b, size_t len, uint32_t index, uint64_t *v)
{
	uint8_t *p = payload(b, len, TAG_MSRS, NULL);

	for (uint32_t i = 0; p && i < le32(p); i++)
		if (le32(p + 4 + 16 * i) == index) {
			*v = le64(p + 4 + 16 * i + 8);
			return true;
		}
	return false;
}

/*
 * A blob made of b's parts with one changed: part `tag` dropped (drop),
 * its payload replaced by (repl, rlen), or a part appended (add_tag).
 */
struct edit {
	uint32_t tag;
	bool drop;
	const void *repl;
	uint32_t rlen;
	uint32_t add_tag;
	const void *add;
	uint32_t add_len;
};

static uint8_t *rebuild(const uint8_t *b, size_t len, const struct edit *ed, size_t *out_len)
{
	struct part parts[MAX_PARTS];
	unsigned int n = parts_of(b, len, parts), k = 0;
	uint8_t *o = malloc(len + 2 * 65536), *w = o + HDR;

	memcpy(o, b, 8);
	for (unsigned int i = 0; i < n; i++) {
		const void *src = b + parts[i].off + 8;
		uint32_t plen = parts[i].len;

		if (parts[i].tag == ed->tag && ed->drop)
			continue;
		if (parts[i].tag == ed->tag && ed->repl) {
			src = ed->repl;
			plen = ed->rlen;
		}
		put32(w, parts[i].tag);
		put32(w + 4, plen);
		memcpy(w + 8, src, plen);
		w += 8 + plen;
		k++;
	}
	if (ed->add_tag) {
		put32(w, ed->add_tag);
		put32(w + 4, ed->add_len);
		memcpy(w + 8, ed->add, ed->add_len);
		w += 8 + ed->add_len;
		k++;
	}
	put32(o + 8, k);
	*out_len = (size_t)(w - o);
	return o;
}

/* ---- 1. round trip ---------------------------------------------------- */

static int put_distinctive(int fd)
{
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_vcpu_events ev;
	uint8_t *xs = calloc(1, xsave_size);
	uint64_t xstate_bv;
	long r;

	r = kabi_ioctl(fd, KVM_GET_REGS, &regs);
	if (r < 0)
		goto fail;
	regs.rax = 0x1111111111111111ULL;
	regs.rbx = 0x2222222222222222ULL;
	regs.rcx = 0x3333333333333333ULL;
	regs.rdx = 0x4444444444444444ULL;
	regs.rsi = 0x5555555555555555ULL;
	regs.rdi = 0x6666666666666666ULL;
	regs.rbp = 0x7777777777777777ULL;
	regs.r8 = 0x8888888888888888ULL;
	regs.r15 = 0xf0f0f0f0f0f0f0f0ULL;
	regs.rsp = GL_PERCPU + 0x7ff0;
	regs.rip = GL_IMAGE + 0x1234;
	regs.rflags = 0x256;	/* IF, ZF, AF, PF, bit 1 */
	r = kabi_ioctl(fd, KVM_SET_REGS, &regs);
	if (r < 0)
		goto fail;

	/* XMM0-15 (legacy area at 160), MXCSR rounding, YMM upper halves (576). */
	r = get_xsave(fd, xs);
	if (r < 0)
		goto fail;
	for (int i = 0; i < 256; i++)
		xs[160 + i] = (uint8_t)(0xa5 ^ i);
	put32(xs + 24, 0x7f80);
	xstate_bv = le64(xs + 512) | 0x3;
	if (have_avx) {
		for (int i = 0; i < 256; i++)
			xs[576 + i] = (uint8_t)(0x3c + i);
		xstate_bv |= 0x4;
	}
	put64(xs + 512, xstate_bv);
	r = kabi__ioctl(fd, KVM_SET_XSAVE, (unsigned long)xs);
	if (r < 0)
		goto fail;

	r = kabi_ioctl(fd, KVM_GET_XCRS, &xcrs);
	if (r < 0)
		goto fail;
	for (unsigned int i = 0; i < xcrs.nr_xcrs; i++)
		if (xcrs.xcrs[i].xcr == 0)
			xcrs.xcrs[i].value = have_avx ? 0x7 : 0x3;
	r = kabi_ioctl(fd, KVM_SET_XCRS, &xcrs);
	if (r < 0)
		goto fail;

	for (size_t i = 0; i < NDISTINCTIVE; i++) {
		r = set_msr(fd, distinctive[i].index, distinctive[i].value);
		if (r)
			tap_diag("source: MSR %s not set here (%s)", distinctive[i].name,
				 strerror((int)-r));
	}

	r = kabi_ioctl(fd, KVM_GET_DEBUGREGS, &dbg);
	if (r < 0)
		goto fail;
	dbg.db[0] = 0x1000;
	dbg.db[1] = 0x2000;
	dbg.db[2] = 0x3000;
	dbg.db[3] = 0x4000;
	dbg.dr7 = 0x455;	/* L0-L3 enabled */
	r = kabi_ioctl(fd, KVM_SET_DEBUGREGS, &dbg);
	if (r < 0)
		goto fail;

	/* A #MC queued for the next entry, NMIs masked (the #MC handler runs). */
	r = kabi_ioctl(fd, KVM_GET_VCPU_EVENTS, &ev);
	if (r < 0)
		goto fail;
	ev.exception.injected = 1;
	ev.exception.nr = X86_VECTOR_MC;
	ev.exception.has_error_code = 0;
	ev.nmi.masked = 1;
	r = kabi_ioctl(fd, KVM_SET_VCPU_EVENTS, &ev);
	if (r < 0)
		goto fail;
	free(xs);
	return 0;
fail:
	tap_diag("setting up the source vCPU: %s", strerror((int)-r));
	free(xs);
	return (int)r;
}

static void diag_msrs(uint8_t *b, size_t len)
{
	uint8_t *p = payload(b, len, TAG_MSRS, NULL);
	char line[2048];
	size_t n = 0;

	if (!p)
		return;
	for (uint32_t i = 0; i < le32(p) && n < sizeof(line) - 16; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %x", le32(p + 4 + 16 * i));
	tap_diag("%u MSRs saved:%s", le32(p), line);
}

/*
 * KVM_GET_MSRS stops at an MSR KVM does not have. Told of two banks more
 * than the vCPU has, save must leave their eight MSRs out and keep the rest.
 */
static void save_skips_missing(int fd, uint8_t *good, size_t good_len)
{
	struct x86_machine more = mach;
	struct vmm_error e = { "" };
	unsigned int banks = mce_banks_of(&mach);
	void *b = NULL;
	size_t len;
	uint8_t *p, *q;
	uint64_t v;
	int r;

	more.mcg_cap = (mach.mcg_cap & ~MCG_BANKCNT_MASK) | (banks + 2);
	r = x86_state_save(&more, fd, &b, &len, &e);
	if (!is_int(r, 0, "save with MSRs KVM does not have in the list: %s", r ? e.msg : "ok"))
		return;
	p = payload(b, len, TAG_MSRS, NULL);
	q = payload(good, good_len, TAG_MSRS, NULL);
	ok(p && q && le32(p) == le32(q),
	   "save: the %u MSRs of banks %u and %u left out, the other %u kept", 8, banks,
	   banks + 1, q ? le32(q) : 0);
	ok(blob_msr(b, len, MSR_IA32_MCx_MISC(banks - 1), &v) &&
		   !blob_msr(b, len, MSR_IA32_MCx_CTL(banks), &v) &&
		   !blob_msr(b, len, MSR_IA32_MCx_MISC(banks + 1), &v),
	   "save: MC%u_MISC kept, MC%u_CTL and MC%u_MISC left out", banks - 1, banks, banks + 1);
	free(b);
}

static void test_round_trip(uint8_t **blob_out, size_t *len_out)
{
	struct tvm src, dst;
	struct vmm_error e = { "" };
	struct kvm_regs r1, r2;
	struct kvm_sregs s1, s2;
	struct kvm_xcrs x1, x2;
	struct kvm_debugregs d1, d2;
	struct kvm_vcpu_events ev1, ev2;
	struct kvm_mp_state mp1, mp2;
	struct part parts[MAX_PARTS];
	uint8_t *xs1 = calloc(1, xsave_size), *xs2 = calloc(1, xsave_size);
	void *blob = NULL;
	size_t len = 0;
	unsigned int np, mismatches = 0;
	uint8_t *mp;
	uint64_t v, saved, tsc_khz, tsc_read = 0;
	bool tsc_set;
	int r;

	if (tvm_create(&src, &mach, false) || tvm_create(&dst, &mach, false)) {
		ok(false, "round trip: two VMs as the VMM makes them");
		goto out_free;
	}
	if (put_distinctive(src.fd)) {
		ok(false, "round trip: source vCPU set up");
		goto out;
	}
	/* Some hosts' KVM takes a host-initiated TSC write and ignores it. */
	get_msr(src.fd, MSR_TSC, &tsc_read);
	tsc_set = tsc_read >= (1ULL << 40) && tsc_read - (1ULL << 40) < (1ULL << 38);
	r = kabi_ioctl(src.fd, KVM_GET_VCPU_EVENTS, &ev1);
	ok(r == 0 && ev1.exception.nr == X86_VECTOR_MC &&
		   (ev1.exception.injected || ev1.exception.pending),
	   "source: the #MC put in KVM_SET_VCPU_EVENTS is queued (injected %u pending %u nr %u)",
	   ev1.exception.injected, ev1.exception.pending, ev1.exception.nr);

	r = x86_state_save(&mach, src.fd, &blob, &len, &e);
	if (!is_int(r, 0, "save: %s", r ? e.msg : "ok"))
		goto out;
	np = parts_of(blob, len, parts);
	ok(!memcmp(blob, "X86S", 4) && le32((uint8_t *)blob + 4) == 1,
	   "blob: magic X86S, version 1, %u parts, %zu bytes", np, len);
	for (unsigned int i = 0; i < np && i < MAX_PARTS; i++)
		tap_diag("part %u: tag %u, %u bytes at offset %zu", i, parts[i].tag, parts[i].len,
			 parts[i].off);
	ok(find_part(parts, np, TAG_XSAVE) || find_part(parts, np, TAG_FPU),
	   "blob: an XSAVE (or FPU) part");
	ok(!find_part(parts, np, TAG_LAPIC), "blob: no LAPIC part (no in-kernel irqchip)");
	diag_msrs(blob, len);
	for (size_t i = 0; i < NDISTINCTIVE; i++) {
		if (!blob_msr(blob, len, distinctive[i].index, &v)) {
			/* Only TSC_AUX may be missing: it depends on the host. */
			ok(distinctive[i].index == MSR_TSC_AUX, "blob: has MSR %s (0x%x)",
			   distinctive[i].name, distinctive[i].index);
			continue;
		}
		if (distinctive[i].index == MSR_TSC && tsc_set)
			ok(v >= distinctive[i].value && v - distinctive[i].value < (1ULL << 38),
			   "blob: TSC 0x%" PRIx64 " just after the 0x%" PRIx64 " written", v,
			   distinctive[i].value);
		else if (distinctive[i].index == MSR_TSC)
			ok(true, "blob: has the TSC (0x%" PRIx64 ")", v);
		else
			is_u64(v, distinctive[i].value, "blob: MSR %s", distinctive[i].name);
	}
	ok(blob_msr(blob, len, MSR_IA32_MCx_CTL(mce_banks_of(&mach) - 1), &v),
	   "blob: every bank's MSRs, up to MC%u_CTL", mce_banks_of(&mach) - 1);

	save_skips_missing(src.fd, blob, len);

	r = x86_state_load(&mach, dst.fd, blob, len, &e);
	if (!is_int(r, 0, "load into a vCPU of another VM: %s", r ? e.msg : "ok"))
		goto out;

	kabi_ioctl(src.fd, KVM_GET_REGS, &r1);
	kabi_ioctl(dst.fd, KVM_GET_REGS, &r2);
	same(&r1, &r2, sizeof(r1), "REGS");
	is_u64(r2.rip, GL_IMAGE + 0x1234, "REGS: rip");
	is_u64(r2.rax, 0x1111111111111111ULL, "REGS: rax");
	is_u64(r2.r15, 0xf0f0f0f0f0f0f0f0ULL, "REGS: r15");
	is_u64(r2.rflags, 0x256, "REGS: rflags");
	kabi_ioctl(src.fd, KVM_GET_SREGS, &s1);
	kabi_ioctl(dst.fd, KVM_GET_SREGS, &s2);
	same(&s1, &s2, sizeof(s1), "SREGS");
	is_u64(s2.efer & 0x500, 0x500, "SREGS: EFER.LME|LMA");
	get_xsave(src.fd, xs1);
	get_xsave(dst.fd, xs2);
	same(xs1, xs2, xsave_size, "XSAVE area");
	is_int(xs2[160] == 0xa5 && xs2[160 + 255] == (uint8_t)(0xa5 ^ 255), 1,
	       "XSAVE: XMM0..XMM15 as written");
	is_u64(le32(xs2 + 24), 0x7f80, "XSAVE: MXCSR");
	if (have_avx)
		is_int(xs2[576] == 0x3c && xs2[576 + 255] == (uint8_t)(0x3c + 255), 1,
		       "XSAVE: YMM upper halves as written");
	kabi_ioctl(src.fd, KVM_GET_XCRS, &x1);
	kabi_ioctl(dst.fd, KVM_GET_XCRS, &x2);
	same(&x1, &x2, sizeof(x1), "XCRS");
	is_u64(x2.xcrs[0].value, have_avx ? 0x7 : 0x3, "XCRS: XCR0");

	/* Every MSR of the blob reads back as saved; the TSC a little later. */
	r = kabi_ioctl_val(dst.fd, KVM_GET_TSC_KHZ, 0);
	tsc_khz = r > 0 ? (uint64_t)r : 4000000;
	mp = payload(blob, len, TAG_MSRS, NULL);
	for (uint32_t i = 0; mp && i < le32(mp); i++) {
		uint32_t index = le32(mp + 4 + 16 * i);

		saved = le64(mp + 4 + 16 * i + 8);
		if (get_msr(dst.fd, index, &v)) {
			tap_diag("MSR 0x%x: cannot read it back", index);
			mismatches++;
		} else if (index == MSR_TSC ? v < saved || v - saved > 60 * tsc_khz * 1000
					    : v != saved) {
			tap_diag("MSR 0x%x: 0x%" PRIx64 ", saved 0x%" PRIx64, index, v, saved);
			mismatches++;
		}
	}
	ok(mp && !mismatches, "MSRs: all %u read back as saved (TSC within 60 s after)",
	   mp ? le32(mp) : 0);
	for (size_t i = 0; i < NDISTINCTIVE; i++) {
		if (distinctive[i].index == MSR_TSC ||
		    (distinctive[i].index == MSR_TSC_AUX && get_msr(src.fd, MSR_TSC_AUX, &v)))
			continue;
		v = 0;
		get_msr(dst.fd, distinctive[i].index, &v);
		is_u64(v, distinctive[i].value, "MSR %s on the destination", distinctive[i].name);
	}
	if (tsc_set) {
		get_msr(dst.fd, MSR_TSC, &v);
		ok(v >= (1ULL << 40) && v - (1ULL << 40) < 60 * tsc_khz * 1000,
		   "MSR TSC on the destination goes on from the source's (0x%" PRIx64 ")", v);
	} else {
		tap_skip("MSR TSC on the destination goes on from the source's",
			 "this host's KVM ignores a host-initiated TSC write (wrote 0x%llx, "
			 "read 0x%" PRIx64 ")", 1ULL << 40, tsc_read);
	}

	kabi_ioctl(src.fd, KVM_GET_DEBUGREGS, &d1);
	kabi_ioctl(dst.fd, KVM_GET_DEBUGREGS, &d2);
	same(&d1, &d2, sizeof(d1), "DEBUGREGS");
	is_u64(d2.db[2], 0x3000, "DEBUGREGS: DR2");
	is_u64(d2.dr7 & 0xff, 0x55, "DEBUGREGS: DR7 L0-L3");
	kabi_ioctl(src.fd, KVM_GET_VCPU_EVENTS, &ev1);
	kabi_ioctl(dst.fd, KVM_GET_VCPU_EVENTS, &ev2);
	same(&ev1, &ev2, sizeof(ev1), "VCPU_EVENTS");
	ok(ev2.exception.nr == X86_VECTOR_MC && (ev2.exception.injected || ev2.exception.pending),
	   "VCPU_EVENTS: the #MC is still queued on the destination (nr %u)", ev2.exception.nr);
	is_int(ev2.nmi.masked, 1, "VCPU_EVENTS: NMIs masked");
	kabi_ioctl(src.fd, KVM_GET_MP_STATE, &mp1);
	kabi_ioctl(dst.fd, KVM_GET_MP_STATE, &mp2);
	is_int(mp2.mp_state, mp1.mp_state, "MP_STATE");
	is_int(mp2.mp_state, KVM_MP_STATE_RUNNABLE, "MP_STATE: runnable (no in-kernel LAPIC)");

	*blob_out = blob;
	*len_out = len;
	blob = NULL;
out:
	tvm_free(&src);
	tvm_free(&dst);
out_free:
	free(blob);
	free(xs1);
	free(xs2);
}

/* ---- 2. bad blobs change nothing -------------------------------------- */

/* What a failed load must leave as it was (not the TSC: it runs). */
struct snapshot {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dbg;
	uint64_t msr[4];
	uint8_t *xsave;
};

static const uint32_t snap_msrs[4] = {
	MSR_LSTAR, MSR_KERNEL_GS_BASE, MSR_IA32_MCG_STATUS, MSR_IA32_MCx_STATUS(BANK),
};

static void snap_take(int fd, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	kabi_ioctl(fd, KVM_GET_REGS, &s->regs);
	kabi_ioctl(fd, KVM_GET_SREGS, &s->sregs);
	kabi_ioctl(fd, KVM_GET_VCPU_EVENTS, &s->ev);
	kabi_ioctl(fd, KVM_GET_DEBUGREGS, &s->dbg);
	for (int i = 0; i < 4; i++)
		get_msr(fd, snap_msrs[i], &s->msr[i]);
	s->xsave = calloc(1, xsave_size);
	get_xsave(fd, s->xsave);
}

/* "" when unchanged, else what changed. */
static const char *snap_diff(int fd, const struct snapshot *before)
{
	struct snapshot now;
	const char *what = "";

	snap_take(fd, &now);
	if (memcmp(&now.regs, &before->regs, sizeof(now.regs)))
		what = "REGS";
	else if (memcmp(&now.sregs, &before->sregs, sizeof(now.sregs)))
		what = "SREGS";
	else if (memcmp(&now.ev, &before->ev, sizeof(now.ev)))
		what = "VCPU_EVENTS";
	else if (memcmp(&now.dbg, &before->dbg, sizeof(now.dbg)))
		what = "DEBUGREGS";
	else if (memcmp(now.msr, before->msr, sizeof(now.msr)))
		what = "MSRs";
	else if (memcmp(now.xsave, before->xsave, xsave_size))
		what = "XSAVE";
	free(now.xsave);
	return what;
}

/*
 * Loading b must fail with want (-EPROTO, -EINVAL), say so (naming `says`
 * when given) and leave fd as it was.
 */
static void refused_says(int fd, const struct x86_machine *m, const struct snapshot *before,
			 const void *b, size_t len, int want, const char *what, const char *says)
{
	struct vmm_error e = { "" };
	const char *changed;
	int r;

	r = x86_state_load(m, fd, b, len, &e);
	changed = snap_diff(fd, before);
	if (!ok(r == want && *changed == 0 && e.msg[0] && (!says || strstr(e.msg, says)),
		"%s: refused (%s), vCPU unchanged", what, e.msg))
		tap_diag("load returned %d (want %d, naming \"%s\"); changed: %s", r, want,
			 says ? says : "", *changed ? changed : "nothing");
}

static void refused(int fd, const struct x86_machine *m, const struct snapshot *before,
		    const void *b, size_t len, int want, const char *what)
{
	refused_says(fd, m, before, b, len, want, what, NULL);
}

static void test_bad_blobs(const uint8_t *good, size_t len)
{
	struct part parts[MAX_PARTS];
	unsigned int np = parts_of(good, len, parts);
	struct snapshot before;
	struct tvm dst, few;
	struct vmm_error e = { "" };
	struct kvm_regs regs;
	uint8_t *b = malloc(len + 64), *x;
	char what[160];
	size_t xlen;
	uint32_t plen;
	int r;

	if (tvm_create(&dst, &mach, false)) {
		ok(false, "bad blobs: a destination VM");
		free(b);
		return;
	}
	snap_take(dst.fd, &before);

	/* Truncated: inside the header, at every part boundary, inside every part. */
	refused(dst.fd, &mach, &before, good, 0, -EPROTO, "empty");
	refused(dst.fd, &mach, &before, good, 7, -EPROTO, "truncated inside the header");
	for (unsigned int i = 0; i < np && i < MAX_PARTS; i++) {
		static const char *const where[] = {
			"its start", "in its header", "its payload's start", "mid-payload",
		};
		size_t cut[] = { parts[i].off, parts[i].off + 5, parts[i].off + 8,
				 parts[i].off + 8 + parts[i].len / 2 };

		for (size_t k = 0; k < 4; k++) {
			snprintf(what, sizeof(what), "truncated at %zu (part %u, tag %u, %s)",
				 cut[k], i, parts[i].tag, where[k]);
			refused(dst.fd, &mach, &before, good, cut[k], -EPROTO, what);
		}
	}
	refused(dst.fd, &mach, &before, good, len - 1, -EPROTO, "last byte missing");
	memcpy(b, good, len);
	b[len] = 0;
	refused(dst.fd, &mach, &before, b, len + 1, -EPROTO, "one byte after the last part");

	memcpy(b, good, len);
	b[0] = 'Y';
	refused(dst.fd, &mach, &before, b, len, -EPROTO, "bad magic");
	memcpy(b, good, len);
	put32(b + 4, 2);
	refused(dst.fd, &mach, &before, b, len, -EPROTO, "version 2");
	memcpy(b, good, len);
	put32(b + 8, np + 1);
	refused(dst.fd, &mach, &before, b, len, -EPROTO, "nparts one more than there are");
	memcpy(b, good, len);
	put32(b + 8, np - 1);
	refused(dst.fd, &mach, &before, b, len, -EPROTO, "nparts one less than there are");

	/* Every part's length off by one either way. */
	for (unsigned int i = 0; i < np && i < MAX_PARTS; i++)
		for (int d = -1; d <= 1; d += 2) {
			memcpy(b, good, len);
			put32(b + parts[i].off + 4, parts[i].len + (uint32_t)d);
			snprintf(what, sizeof(what), "part %u (tag %u) length %u%+d", i,
				 parts[i].tag, parts[i].len, d);
			refused(dst.fd, &mach, &before, b, len, -EPROTO, what);
		}

	/* The MSR part's count. */
	x = payload((uint8_t *)good, len, TAG_MSRS, &plen);
	if (x) {
		size_t at = (size_t)(x - good);

		memcpy(b, good, len);
		put32(b + at, 1U << 30);
		refused(dst.fd, &mach, &before, b, len, -EPROTO, "MSR count 1 << 30");
		memcpy(b, good, len);
		put32(b + at, le32(good + at) - 1);
		refused(dst.fd, &mach, &before, b, len, -EPROTO,
			"MSR count one less than its part");
		memcpy(b, good, len);
		put32(b + at + 4 + 4, 1);
		refused(dst.fd, &mach, &before, b, len, -EPROTO, "MSR entry padding not zero");
		memcpy(b, good, len);
		put32(b + at + 4 + 16, le32(good + at + 4));
		refused(dst.fd, &mach, &before, b, len, -EPROTO, "an MSR twice");
		memcpy(b, good, len);
		put32(b + at + 4 + 16, 0x12345);
		refused(dst.fd, &mach, &before, b, len, -EINVAL, "an MSR KVM does not have");
	}

	/* Unknown tags. */
	for (int t = 0; t < 3; t++) {
		uint32_t tag = t == 0 ? 0 : t == 1 ? 11 : 0x99;

		memcpy(b, good, len);
		put32(b + parts[np - 1].off, tag);
		snprintf(what, sizeof(what), "unknown tag %u", tag);
		refused(dst.fd, &mach, &before, b, len, -EPROTO, what);
	}

	/* Parts missing, repeated, or both kinds of FPU state. */
	{
		struct kvm_regs r0 = { 0 };
		struct kvm_fpu fpu = { 0 };
		uint8_t big[8192] = { 0 };
		const struct {
			struct edit ed;
			const char *what;
		} edits[] = {
			{ { .tag = TAG_REGS, .drop = true }, "no REGS part" },
			{ { .tag = TAG_MSRS, .drop = true }, "no MSRS part" },
			{ { .tag = TAG_MP_STATE, .drop = true }, "no MP_STATE part" },
			{ { .tag = TAG_XSAVE, .drop = true }, "no XSAVE part" },
			{ { .add_tag = TAG_REGS, .add = &r0, .add_len = sizeof(r0) },
			  "REGS twice" },
			{ { .add_tag = TAG_FPU, .add = &fpu, .add_len = sizeof(fpu) },
			  "both XSAVE and FPU" },
			{ { .tag = TAG_XSAVE, .repl = big, .rlen = 4097 }, "XSAVE of 4097 bytes" },
			{ { .tag = TAG_XSAVE, .repl = big, .rlen = 2048 }, "XSAVE of 2048 bytes" },
		};

		for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
			x = rebuild(good, len, &edits[i].ed, &xlen);
			refused(dst.fd, &mach, &before, x, xlen, -EPROTO, edits[i].what);
			free(x);
		}
	}

	/* More banks than the destination has. */
	if (mce_banks_of(&mach) > 2) {
		struct x86_machine m = mach;
		struct snapshot fb;
		char want[96];

		m.mcg_cap = (mach.mcg_cap & ~MCG_BANKCNT_MASK) | (mce_banks_of(&mach) - 2);
		if (!tvm_create(&few, &m, false)) {
			snap_take(few.fd, &fb);
			r = x86_state_load(&m, few.fd, good, len, &e);
			snprintf(want, sizeof(want),
				 "vCPU state has %u machine-check banks, this VM has %u",
				 mce_banks_of(&mach), mce_banks_of(&m));
			is_int(r, -EINVAL, "more banks than the destination: refused");
			is_str(e.msg, want, "more banks than the destination: says so");
			is_str(snap_diff(few.fd, &fb), "", "more banks than the destination: "
							   "vCPU unchanged");
			free(fb.xsave);
			tvm_free(&few);
		} else {
			ok(false, "a VM with %u banks", mce_banks_of(&m));
		}
	} else {
		tap_skip("more banks than the destination", "this KVM gives %u banks",
			 mce_banks_of(&mach));
	}

	/* Well formed, but KVM refuses a value: whatever was set is put back. */
	x = payload((uint8_t *)good, len, TAG_MSRS, &plen);
	if (x) {
		size_t at = (size_t)(x - good);
		const struct {
			uint32_t index;
			uint64_t value;
			const char *what;
			const char *says;
		} vals[] = {
			{ MSR_LSTAR, 0x8000000000000000ULL, "a non-canonical LSTAR", "0xc0000082" },
			{ MSR_IA32_MCx_CTL(BANK), 5, "MC1_CTL = 5", "MC1_CTL" },
		};

		for (size_t v = 0; v < 2; v++) {
			bool found = false;

			memcpy(b, good, len);
			for (uint32_t i = 0; i < le32(good + at); i++)
				if (le32(b + at + 4 + 16 * i) == vals[v].index) {
					put64(b + at + 4 + 16 * i + 8, vals[v].value);
					found = true;
				}
			if (!found) {
				tap_skip(vals[v].what, "MSR 0x%x is not in the blob",
					 vals[v].index);
				continue;
			}
			snprintf(what, sizeof(what), "%s (KVM refuses it)", vals[v].what);
			refused_says(dst.fd, &mach, &before, b, len, -EINVAL, what, vals[v].says);
		}
	}
	x = payload((uint8_t *)good, len, TAG_XSAVE, &plen);
	if (x) {
		memcpy(b, good, len);
		/* XCOMP_BV bit 63: the compacted format, which KVM's ABI is not. */
		b[(x - good) + 520 + 7] = 0x80;
		refused(dst.fd, &mach, &before, b, len, -EINVAL, "an XSAVE header KVM refuses");
	}

	/* After all that, the good blob still loads into this vCPU. */
	r = x86_state_load(&mach, dst.fd, good, len, &e);
	is_int(r, 0, "the good blob then loads into the same vCPU: %s", r ? e.msg : "ok");
	kabi_ioctl(dst.fd, KVM_GET_REGS, &regs);
	is_u64(regs.rip, GL_IMAGE + 0x1234, "and its registers are the blob's");

	free(before.xsave);
	free(b);
	tvm_free(&dst);
}

/* ---- 3. in-kernel irqchip: the LAPIC part ----------------------------- */

static void test_lapic(const uint8_t *plain, size_t plain_len)
{
	struct tvm src, dst, plain_dst, irq_dst;
	struct kvm_lapic_state l1, l2;
	struct kvm_mp_state mp = { KVM_MP_STATE_HALTED };
	struct vmm_error e = { "" };
	struct snapshot before;
	void *blob = NULL;
	size_t len;
	uint8_t *p;
	int r;

	if (tvm_create(&src, &mach, true)) {
		tap_skip("in-kernel irqchip", "KVM_CREATE_IRQCHIP failed here");
		return;
	}
	if (tvm_create(&dst, &mach, true)) {
		ok(false, "irqchip: a destination VM");
		tvm_free(&src);
		return;
	}
	r = (int)kabi_ioctl(src.fd, KVM_GET_LAPIC, &l1);
	if (!is_int(r, 0, "irqchip: KVM_GET_LAPIC on the source"))
		goto out;
	put32((uint8_t *)l1.regs + 0x80, 0x30);		/* TPR */
	put32((uint8_t *)l1.regs + 0x320, 0x100ef);	/* LVT timer: masked, vector 0xef */
	put32((uint8_t *)l1.regs + 0x3e0, 0x3);		/* timer divide by 16 */
	r = (int)kabi_ioctl(src.fd, KVM_SET_LAPIC, &l1);
	if (!r)
		r = (int)kabi_ioctl(src.fd, KVM_SET_MP_STATE, &mp);
	if (!is_int(r, 0, "irqchip: source LAPIC and MP state (halted) set"))
		goto out;

	r = x86_state_save(&mach, src.fd, &blob, &len, &e);
	if (!is_int(r, 0, "irqchip: save: %s", r ? e.msg : "ok"))
		goto out;
	p = payload(blob, len, TAG_LAPIC, NULL);
	ok(p != NULL, "irqchip: the blob has a LAPIC part");
	p = payload(blob, len, TAG_MP_STATE, NULL);
	ok(p && le32(p) == KVM_MP_STATE_HALTED, "irqchip: the blob's MP state is halted");
	r = x86_state_load(&mach, dst.fd, blob, len, &e);
	if (!is_int(r, 0, "irqchip: load: %s", r ? e.msg : "ok"))
		goto out;
	kabi_ioctl(src.fd, KVM_GET_LAPIC, &l1);
	kabi_ioctl(dst.fd, KVM_GET_LAPIC, &l2);
	same(&l1, &l2, sizeof(l1), "irqchip: LAPIC registers");
	is_u64(le32((uint8_t *)l2.regs + 0x80), 0x30, "irqchip: TPR");
	is_u64(le32((uint8_t *)l2.regs + 0x320), 0x100ef, "irqchip: LVT timer");
	mp.mp_state = 0;
	kabi_ioctl(dst.fd, KVM_GET_MP_STATE, &mp);
	is_int(mp.mp_state, KVM_MP_STATE_HALTED, "irqchip: MP state halted on the destination");

	/* The machines must match: LAPIC or not. */
	if (!tvm_create(&plain_dst, &mach, false)) {
		snap_take(plain_dst.fd, &before);
		refused(plain_dst.fd, &mach, &before, blob, len, -EINVAL,
			"a blob with a LAPIC into a VM without an irqchip");
		free(before.xsave);
		tvm_free(&plain_dst);
	}
	if (plain && !tvm_create(&irq_dst, &mach, true)) {
		snap_take(irq_dst.fd, &before);
		refused(irq_dst.fd, &mach, &before, plain, plain_len, -EINVAL,
			"a blob without a LAPIC into a VM with an irqchip");
		free(before.xsave);
		tvm_free(&irq_dst);
	}
out:
	free(blob);
	tvm_free(&src);
	tvm_free(&dst);
}

int main(void)
{
	struct vmm_error e = { "" };
	uint8_t *blob = NULL;
	size_t len = 0;
	long r;

	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		tap_skip("x86 vCPU state", "no /dev/kvm: %s", strerror(errno));
		return tap_done();
	}
	if (x86_machine_init(&mach, kvm_fd, X86_CPU_HOST, &e)) {
		tap_skip("x86 vCPU state", "x86_machine_init: %s", e.msg);
		return tap_done();
	}
	r = kabi_ioctl_val(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	xsave_size = r > (long)sizeof(struct kvm_xsave) ? (uint32_t)r : sizeof(struct kvm_xsave);
	for (uint32_t i = 0; i < mach.cpuid->nent; i++)
		if (mach.cpuid->entries[i].function == 0xd && mach.cpuid->entries[i].index == 0)
			have_avx = mach.cpuid->entries[i].eax & 0x4;
	tap_diag("MCG_CAP 0x%" PRIx64 " (%u banks), XSAVE area %u bytes, AVX %s", mach.mcg_cap,
		 mce_banks_of(&mach), xsave_size, have_avx ? "yes" : "no");

	test_round_trip(&blob, &len);
	if (blob)
		test_bad_blobs(blob, len);
	else
		ok(false, "bad blobs: need the round trip's blob");
	test_lapic(blob, len);

	free(blob);
	x86_machine_destroy(&mach);
	close(kvm_fd);
	return tap_done();
}
