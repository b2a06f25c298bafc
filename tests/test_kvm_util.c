// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The real-KVM harness (kvm_util.h) against this kernel's KVM: a guest
 * runs and OUTs; a write to a read-only memslot exits as MMIO and leaves
 * the RAM alone; a machine check set with KVM_X86_SET_MCE reaches the
 * guest's #MC handler with exactly the values injected, and a guest that
 * keeps MCG_STATUS.MCIP set is seen to by KVM_GET_MSRS.
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "kabi/mce.h"
#include "kvm_util.h"
#include "tap.h"

#define CODE_GPA 0x1000
#define RAM_SIZE 0x10000
#define RO_GPA 0x10000
#define RO_SIZE 0x1000
#define MAX_EXITS 1000

/*
 * 1000: mov eax, 0xdeadbeef	66 b8 ef be ad de
 * 1006: out 0x10, eax		66 e7 10
 * 1009: hlt			f4
 */
static const uint8_t hello_code[] = {
	0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde,
	0x66, 0xe7, 0x10,
	0xf4,
};

/*
 * 1000: mov ax, 0x1000		b8 00 10
 * 1003: mov ds, ax		8e d8		; DS base 0x10000: the read-only slot
 * 1005: mov al, [0x10]		a0 10 00
 * 1008: out 0x10, al		e6 10		; what the slot holds
 * 100a: mov byte [0x10], 0x5a	c6 06 10 00 5a	; a write: KVM_EXIT_MMIO
 * 100f: out 0x11, al		e6 11
 * 1011: hlt			f4
 */
static const uint8_t readonly_code[] = {
	0xb8, 0x00, 0x10,
	0x8e, 0xd8,
	0xa0, 0x10, 0x00,
	0xe6, 0x10,
	0xc6, 0x06, 0x10, 0x00, 0x5a,
	0xe6, 0x11,
	0xf4,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void test_hello(void)
{
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	uint8_t *ram;
	int err;

	if (!is_int(kvmt_vm_create(&vm), 0, "hello: KVM_CREATE_VM") ||
	    !is_int(kvmt_vm_add_ram(vm, 0, 0, RAM_SIZE, 0, (void **)&ram), 0,
		    "hello: 64 KiB of RAM at GPA 0, slot 0"))
		goto out;
	memcpy(ram + CODE_GPA, hello_code, sizeof(hello_code));
	is_int(kvmt_vcpu_create(vm, 1, 0x10000, &vcpu), -EINVAL,
	       "hello: an entry point above 64 KiB is refused");
	if (!is_int(kvmt_vcpu_create(vm, 0, CODE_GPA, &vcpu), 0,
		    "hello: a real-mode vCPU at 0x%x", CODE_GPA))
		goto out;
	err = kvmt_vcpu_run(vcpu);
	is_int(err, 0, "hello: KVM_RUN");
	ok(kvmt_exit_is_out(vcpu->run, 0x10), "hello: the guest OUTs to port 0x10 (exit %u)",
	   vcpu->run->exit_reason);
	is_int(vcpu->run->io.size, 4, "hello: a 32-bit OUT");
	is_u64(kvmt_io_value(vcpu->run), 0xdeadbeef, "hello: the value OUT");
	err = kvmt_vcpu_run(vcpu);
	ok(!err && vcpu->run->exit_reason == KVM_EXIT_HLT, "hello: then HLT (err %d, exit %u)",
	   err, vcpu->run->exit_reason);
out:
	kvmt_vm_free(vm);
}

static void test_readonly(void)
{
	struct kvmt_vm *vm = NULL;
	struct kvmt_vcpu *vcpu;
	uint8_t *ram, *ro = NULL;
	int err;

	if (!is_int(kvmt_vm_create(&vm), 0, "readonly: KVM_CREATE_VM") ||
	    !is_int(kvmt_vm_add_ram(vm, 0, 0, RAM_SIZE, 0, (void **)&ram), 0,
		    "readonly: RAM at GPA 0") ||
	    !is_int(kvmt_vm_add_ram(vm, 1, RO_GPA, RO_SIZE, KVM_MEM_READONLY, (void **)&ro), 0,
		    "readonly: a KVM_MEM_READONLY slot at 0x%x", RO_GPA))
		goto out;
	memset(ro, 0xa5, RO_SIZE);
	memcpy(ram + CODE_GPA, readonly_code, sizeof(readonly_code));
	if (!is_int(kvmt_vcpu_create(vm, 0, CODE_GPA, &vcpu), 0, "readonly: vCPU"))
		goto out;

	err = kvmt_vcpu_run(vcpu);
	ok(!err && kvmt_exit_is_out(vcpu->run, 0x10), "readonly: the guest reads the slot");
	is_u64(kvmt_io_value(vcpu->run), 0xa5, "readonly: and sees its bytes");
	err = kvmt_vcpu_run(vcpu);
	ok(!err && vcpu->run->exit_reason == KVM_EXIT_MMIO,
	   "readonly: a guest write exits as KVM_EXIT_MMIO (err %d, exit %u)", err,
	   vcpu->run->exit_reason);
	if (vcpu->run->exit_reason == KVM_EXIT_MMIO) {
		is_int(vcpu->run->mmio.is_write, 1, "readonly: is_write");
		is_u64(vcpu->run->mmio.phys_addr, RO_GPA + 0x10, "readonly: at the GPA written");
		is_int(vcpu->run->mmio.len, 1, "readonly: one byte");
		is_u64(vcpu->run->mmio.data[0], 0x5a, "readonly: with the value written");
	}
	err = kvmt_vcpu_run(vcpu);
	ok(!err && kvmt_exit_is_out(vcpu->run, 0x11), "readonly: the guest goes on after the exit");
	is_u64(ro[0x10], 0xa5, "readonly: the RAM behind the slot is unchanged");
out:
	kvmt_vm_free(vm);
}

/* One #MC into the last bank; the guest's handler must report it as sent. */
static bool deliver_mc(struct kvmt_mc_vm *f, const struct kvm_x86_mce *mce, const char *name)
{
	uint32_t before = f->area->mc_count;
	int err;

	if (!is_int(kvmt_vcpu_set_mce(f->vcpu, mce), 0, "%s: KVM_X86_SET_MCE", name))
		return false;
	err = kvmt_vcpu_run_to_out(f->vcpu, KVMT_MC_PORT_MC, MAX_EXITS);
	if (!is_int(err, 0, "%s: the guest's #MC handler runs (exit %u)", name,
		    f->vcpu->run->exit_reason))
		return false;
	is_int(f->area->mc_count, before + 1, "%s: one machine check taken", name);
	is_u64(kvmt_io_value(f->vcpu->run), (uint16_t)(before + 1), "%s: its count OUT", name);
	is_u64(f->area->mcg_status, mce->mcg_status, "%s: the guest reads MCG_STATUS", name);
	is_u64(f->area->status, mce->status, "%s: the guest reads MCi_STATUS", name);
	is_u64(f->area->addr, mce->addr, "%s: the guest reads MCi_ADDR", name);
	is_u64(f->area->misc, mce->misc, "%s: the guest reads MCi_MISC", name);
	return true;
}

static void test_machine_check(void)
{
	struct kvm_x86_mce mce = {
		.status = MCI_STATUS_VAL | MCI_STATUS_UC | MCI_STATUS_EN | MCI_STATUS_MISCV |
			  MCI_STATUS_ADDRV | MCI_STATUS_S | MCE_MCACOD_SRAO_SCRUB,
		.addr = 0x7654000,
		.misc = 0x8c,
		.mcg_status = MCG_STATUS_RIPV | MCG_STATUS_EIPV | MCG_STATUS_MCIP,
	};
	struct kvmt_mc_vm f;
	uint64_t v, t0;
	uint32_t loops;
	int err;

	err = kvmt_mc_vm_create(&f);
	if (!is_int(err, 0, "mc: VM with the machine-check guest, machine checks set up"))
		return;
	tap_diag("MCG_CAP 0x%" PRIx64 " (%u banks)", f.mcg_cap,
		 (unsigned int)(f.mcg_cap & MCG_BANKCNT_MASK));
	ok((f.mcg_cap & MCG_BANKCNT_MASK) > 0 && (f.mcg_cap & MCG_CTL_P),
	   "mc: KVM supports banks and MCG_CTL");
	mce.bank = (uint8_t)((f.mcg_cap & MCG_BANKCNT_MASK) - 1);
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCG_CAP, &v) == 0 && v == f.mcg_cap,
	   "mc: MCG_CAP reads back 0x%" PRIx64, v);
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCG_CTL, &v) == 0 && v == ~0ULL,
	   "mc: MCG_CTL is all ones");
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCx_CTL(mce.bank), &v) == 0 && v == ~0ULL,
	   "mc: MC%u_CTL is all ones", mce.bank);

	t0 = now_ns();
	err = kvmt_vcpu_run_to_out(f.vcpu, KVMT_MC_PORT_LOOP, MAX_EXITS);
	if (!is_int(err, 0, "mc: the guest reaches its main loop (exit %u)",
		    f.vcpu->run->exit_reason))
		goto out;
	is_u64(*(uint32_t *)((char *)f.ram + 4 * X86_VECTOR_MC), KVMT_MC_HANDLER_GPA,
	       "mc: IVT entry 18 is 0000:%04llx", KVMT_MC_HANDLER_GPA);
	ok(!memcmp((char *)f.ram + KVMT_MC_HANDLER_GPA, "\x66\x60", 2),
	   "mc: and the handler starts there (pushad)");
	for (int i = 0; i < 100 && !err; i++)
		err = kvmt_vcpu_run_to_out(f.vcpu, KVMT_MC_PORT_LOOP, MAX_EXITS);
	loops = f.area->loops;
	ok(!err && loops == 101 && kvmt_io_value(f.vcpu->run) == loops,
	   "mc: the main loop counts and OUTs each iteration (%u)", loops);
	tap_diag("%u main-loop iterations (one exit each) in %.0f us", loops,
		 (double)(now_ns() - t0) / 1e3);

	f.area->clear_mcip = 1;
	if (!deliver_mc(&f, &mce, "mc 1"))
		goto out;
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCG_STATUS, &v) == 0 && v == 0,
	   "mc 1: the handler cleared MCG_STATUS (0x%" PRIx64 ")", v);
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCx_STATUS(mce.bank), &v) == 0 && v == 0,
	   "mc 1: and MC%u_STATUS (0x%" PRIx64 ")", mce.bank, v);
	ok(kvmt_vcpu_run_to_out(f.vcpu, KVMT_MC_PORT_LOOP, MAX_EXITS) == 0 &&
	   f.area->loops == loops + 1, "mc 1: the guest returns to its main loop");

	/* Now the guest stays "in" the machine check: MCIP stays set. */
	f.area->clear_mcip = 0;
	mce.addr = 0x1234000;
	mce.misc = 0x8c;
	if (!deliver_mc(&f, &mce, "mc 2"))
		goto out;
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCG_STATUS, &v) == 0 && (v & MCG_STATUS_MCIP),
	   "mc 2: KVM_GET_MSRS shows MCG_STATUS.MCIP still set (0x%" PRIx64 ")", v);
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCx_STATUS(mce.bank), &v) == 0 && v == mce.status,
	   "mc 2: and MC%u_STATUS still holds the error", mce.bank);
	ok(kvmt_vcpu_run_to_out(f.vcpu, KVMT_MC_PORT_LOOP, MAX_EXITS) == 0,
	   "mc 2: the guest goes on with its main loop");
	ok(kvmt_vcpu_get_msr(f.vcpu, MSR_IA32_MCG_STATUS, &v) == 0 && (v & MCG_STATUS_MCIP),
	   "mc 2: and MCIP is still set there");

	f.area->stop = 1;
	ok(kvmt_vcpu_run_to_out(f.vcpu, KVMT_MC_PORT_DONE, MAX_EXITS) == 0,
	   "stop: the main loop ends on the stop flag");
	err = kvmt_vcpu_run(f.vcpu);
	ok(!err && f.vcpu->run->exit_reason == KVM_EXIT_HLT, "stop: and halts (exit %u)",
	   f.vcpu->run->exit_reason);

	/* What a VMM must avoid: #MC while MCIP is set is a shutdown. */
	is_int(kvmt_vcpu_set_mce(f.vcpu, &mce), 0, "mc 3: KVM_X86_SET_MCE while MCIP is set");
	err = kvmt_vcpu_run(f.vcpu);
	ok(!err && f.vcpu->run->exit_reason == KVM_EXIT_SHUTDOWN,
	   "mc 3: the guest is shut down, as on hardware (exit %u)", f.vcpu->run->exit_reason);
	is_int(f.area->mc_count, 2, "mc 3: and its handler never ran");
out:
	kvmt_mc_vm_free(&f);
}

int main(void)
{
	if (access("/dev/kvm", F_OK)) {
		tap_skip("real-KVM harness", "/dev/kvm: %s", strerror(errno));
		return tap_done();
	}
	test_hello();
	test_readonly();
	test_machine_check();
	return tap_done();
}
