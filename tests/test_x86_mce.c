// SPDX-License-Identifier: GPL-2.0-or-later
/* The machine-check encoder, bit for bit. */
#include <errno.h>

#include <stdbool.h>

#include "tap.h"
#include "vmras/x86_mce.h"

/*
 * AMD, as Linux 6.1's mce_severity_amd and amd_mce_usable_address grade it
 * (and QEMU's kvm_mce_inject sends it): an AO is a deferred error with
 * POISON (no UC: no #MC, found by the poller; POISON makes the address
 * usable, so early kill works); an AR is UC with POISON, which Linux
 * recovers from in user context only with SUCCOR (the VMM offers it).
 */
static void test_amd(void)
{
	struct vmras_mce_params p = { .type = VMRAS_MCE_SRAO, .gpa = 0x600123, .lsb = 12,
				      .bank = 9, .amd = true };
	struct vmras_x86_mce m;

	vmras_x86_mce_encode(&p, &m);
	is_u64(m.status, 0x9c00180000000000ULL,
	       "AMD AO: VAL|EN|MISCV|ADDRV|DEFERRED|POISON, no UC (no #MC: polled)");
	ok(!(m.status & (1ULL << 61)) && (m.status & (1ULL << 44)) && (m.status & (1ULL << 43)),
	   "AMD AO: Linux grades it MCE_DEFERRED_SEVERITY, its address usable (POISON)");
	is_u64(m.mcg_status, 0x5, "AMD AO MCG_STATUS RIPV|MCIP");
	is_u64(m.addr, 0x600000, "AMD AO addr: the page");
	is_u64(m.misc, 0x8c, "AMD AO misc: LSB 12");
	p.type = VMRAS_MCE_SRAR;
	p.eipv = true;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.status, 0xbc00080000000000ULL, "AMD AR: VAL|UC|EN|MISCV|ADDRV|POISON");
	ok(!(m.status & ((1ULL << 57) | (1ULL << 62) | (1ULL << 44))),
	   "AMD AR: no PCC, no OVER, not deferred (else Linux panics or only logs it)");
	is_u64(m.mcg_status, 0x7, "AMD AR MCG_STATUS RIPV|EIPV|MCIP");
}

/* The delivery plans, bit for bit: who gets what, in which order. */
static void test_plans(void)
{
	struct vmras_x86_config intel = { .mcg_cap = (1ULL << 24) | (1ULL << 8) | 10 };
	struct vmras_x86_config amd = intel;
	struct vmras_x86_error e = { .type = VMRAS_MCE_SRAR, .gpa = 0x1234567, .lsb = 12,
				     .target = 1 };
	struct vmras_x86_plan_step s[8];
	bool online[3] = { true, true, true };
	int n;

	amd.vendor = VMRAS_X86_AMD;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	is_int(n, 3, "Intel SRAR, 3 vCPUs: 3 machine checks");
	ok(n == 3 && s[0].vcpu == 0 && s[0].bystander && s[1].vcpu == 2 && s[1].bystander &&
	   s[2].vcpu == 1 && !s[2].bystander, "bystanders first (vCPU 0, 2), then the target");
	is_u64(s[0].mce.status, 0xa000000000000000ULL, "bystander: VAL|UC");
	is_u64(s[0].mce.mcg_status, 0x5, "bystander: RIPV|MCIP");
	is_int(s[0].mce.bank, 1, "bystander: bank 1");
	is_u64(s[2].mce.status, 0xbd80000000000134ULL, "target: SRAR");
	is_u64(s[2].mce.mcg_status, 0x7, "target: RIPV|EIPV|MCIP (EIPV always)");
	is_u64(s[2].mce.addr, 0x1234000, "target: the page");
	is_int(s[2].mce.bank, 9, "target: the last bank");

	online[0] = false;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	ok(n == 2 && s[0].vcpu == 2 && s[1].vcpu == 1, "a stopped vCPU gets no copy");
	online[0] = true;

	e.type = VMRAS_MCE_SRAO;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	ok(n == 3 && s[2].mce.status == 0xbd000000000000c0ULL && s[2].mce.mcg_status == 0x5,
	   "Intel SRAO: broadcast too, target RIPV|MCIP");

	e.type = VMRAS_MCE_SRAR;
	e.guest_lmce = true;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	is_int(n, 3, "guest LMCE without MCG_LMCE_P offered: still broadcast");
	intel.mcg_cap |= 1ULL << 27;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	ok(n == 1 && s[0].vcpu == 1 && s[0].mce.mcg_status == 0xf,
	   "LMCE enabled and offered: local, MCG_STATUS RIPV|EIPV|MCIP|LMCES");
	e.guest_lmce = false;

	n = vmras_x86_plan(&amd, &e, 3, online, s, 8);
	ok(n == 1 && s[0].vcpu == 1 && s[0].mce.status == 0xbc00080000000000ULL &&
	   s[0].mce.mcg_status == 0x7, "AMD SRAR: the target only (AMD machine checks are local)");
	e.type = VMRAS_MCE_SRAO;
	n = vmras_x86_plan(&amd, &e, 3, online, s, 8);
	ok(n == 1 && s[0].mce.status == 0x9c00180000000000ULL, "AMD SRAO: one deferred error");

	intel.no_broadcast = true;
	n = vmras_x86_plan(&intel, &e, 3, online, s, 8);
	is_int(n, 1, "no_broadcast: the target only");
	e.target = 3;
	is_int(vmras_x86_plan(&intel, &e, 3, online, s, 8), -EINVAL, "a target past the vCPUs: -EINVAL");
	e.target = 0;
	intel.mcg_cap &= ~0xffULL;
	is_int(vmras_x86_plan(&intel, &e, 3, online, s, 8), -EINVAL, "no banks: -EINVAL");
}

int main(void)
{
	struct vmras_x86_mce m;
	struct vmras_mce_params p = { .type = VMRAS_MCE_SRAO, .gpa = 0x600123, .lsb = 12, .bank = 9 };

	is_int(vmras_x86_mce_encode(&p, &m), 0, "SRAO encodes");
	/* VAL|UC|EN|MISCV|ADDRV|S, MCA code 0xC0 (memory scrub) */
	is_u64(m.status, 0xbd000000000000c0ULL, "SRAO status VAL|UC|EN|MISCV|ADDRV|S|0xc0");
	is_u64(m.addr, 0x600000, "SRAO addr: the 4 KiB page");
	is_u64(m.misc, 0x8c, "SRAO misc: physical address mode, LSB 12 (QEMU's 0x8c)");
	is_u64(m.mcg_status, 0x5, "SRAO MCG_STATUS RIPV|MCIP");
	is_int(m.bank, 9, "bank 9");

	p.type = VMRAS_MCE_SRAR;
	p.eipv = true;
	is_int(vmras_x86_mce_encode(&p, &m), 0, "SRAR encodes");
	is_u64(m.status, 0xbd80000000000134ULL, "SRAR status adds AR, MCA code 0x134");
	is_u64(m.mcg_status, 0x7, "SRAR MCG_STATUS RIPV|EIPV|MCIP");
	is_u64(m.misc, 0x8c, "SRAR misc LSB 12");

	p.lmce = true;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.mcg_status, 0xf, "SRAR local: LMCES set");

	p = (struct vmras_mce_params){ .type = VMRAS_MCE_SRAO, .gpa = 0x40345678, .lsb = 21, .bank = 9 };
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.addr, 0x40200000, "2 MiB loss: addr aligned to 2 MiB");
	is_u64(m.misc, 0x95, "2 MiB loss: LSB 21");
	p.lsb = 30;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.addr, 0x40000000, "1 GiB loss: addr aligned to 1 GiB");
	is_u64(m.misc, 0x9e, "1 GiB loss: LSB 30");

	p = (struct vmras_mce_params){ .type = VMRAS_MCE_BROADCAST, .bank = 1 };
	is_int(vmras_x86_mce_encode(&p, &m), 0, "broadcast encodes");
	is_u64(m.status, 0xa000000000000000ULL, "broadcast status VAL|UC only");
	is_u64(m.addr | m.misc, 0, "broadcast: no address");
	is_u64(m.mcg_status, 0x5, "broadcast MCG_STATUS RIPV|MCIP");

	m.status = 42;
	p = (struct vmras_mce_params){ .type = VMRAS_MCE_SRAO, .lsb = 11 };
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "LSB below 12 refused");
	is_u64(m.status, 42, "output untouched on error");
	p.lsb = 12;
	p.bank = 32;
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "bank 32 refused");
	p.bank = 0;
	p.type = (enum vmras_mce_type)7;
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "unknown type refused");

	test_amd();
	test_plans();
	return tap_done();
}
