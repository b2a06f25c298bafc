/* SPDX-License-Identifier: GPL-2.0-or-later */
/* State shared by the VMM's modules (vmm.c, vcpu.c, guest_proto.c, summary.c, ras.c, control.c). */
#ifndef VMRAS_VMM_INTERNAL_H
#define VMRAS_VMM_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "qmp.h"
#include "migration.h"
#include "ram.h"
#include "report.h"
#include "vmm.h"
#include "x86.h"

struct kvm_run;

enum vcpu_state {
	VCPU_RUNNING,
	VCPU_HALTED,	/* the guest stopped this vCPU (HLT, fault): wait for reset */
	VCPU_FAILED,	/* KVM_RUN failed or an exit could not be handled */
};

struct vcpu {
	struct vmm *vm;
	unsigned int index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	enum vcpu_state state;	/* under vm->lock */
	bool parked;		/* under vm->lock */
	bool idle;		/* under vm->lock: parked by the VMM, last exit completed */
	bool exit_pending;	/* vCPU thread: KVM completes the last I/O exit at the next KVM_RUN */
	char failure[160];	/* why it stopped, if it did */
	uint64_t ram_mmio_exits;	/* guest RAM accesses KVM gave as MMIO */
	uint64_t mmio_exits, pio_exits;	/* to nothing: all-ones / ignored */
	/* (the exit counters are atomic: query-guest reads them live) */
};

struct host_check {
	bool ran;
	uint64_t pages, corrupted, unreadable, first_bad;
};

struct vmm {
	struct vmm_config cfg;
	char rec_name[64], rec_uuid[40];	/* how the record names this VM */
	const char *rec_path;		/* the record's database, or NULL */
	int kvm_fd, vm_fd;
	struct guest_ram ram;
	struct x86_machine x86;
	const unsigned char *image;
	size_t image_size;
	unsigned char *image_owned;	/* a --guest PATH read into memory */

	struct vcpu *vcpus;
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* vCPUs park and wake on it */
	unsigned int pause_depth;	/* nested pauses; vCPUs stay parked while > 0 */
	bool user_stopped;	/* QMP stop */
	/*
	 * A migration's device phase (or an incoming load) owns guest RAM and
	 * vCPU state: resets and the VMM's own RAM writes (external_busy
	 * counts those in flight) are kept out.
	 */
	bool frozen;
	unsigned int external_busy;
	bool quit;
	char quit_reason[64];
	bool shutdown;
	uint64_t boot_count;
	struct guest_report report;

	struct vmras *ras;	/* libvmras */
	struct lazy_image *lazy_image;	/* --lazy: the snapshot RAM is served from */
	bool reset_requested;	/* by libvmras policy */
	char reset_reason[128];
	bool fatal;		/* a memory error with policy fatal */
	uint64_t memory_failures;	/* MEMORY_FAILURE events */
	struct host_check host_check;	/* after the run, from the host side */

	int wake_fd;		/* eventfd: wakes vmm_run's loop */
	int signal_fd;		/* SIGINT, SIGTERM, SIGHUP */
	sigset_t quit_signals, saved_sigmask;
	struct qmp_server *qmp;
	struct vmm_migration mig;
};

/* vcpu.c */
int vcpu_create(struct vmm *vm, struct vcpu *v, unsigned int index, struct vmm_error *e);
int vcpu_start(struct vcpu *v, struct vmm_error *e);
void vcpu_kick(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
/* The kick signal's handler (does nothing but interrupt KVM_RUN). */
int vcpu_install_kick_signal(struct vmm_error *e);

/* vmm.c */
void vmm_wake_main(struct vmm *vm);
/*
 * Freeze: wait for resets and VMM writes in flight, refuse new ones, and
 * pause the vCPUs (-ESHUTDOWN when the VM is going away). Thaw undoes both.
 */
int vmm_freeze(struct vmm *vm, struct vmm_error *e);
void vmm_thaw(struct vmm *vm);
/* A migration holds the guest frozen (its device phase, or --incoming loading). */
bool vmm_frozen(struct vmm *vm);
/* Paused: wait until every vCPU is parked with its last exit completed. */
void vmm_wait_idle(struct vmm *vm);
void vmm_emit(struct vmm *vm, const char *event, json_object *data);

/* guest_proto.c: the test guest's side of guest/layout.h */
/* Write boot info (and, when sampling, fill every data page) before a boot. */
void vmm_guest_boot_info(struct vmm *vm);
/* A message the guest wrote at gpa and announced on the report port. */
void vmm_guest_message(struct vmm *vm, struct vcpu *v, uint64_t gpa);
/* After the guest finished: check every data page from the host side. */
void vmm_guest_host_check(struct vmm *vm);
/* The guest's CPUID as JSON {vendor, signature, family, model, stepping, ...}. */
json_object *vmm_cpuid_json(const struct report_cpuid *c);

/* ras.c */
int vmm_ras_init(struct vmm *vm, struct vmm_error *e);
void vmm_ras_pass_done(struct vmm *vm, unsigned int from, unsigned int pass);

/* control.c */
extern const struct qmp_command vmm_qmp_commands[];
extern const size_t vmm_qmp_ncommands;

#endif
