/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A minimal real-KVM harness for the C tests, in the spirit of the kernel's
 * KVM selftests lib: a VM, memslots, real-mode vCPUs running hand-assembled
 * code blobs, machine-check setup, KVM_RUN and its I/O exits. Every call
 * returns 0 or -errno; nothing here prints or exits (the tests do).
 *
 * vCPUs start in 16-bit real mode with CS = DS = ES = SS = 0 (base 0), so
 * a blob and the data it names live in the first 64 KiB of guest memory,
 * and the IVT at GPA 0 is the guest's interrupt table. On hosts whose KVM
 * runs guest code in its instruction emulator a guest instruction costs
 * about 1 us: keep loops short and prefer OUT-per-iteration to HLT.
 */
#ifndef VMRAS_TEST_KVM_UTIL_H
#define VMRAS_TEST_KVM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabi/kvm.h"

#define KVMT_MAX_VCPUS 8
#define KVMT_MAX_RAM 8		/* kvmt_vm_add_ram calls per VM */

struct kvmt_vcpu;

struct kvmt_vm {
	int kvm_fd;		/* /dev/kvm */
	int fd;			/* the VM */
	struct kvm_cpuid2 *cpuid;	/* KVM_GET_SUPPORTED_CPUID, with MCE|MCA */
	struct kvmt_vcpu *vcpus[KVMT_MAX_VCPUS];
	struct {		/* RAM mapped by kvmt_vm_add_ram, unmapped at free */
		void *hva;
		size_t size;
	} ram[KVMT_MAX_RAM];
};

struct kvmt_vcpu {
	struct kvmt_vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;	/* the exit of the last KVM_RUN */
	size_t run_size;
	uint64_t mcg_cap;	/* as given to KVM_X86_SETUP_MCE, 0 before */
};

/* Open /dev/kvm (-ENOENT when it is missing) and KVM_CREATE_VM. */
int kvmt_vm_create(struct kvmt_vm **out);
/* Closes the vCPUs and the VM, unmaps kvmt_vm_add_ram's memory. NULL is fine. */
void kvmt_vm_free(struct kvmt_vm *vm);

/*
 * KVM_SET_USER_MEMORY_REGION: slot at [gpa, gpa + size) backed by the
 * caller's hva; flags KVM_MEM_READONLY (guest writes exit as
 * KVM_EXIT_MMIO), KVM_MEM_LOG_DIRTY_PAGES. size 0 deletes the slot.
 */
int kvmt_vm_set_memslot(struct kvmt_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
			void *hva, uint32_t flags);
/* The same with zeroed anonymous memory the VM owns; *hva says where it is. */
int kvmt_vm_add_ram(struct kvmt_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		    uint32_t flags, void **hva);

/*
 * KVM_CREATE_VCPU, mmap of its kvm_run, the supported CPUID (with the MCE
 * and MCA bits), and 16-bit real mode at entry (which must be below
 * 64 KiB: -EINVAL otherwise). The VM owns the vCPU.
 */
int kvmt_vcpu_create(struct kvmt_vm *vm, unsigned int id, uint64_t entry,
		     struct kvmt_vcpu **out);

/* KVM_RUN once: 0, or -errno (-EINTR for a signal); the exit is in run. */
int kvmt_vcpu_run(struct kvmt_vcpu *vcpu);
/*
 * KVM_RUN until the guest OUTs to port (0), passing over OUTs to other
 * ports; -ENOMSG at any other exit (run->exit_reason says which),
 * -ETIMEDOUT after max_exits exits, or KVM_RUN's -errno.
 */
int kvmt_vcpu_run_to_out(struct kvmt_vcpu *vcpu, uint16_t port, unsigned int max_exits);

/* The exit is an OUT (not IN) to port. */
bool kvmt_exit_is_out(const struct kvm_run *run, uint16_t port);
/* The value an I/O exit carries (1, 2 or 4 bytes; the first of a string OUT). */
uint32_t kvmt_io_value(const struct kvm_run *run);

int kvmt_vcpu_get_msr(struct kvmt_vcpu *vcpu, uint32_t index, uint64_t *value);
int kvmt_vcpu_set_msr(struct kvmt_vcpu *vcpu, uint32_t index, uint64_t value);

/*
 * What this KVM can give a vCPU: KVM_X86_GET_MCE_CAP_SUPPORTED's bits
 * with KVM_CAP_MCE's bank count (at most 32) in bits 7:0. -ENOTSUP
 * without KVM_CAP_MCE.
 */
int kvmt_mce_cap_supported(struct kvmt_vm *vm, uint64_t *mcg_cap);
/*
 * Make the vCPU able to take machine checks, as the reference VMM does:
 * KVM_X86_SETUP_MCE with mcg_cap, CR4.MCE by KVM_SET_SREGS, and (so that
 * KVM does not drop an uncorrected error) MCG_CTL when MCG_CTL_P is set
 * and every MCi_CTL to all ones by KVM_SET_MSRS.
 */
int kvmt_vcpu_setup_mce(struct kvmt_vcpu *vcpu, uint64_t mcg_cap);
/* KVM_X86_SET_MCE: the #MC is delivered at the next KVM_RUN. */
int kvmt_vcpu_set_mce(struct kvmt_vcpu *vcpu, const struct kvm_x86_mce *mce);

/*
 * The ready-made machine-check guest (kvm_util.c has its assembly). It
 * needs RAM at GPA 0 of at least KVMT_MC_RAM_SIZE. At start it points IVT
 * entry 18 (#MC) at its handler, then loops: each iteration reads `stop`
 * (set: OUT to KVMT_MC_PORT_DONE and halt), counts `loops` and OUTs its
 * low 16 bits to KVMT_MC_PORT_LOOP; the first LOOP OUT means the handler
 * is installed. The #MC handler reads MCG_STATUS and bank `bank`'s
 * STATUS, ADDR and MISC into the area; only if `clear_mcip` is set does
 * it finish as an OS does (MCi_STATUS = 0, then MCG_STATUS = 0: MCIP
 * clear), so a test can keep the vCPU inside a machine check (a bank
 * left valid makes the next error there set OVER). Then it counts
 * `mc_count`, OUTs its low 16 bits to KVMT_MC_PORT_MC and IRETs.
 */
#define KVMT_MC_RAM_SIZE 0x10000ULL
#define KVMT_MC_CODE_GPA 0x1000ULL
#define KVMT_MC_HANDLER_GPA 0x102fULL	/* what IVT entry 18 says */
#define KVMT_MC_AREA_GPA 0x2000ULL
#define KVMT_MC_STACK_GPA 0x8000ULL	/* top; grows down */
#define KVMT_MC_PORT_LOOP 0x10
#define KVMT_MC_PORT_MC 0x11
#define KVMT_MC_PORT_DONE 0x12

struct kvmt_mc_area {
	volatile uint32_t bank;		/* in: bank the handler reads */
	volatile uint32_t clear_mcip;	/* in: nonzero: the handler clears the bank and MCIP */
	volatile uint32_t stop;		/* in: nonzero: the main loop ends */
	volatile uint32_t mc_count;	/* out: machine checks taken */
	volatile uint64_t mcg_status;	/* out: as read by the last handler */
	volatile uint64_t status;
	volatile uint64_t addr;
	volatile uint64_t misc;
	volatile uint32_t loops;	/* out: main loop iterations */
};

extern const uint8_t kvmt_mc_guest_code[];
extern const size_t kvmt_mc_guest_code_size;

/* Copy the guest to ram (mapped at GPA 0), zero its area; returns the area. */
struct kvmt_mc_area *kvmt_mc_guest_load(void *ram, uint32_t bank);

/* A VM, its RAM, one vCPU running the machine-check guest. */
struct kvmt_mc_vm {
	struct kvmt_vm *vm;
	struct kvmt_vcpu *vcpu;
	void *ram;		/* KVMT_MC_RAM_SIZE at GPA 0, slot 0 */
	struct kvmt_mc_area *area;
	uint64_t mcg_cap;	/* everything KVM supports (kvmt_mce_cap_supported) */
};

/*
 * All of the above in one call: the guest is loaded (reading the last
 * bank) but has not run yet. On failure nothing is left behind.
 */
int kvmt_mc_vm_create(struct kvmt_mc_vm *f);
void kvmt_mc_vm_free(struct kvmt_mc_vm *f);

#endif /* VMRAS_TEST_KVM_UTIL_H */
