// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The self-checking test guest. Each vCPU fills its slice of RAM with a
 * pattern derived from every page's address and a generation, then verifies
 * and rewrites it pass after pass, and reports through the report port.
 * Its #MC handler does what a careful guest kernel does (see mc below).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabi/mce.h"
#include "layout.h"

#define PAGE_SIZE 4096ULL
#define WORDS_PER_PAGE (PAGE_SIZE / 8)
#define CR4_MCE (1ULL << 6)
#define MAX_RETIRED 512
/* Poll the banks every this many pages (Linux's poller runs every few minutes). */
#define POLL_PAGES 64
#define MAX_PENDING 32 /* one per bank */

/* Saved by exc_common in start.S, lowest address first. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* Per-vCPU state, at a fixed place in the vCPU's own area. */
struct cpu_state {
	uint32_t cpu;
	uint32_t mce_banks;
	uint64_t machine_checks;
	uint64_t polled;	/* errors found by polling the banks */
	bool amd;		/* CPUID vendor AuthenticAMD or HygonGenuine */
	const struct gl_boot_info *bi;
	/* What a #MC handler retired while this vCPU held retired_lock. */
	uint32_t npending;
	struct {
		uint64_t gpa, size;
	} pending[MAX_PENDING];
};

#define PERCPU_STATE 0x2000ULL
#define MSG_SLOT_MAIN 0
#define MSG_SLOT_MC 1 /* the #MC handler reports through its own slot */

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

extern const uint64_t exc_stubs[32];
extern char mc_scan_insn[], mc_scan_insn_end[], mc_scan_fixup[];
extern char fill_insn[], fill_insn_end[], fill_fixup[];
long mc_scan(const void *p, unsigned long nwords, uint64_t value);
long fill_words(void *p, unsigned long nwords, uint64_t value);
void guest_main(uint32_t cpu, const struct gl_boot_info *bi);
void exception_dispatch(struct exc_frame *f);

/* Pages the guest no longer uses, shared by all vCPUs. */
static struct {
	uint64_t gpa, size;
} retired[MAX_RETIRED];
static uint32_t nretired;
static uint32_t retired_lock;

/* gcc may emit calls to these even in freestanding code. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	asm volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
		     : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t r[4])
{
	asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static inline uint64_t read_cr2(void)
{
	uint64_t v;

	asm volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}

static __attribute__((noreturn)) void halt_forever(void)
{
	for (;;)
		asm volatile("cli; hlt" ::: "memory");
}

static uint64_t percpu_base(uint32_t cpu)
{
	return GL_PERCPU + cpu * GL_PERCPU_SIZE;
}

/* Which vCPU am I? My stack lives in my per-vCPU area. */
static struct cpu_state *this_cpu(void)
{
	uint64_t sp = (uint64_t)__builtin_frame_address(0);
	uint64_t cpu = (sp - GL_PERCPU) / GL_PERCPU_SIZE;

	return (struct cpu_state *)(percpu_base((uint32_t)cpu) + PERCPU_STATE);
}

static void report(struct cpu_state *cs, int slot, uint32_t type, uint64_t a0,
		   uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
	volatile struct gl_msg *m = (struct gl_msg *)(percpu_base(cs->cpu) +
						      GL_PERCPU_MSG) + slot;

	m->type = type;
	m->vcpu = cs->cpu;
	m->a[0] = a0;
	m->a[1] = a1;
	m->a[2] = a2;
	m->a[3] = a3;
	m->a[4] = a4;
	m->a[5] = a5;
	m->a[6] = 0;
	asm volatile("outl %0, %1" ::"a"((uint32_t)(uintptr_t)m), "Nd"(GL_REPORT_PORT)
		     : "memory");
}

static bool is_retired(uint64_t gpa)
{
	uint32_t n = __atomic_load_n(&nretired, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < n; i++)
		if (gpa - retired[i].gpa < retired[i].size)
			return true;
	return false;
}

/* With retired_lock held: add the range unless it is retired already. */
static bool retire_locked(uint64_t gpa, uint64_t size)
{
	if (is_retired(gpa) || nretired >= MAX_RETIRED)
		return false;
	retired[nretired].gpa = gpa;
	retired[nretired].size = size;
	__atomic_store_n(&nretired, nretired + 1, __ATOMIC_RELEASE);
	return true;
}

/*
 * Stop using [gpa, gpa+size); report it once (through the caller's slot).
 * retired_lock holds the owning vCPU's index + 1. The bank poller retires
 * from normal code, so a #MC can arrive while its own vCPU holds the lock:
 * the handler must not spin then (it would wait for itself), it leaves
 * the range in the vCPU's pending list, which the interrupted retire()
 * takes over before it returns to the code that checks is_retired().
 */
static void retire(struct cpu_state *cs, int slot, uint64_t gpa, uint64_t size)
{
	uint32_t me = cs->cpu + 1, free_ = 0;
	bool added;

	if (__atomic_load_n(&retired_lock, __ATOMIC_ACQUIRE) == me) {
		uint32_t n = cs->npending;

		if (n < MAX_PENDING) {
			cs->pending[n].gpa = gpa;
			cs->pending[n].size = size;
			__atomic_store_n(&cs->npending, n + 1, __ATOMIC_SEQ_CST);
		}
		return;
	}
	while (!__atomic_compare_exchange_n(&retired_lock, &free_, me, false, __ATOMIC_ACQUIRE,
					    __ATOMIC_RELAXED))
		free_ = 0;
	added = retire_locked(gpa, size);
	/* (sequentially consistent: the pending list is read after this) */
	__atomic_store_n(&retired_lock, 0, __ATOMIC_SEQ_CST);
	if (added)
		report(cs, slot, GL_MSG_RETIRED, gpa, size, 0, 0, 0, 0);
	/* The lock is free again: no #MC handler adds to the list now. */
	for (uint32_t n; (n = __atomic_load_n(&cs->npending, __ATOMIC_SEQ_CST)) != 0;) {
		uint64_t g = cs->pending[n - 1].gpa, sz = cs->pending[n - 1].size;

		__atomic_store_n(&cs->npending, n - 1, __ATOMIC_SEQ_CST);
		retire(cs, slot, g, sz);
	}
}

/*
 * Retire the memory a valid bank names: MCi_ADDR with the granularity
 * MCi_MISC gives (address mode physical, LSB field; a page without MISC,
 * as Linux assumes).
 */
static void retire_bank(struct cpu_state *cs, int slot, uint64_t st, uint64_t addr, uint64_t misc)
{
	unsigned int lsb = 12;

	if (!(st & MCI_STATUS_ADDRV))
		return;
	if ((st & MCI_STATUS_MISCV) &&
	    ((misc & MCI_MISC_ADDR_MODE_MASK) >> MCI_MISC_ADDR_MODE_SHIFT) == MCI_MISC_ADDR_PHYS)
		lsb = (unsigned int)(misc & MCI_MISC_LSB_MASK);
	if (lsb < 12)
		lsb = 12;
	if (lsb < 40)
		retire(cs, slot, addr & ~((1ULL << lsb) - 1), 1ULL << lsb);
}

/*
 * What Linux's machine_check_poll does, every POLL_PAGES pages from the
 * main loop: take the banks that hold a valid error that raised no #MC
 * (VAL set, UC clear): on AMD, a deferred error (an uncorrectable error
 * found by a scrub, with POISON when the data is poisoned) comes only
 * this way. Report it, retire what it names, clear the bank. An UC error
 * is left to the #MC handler. Cheap: one RDMSR per bank.
 */
static void poll_banks(struct cpu_state *cs)
{
	for (uint32_t i = 0; i < cs->mce_banks; i++) {
		uint64_t st = rdmsr(MSR_IA32_MCx_STATUS(i)), addr = 0, misc = 0;

		if ((st & (MCI_STATUS_VAL | MCI_STATUS_UC)) != MCI_STATUS_VAL)
			continue;
		if (st & MCI_STATUS_ADDRV)
			addr = rdmsr(MSR_IA32_MCx_ADDR(i));
		if (st & MCI_STATUS_MISCV)
			misc = rdmsr(MSR_IA32_MCx_MISC(i));
		cs->polled++;
		report(cs, MSG_SLOT_MAIN, GL_MSG_POLLED, i, st, addr, misc,
		       rdmsr(MSR_IA32_MCG_STATUS), 0);
		retire_bank(cs, MSG_SLOT_MAIN, st, addr, misc);
		wrmsr(MSR_IA32_MCx_STATUS(i), 0);
	}
}

/*
 * What a careful guest kernel does on #MC: read MCG_STATUS and every bank,
 * record each valid entry, retire the memory MCi_ADDR names with the
 * granularity MCi_MISC gives, clear the banks and MCIP, and resume only if
 * RIPV says the interrupted context can continue. If the interrupted
 * instruction was the machine-check-safe scan or the page fill, resume at
 * its fixup so the poisoned data is never used (the caller looks again,
 * or fills again, unless the page was retired).
 */
static void machine_check(struct exc_frame *f, struct cpu_state *cs)
{
	uint64_t mcg_status = rdmsr(MSR_IA32_MCG_STATUS);
	uint32_t banks = (uint32_t)(rdmsr(MSR_IA32_MCG_CAP) & MCG_BANKCNT_MASK);
	bool action_required = false;

	cs->machine_checks++;
	for (uint32_t i = 0; i < banks; i++) {
		uint64_t st = rdmsr(MSR_IA32_MCx_STATUS(i)), addr = 0, misc = 0;

		if (!(st & MCI_STATUS_VAL))
			continue;
		if (st & MCI_STATUS_ADDRV)
			addr = rdmsr(MSR_IA32_MCx_ADDR(i));
		if (st & MCI_STATUS_MISCV)
			misc = rdmsr(MSR_IA32_MCx_MISC(i));
		report(cs, MSG_SLOT_MC, GL_MSG_MCE, i, st, addr, misc, mcg_status, f->rip);
		retire_bank(cs, MSG_SLOT_MC, st, addr, misc);
		/*
		 * Intel says so with MCi_STATUS.AR; AMD has no AR bit: there
		 * an uncorrected error that raised #MC is about the interrupted
		 * access (Linux's AMD severity grades it action required).
		 */
		if ((st & MCI_STATUS_AR) || (cs->amd && (st & MCI_STATUS_UC)))
			action_required = true;
		wrmsr(MSR_IA32_MCx_STATUS(i), 0);
	}
	wrmsr(MSR_IA32_MCG_STATUS, 0);
	if (!(mcg_status & MCG_STATUS_RIPV)) {
		report(cs, MSG_SLOT_MC, GL_MSG_UNRECOVERABLE, mcg_status, f->rip, 0, 0, 0, 0);
		halt_forever();
	}
	/* Only an action-required error is about the interrupted access itself. */
	if (action_required && f->rip >= (uint64_t)mc_scan_insn &&
	    f->rip <= (uint64_t)mc_scan_insn_end)
		f->rip = (uint64_t)mc_scan_fixup;
	else if (action_required && f->rip >= (uint64_t)fill_insn &&
		 f->rip <= (uint64_t)fill_insn_end)
		f->rip = (uint64_t)fill_fixup;
}

void exception_dispatch(struct exc_frame *f)
{
	struct cpu_state *cs = this_cpu();

	if (f->vector == X86_VECTOR_MC) {
		machine_check(f, cs);
		return;
	}
	report(cs, MSG_SLOT_MC, GL_MSG_EXCEPTION, f->vector, f->error, f->rip,
	       f->vector == 14 ? read_cr2() : 0, 0, 0);
	halt_forever();
}

static void setup_idt(uint32_t cpu)
{
	struct idt_entry *idt = (struct idt_entry *)(percpu_base(cpu) + GL_PERCPU_IDT);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { 32 * sizeof(*idt) - 1, (uint64_t)idt };

	for (int v = 0; v < 32; v++) {
		uint64_t h = exc_stubs[v];

		idt[v] = (struct idt_entry){
			.off_lo = (uint16_t)h, .sel = GL_SEL_CODE, .type = 0x8e,
			.off_mid = (uint16_t)(h >> 16), .off_hi = (uint32_t)(h >> 32),
		};
	}
	asm volatile("lidt %0" ::"m"(idtr));
}

/* Enable machine checks as a guest kernel would: CR4.MCE, all banks on. */
static void setup_mce(struct cpu_state *cs)
{
	uint64_t cap = rdmsr(MSR_IA32_MCG_CAP), cr4;

	cs->mce_banks = (uint32_t)(cap & MCG_BANKCNT_MASK);
	if (cap & MCG_CTL_P)
		wrmsr(MSR_IA32_MCG_CTL, ~0ULL);
	for (uint32_t i = 0; i < cs->mce_banks; i++)
		wrmsr(MSR_IA32_MCx_CTL(i), ~0ULL);
	if (cs->bi->flags & GL_BOOT_NO_MCE)
		return;
	asm volatile("mov %%cr4, %0" : "=r"(cr4));
	asm volatile("mov %0, %%cr4" ::"r"(cr4 | CR4_MCE));
}

/*
 * The next page after p this guest checks: every page, or when sampling
 * every sample-th one and the must[] pages (without walking the others:
 * each skipped page would cost emulated instructions).
 */
static uint64_t next_page(const struct gl_boot_info *bi, uint64_t start, uint64_t p)
{
	uint64_t step = bi->sample > 1 ? bi->sample * PAGE_SIZE : PAGE_SIZE;
	uint64_t next = start + ((p - start) / step + 1) * step;

	if (bi->sample > 1)
		for (int i = 0; i < GL_MUST_MAX; i++)
			if (bi->must[i] > p && bi->must[i] < next)
				next = bi->must[i];
	return next;
}

/*
 * Poll once every POLL_PAGES pages of the slice the guest has gone
 * through, checked or (when sampling) stepped over: a sampling guest,
 * which checks few pages, still polls before it has gone far.
 */
static void poll_progress(struct cpu_state *cs, uint64_t *since, uint64_t pages)
{
	*since += pages;
	if (*since >= POLL_PAGES) {
		*since = 0;
		poll_banks(cs);
	}
}

/*
 * What CPUID says: the vendor (whose machine-check rules apply), and for
 * the VMM's record the signature and AMD's RAS bits (0x80000007 EBX:
 * OverflowRecov, SUCCOR).
 */
static void read_cpuid(struct cpu_state *cs, uint64_t a[6])
{
	uint32_t r[4], ext_max;

	cpuid(0, r);
	a[0] = r[0];
	a[1] = r[1] | (uint64_t)r[3] << 32;
	a[2] = r[2];
	/* "Auth" "enti" "cAMD", "Hygo" "nGen" "uine" */
	cs->amd = (r[1] == 0x68747541 && r[3] == 0x69746e65 && r[2] == 0x444d4163) ||
		  (r[1] == 0x6f677948 && r[3] == 0x6e65476e && r[2] == 0x656e6975);
	cpuid(1, r);
	a[3] = r[0];
	cpuid(0x80000000, r);
	ext_max = r[0];
	a[4] = ext_max;
	a[5] = 0;
	if (ext_max >= 0x80000007 && ext_max < 0x8000ffff) {
		cpuid(0x80000007, r);
		a[5] = r[1];
	}
}

void guest_main(uint32_t cpu, const struct gl_boot_info *bi)
{
	struct cpu_state *cs = (struct cpu_state *)(percpu_base(cpu) + PERCPU_STATE);
	uint64_t pages, first, start, end, gen = 1, id[6], since_poll = 0;
	uint64_t total_verified = 0, total_corrupted = 0;

	*cs = (struct cpu_state){ .cpu = cpu, .bi = bi };
	read_cpuid(cs, id);
	setup_idt(cpu);
	setup_mce(cs);

	/* An equal share of whole pages; the last vCPU takes the remainder. */
	pages = (bi->data_end - bi->data_start) / PAGE_SIZE;
	first = pages / bi->nr_vcpus * cpu;
	start = bi->data_start + first * PAGE_SIZE;
	end = cpu + 1 == bi->nr_vcpus ? bi->data_start + pages * PAGE_SIZE
				      : start + pages / bi->nr_vcpus * PAGE_SIZE;
	pages = (end - start) / PAGE_SIZE;
	if (bi->sample > 1) {
		uint64_t n = (pages + bi->sample - 1) / bi->sample;

		for (int i = 0; i < GL_MUST_MAX; i++)
			n += bi->must[i] >= start && bi->must[i] < end &&
			     ((bi->must[i] - start) / PAGE_SIZE) % bi->sample != 0;
		pages = n;
	}
	report(cs, 0, GL_MSG_STARTED, start, end, pages, cs->mce_banks, 0, 0);
	report(cs, 0, GL_MSG_CPUID, id[0], id[1], id[2], id[3], id[4], id[5]);

	if (!(bi->flags & GL_BOOT_HOST_FILLED))
		for (uint64_t p = start; p < end; p += PAGE_SIZE) {
			poll_progress(cs, &since_poll, 1);
			while (fill_words((void *)p, WORDS_PER_PAGE, gl_pattern(p, gen, bi->seed)) == -2 &&
			       !is_retired(p))
				;
		}

	for (uint32_t pass = 1; pass <= bi->passes; pass++) {
		uint64_t verified = 0, corrupted = 0, skipped = 0;

		/* The first page is always checked: start is a stride boundary. */
		for (uint64_t p = start, prev = start; p < end; prev = p, p = next_page(bi, start, p)) {
			uint64_t want = gl_pattern(p, gen, bi->seed);
			long r;

			poll_progress(cs, &since_poll, p == start ? 1 : (p - prev) / PAGE_SIZE);
			if (is_retired(p)) {
				skipped++;
				continue;
			}
			/* Cut short (-2) by a machine check about another page: look again. */
			do
				r = mc_scan((const void *)p, WORDS_PER_PAGE, want);
			while (r == -2 && !is_retired(p));
			/* A machine check named this page: what was read is void. */
			if (is_retired(p)) {
				skipped++;
				continue;
			}
			if (r >= 0) {
				uint64_t got = ((volatile uint64_t *)p)[r];
				uint64_t diff = got ^ want;
				uint64_t off = (uint64_t)r * 8 +
					       (diff ? (uint64_t)__builtin_ctzll(diff) / 8 : 0);

				report(cs, 0, GL_MSG_CORRUPTED, p, off, want, got, pass, 0);
				corrupted++;
			} else {
				verified++;
			}
			/*
			 * Cut short by a machine check about another page (an
			 * injected AR names any page, whatever this vCPU was
			 * doing): fill it again, or the rest keeps the old pattern.
			 */
			while (fill_words((void *)p, WORDS_PER_PAGE, gl_pattern(p, gen + 1, bi->seed)) ==
				       -2 &&
			       !is_retired(p))
				;
		}
		gen++;
		poll_banks(cs);
		total_verified += verified;
		total_corrupted += corrupted;
		report(cs, 0, GL_MSG_PASS_DONE, pass, verified, corrupted, skipped, gen, 0);
	}
	report(cs, 0, GL_MSG_DONE, bi->passes, total_verified, total_corrupted,
	       cs->machine_checks, cs->polled, 0);
	halt_forever();
}
