/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The reference VMM: a small x86-64 KVM machine that runs the test guest,
 * one thread per vCPU, with pause/resume, reset and a QMP control socket.
 * It is a user of libvmras; what another VMM would need too belongs there.
 */
#ifndef VMRAS_VMM_H
#define VMRAS_VMM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "qmp.h"
#include "ram.h"
#include "vmras/vmras.h"
#include "x86.h"

#define VMM_MAX_INJECT 64

/* A scripted error: --inject ao:GPA[@PASS] / ar:GPA[@PASS]. */
struct vmm_inject {
	enum vmras_error_kind kind;
	uint64_t gpa;
	unsigned int pass;	/* after the owning vCPU finished this pass */
	bool done;
};

#define VMM_DEFAULT_RECORD "/var/lib/vmras/vmras.db"

struct vmm_config {
	unsigned int nr_vcpus;
	uint64_t mem_size;
	enum ram_backend backend;
	const char *backend_path;	/* for RAM_FILE */
	const char *guest_path;		/* NULL: the built-in test guest */
	unsigned int passes;
	const char *control_path;	/* QMP socket, or NULL */
	/* Other users who may use it (the VMM's own always may). */
	unsigned int ncontrol_allow;
	uid_t control_allow[QMP_MAX_ALLOWED_UIDS];
	bool no_shutdown;		/* stay up after the guest finishes */
	bool start_paused;		/* vCPUs wait for QMP cont */
	uint64_t seed;
	bool guest_no_mce;		/* the guest leaves CR4.MCE clear */
	unsigned int sample;		/* guest checks every Nth page; the VMM the rest */
	struct vmras_policy policy;
	bool no_broadcast;		/* machine checks to the consuming vCPU only */
	enum x86_cpu_vendor cpu_vendor;	/* what CPUID tells the guest (default: the host's) */
	const char *event_log;		/* MEMORY_FAILURE events as JSON lines */
	const char *record;		/* the durable record: NULL default, "" none */
	const char *name, *uuid;	/* for the record: NULL, a default */
	const char *incoming;		/* load a migration stream first (tcp:/unix:/file:) */
	bool lazy;			/* file: incoming: run before RAM is loaded */
	bool lazy_no_prefetch;		/* and load only what is touched (x-lazy-prefetch turns it on) */
	unsigned int ninject;
	struct vmm_inject inject[VMM_MAX_INJECT];
};

enum vmm_status {
	VMM_RUNNING,
	VMM_PAUSED,
	VMM_SHUTDOWN,
	VMM_INMIGRATE,		/* --incoming: loading the stream */
	VMM_POSTMIGRATE,	/* the guest moved away: it runs on the destination */
};

struct vmm;

int vmm_create(const struct vmm_config *cfg, struct vmm **out, struct vmm_error *e);
void vmm_destroy(struct vmm *vm);

/*
 * Run until the guest finishes (unless no_shutdown), a quit is requested,
 * or SIGINT/SIGTERM arrives. Returns 0, or -errno when the VMM itself
 * failed (e says why).
 */
int vmm_run(struct vmm *vm, struct vmm_error *e);

/*
 * Park every vCPU outside KVM_RUN and return once all are parked; nests.
 * Must not be called from a vCPU thread.
 */
void vmm_pause(struct vmm *vm);
void vmm_resume(struct vmm *vm);

/* The operator's stop/cont (QMP): one level of pause, idempotent. */
void vmm_stop(struct vmm *vm);
void vmm_cont(struct vmm *vm);

int vmm_system_reset(struct vmm *vm, struct vmm_error *e);
void vmm_request_quit(struct vmm *vm, const char *reason);

enum vmm_status vmm_status(struct vmm *vm);
const char *vmm_status_name(enum vmm_status s);

/* Write bytes into guest RAM (tests corrupt memory on purpose with it). */
int vmm_write_guest(struct vmm *vm, uint64_t gpa, const void *buf, size_t len,
		    struct vmm_error *e);

int vmm_read_guest(struct vmm *vm, uint64_t gpa, void *buf, size_t len,
		   struct vmm_error *e);

/* mprotect whole backing pages of guest RAM (PROT_*). */
int vmm_protect_guest(struct vmm *vm, uint64_t gpa, uint64_t size, int prot,
		      struct vmm_error *e);

/* Inject a memory error (QMP inject-memory-error, --inject). vcpu < 0: the
 * vCPU whose slice holds gpa. */
int vmm_inject_error(struct vmm *vm, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		     bool signal, struct vmm_error *e);
/* The poison registry and counters as JSON (query-memory-errors). */
json_object *vmm_memory_errors_json(struct vmm *vm);
/* The numbers vmras metrics gives, for this VM now (query-memory-error-stats). */
json_object *vmm_memory_error_stats_json(struct vmm *vm);

/* The guest's latest report as JSON (query-guest, summary). */
json_object *vmm_guest_report_json(struct vmm *vm);
/* The final summary object; result "pass" or "fail". */
json_object *vmm_summary_json(struct vmm *vm);
/* 0 if the guest's checks passed (or nothing failed before a quit), else 1. */
int vmm_exit_code(struct vmm *vm);

#endif
