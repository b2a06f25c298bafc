// SPDX-License-Identifier: GPL-2.0-or-later
/* The VMM's QMP commands. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "postcopy.h"
#include "vmm_internal.h"
#include "vmras/lazy.h"
#include "vmras/vmras.h"

#define MAX_WRITE_BYTES 4096

static int cmd_query_status(void *ctx, json_object *args, json_object **ret,
			    struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	enum vmm_status s;

	if (qmp_args_only(args, allowed, err))
		return -1;
	s = vmm_status(ctx);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "status", json_object_new_string(vmm_status_name(s)));
	json_object_object_add(*ret, "running", json_object_new_boolean(s == VMM_RUNNING));
	return 0;
}

/* --incoming is still loading: nothing may act on a guest that is not here yet. */
static int refuse_while_arriving(struct vmm *vm, struct qmp_error *err)
{
	if (!migration_incoming_active(vm))
		return 0;
	qmp_errorf(err, "GenericError", "the guest is still arriving (inmigrate)");
	return -1;
}

/* A migration's last phase: the run state has gone with the rest. */
static int refuse_while_frozen(struct vmm *vm, struct qmp_error *err)
{
	if (refuse_while_arriving(vm, err))
		return -1;
	if (!vmm_frozen(vm) || migration_handed_over(vm))
		return 0;
	qmp_errorf(err, "GenericError", "the guest is being handed over to the migration's "
		   "destination: try again when the migration has ended");
	return -1;
}

static int cmd_stop(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	(void)ret;
	if (qmp_args_only(args, allowed, err) || refuse_while_frozen(ctx, err))
		return -1;
	vmm_stop(ctx);
	return 0;
}

static int cmd_cont(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	if (migration_handed_over(ctx)) {
		qmp_errorf(err, "GenericError", "the guest has migrated away: it runs on the "
			   "destination");
		return -1;
	}
	if (refuse_while_frozen(ctx, err))
		return -1;
	vmm_cont(ctx);
	return 0;
}

/*
 * migrate {uri, resume}: tcp:HOST:PORT, unix:PATH, file:PATH
 * (docs/migration.md); resume: carry on a paused post-copy.
 */
static int cmd_migrate(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	static const char *const allowed[] = { "uri", "resume", NULL };
	struct vmm_error e;
	const char *uri;
	bool resume = false;

	(void)ret;
	if (qmp_args_only(args, allowed, err) || qmp_arg_str(args, "uri", true, &uri, err) ||
	    qmp_arg_bool(args, "resume", false, &resume, err))
		return -1;
	if (migration_start(ctx, uri, resume, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

/* migrate-recover {uri}: the destination of a paused post-copy listens again. */
static int cmd_migrate_recover(void *ctx, json_object *args, json_object **ret,
			       struct qmp_error *err)
{
	static const char *const allowed[] = { "uri", NULL };
	struct vmm_error e;
	const char *uri;

	(void)ret;
	if (qmp_args_only(args, allowed, err) || qmp_arg_str(args, "uri", true, &uri, err))
		return -1;
	if (postcopy_in_recover(ctx, uri, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

/* migrate-pause: break a running post-copy's connection, to recover it elsewhere. */
static int cmd_migrate_pause(void *ctx, json_object *args, json_object **ret,
			     struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	struct vmm_error e;

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	if (migration_pause(ctx, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

static int cmd_migrate_start_postcopy(void *ctx, json_object *args, json_object **ret,
				      struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	struct vmm_error e;

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	if (migration_start_postcopy(ctx, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

/*
 * migrate-set-capabilities {capabilities: [{capability, state}]}: QEMU's
 * shape; this VMM knows postcopy-ram. All are checked before any changes.
 */
static int cmd_migrate_set_capabilities(void *ctx, json_object *args, json_object **ret,
					struct qmp_error *err)
{
	static const char *const allowed[] = { "capabilities", NULL };
	static const char *const cap_keys[] = { "capability", "state", NULL };
	json_object *caps;
	struct vmm_error e;
	int postcopy = -1;

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	if (!json_object_object_get_ex(args, "capabilities", &caps) ||
	    !json_object_is_type(caps, json_type_array)) {
		qmp_errorf(err, "GenericError", "Parameter 'capabilities' expects an array");
		return -1;
	}
	for (size_t i = 0; i < json_object_array_length(caps); i++) {
		json_object *c = json_object_array_get_idx(caps, i);
		const char *name;
		bool state;

		if (!json_object_is_type(c, json_type_object)) {
			qmp_errorf(err, "GenericError", "capabilities[%zu] is not an object", i);
			return -1;
		}
		if (qmp_args_only(c, cap_keys, err) || qmp_arg_str(c, "capability", true, &name, err) ||
		    qmp_arg_bool(c, "state", true, &state, err))
			return -1;
		/* Off is off whatever it is (management tools clear many); on, only ours. */
		if (strcmp(name, "postcopy-ram") && state) {
			qmp_errorf(err, "GenericError", "Parameter 'capability' does not accept "
				   "value '%.64s' (this VMM knows postcopy-ram)", name);
			return -1;
		}
		if (!strcmp(name, "postcopy-ram"))
			postcopy = state;
	}
	if (postcopy >= 0 && migration_set_postcopy(ctx, postcopy, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

static int cmd_query_migrate_capabilities(void *ctx, json_object *args, json_object **ret,
					  struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	json_object *c;

	if (qmp_args_only(args, allowed, err))
		return -1;
	c = json_object_new_object();
	json_object_object_add(c, "capability", json_object_new_string("postcopy-ram"));
	json_object_object_add(c, "state", json_object_new_boolean(migration_get_postcopy(ctx)));
	*ret = json_object_new_array();
	json_object_array_add(*ret, c);
	return 0;
}

static int cmd_migrate_cancel(void *ctx, json_object *args, json_object **ret,
			      struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	migration_cancel(ctx);
	return 0;
}

/* x-lazy-prefetch {enable: bool}: a lazy restore loads in the background, or only on demand. */
static int cmd_x_lazy_prefetch(void *ctx, json_object *args, json_object **ret,
			       struct qmp_error *err)
{
	static const char *const allowed[] = { "enable", NULL };
	struct vmm *vm = ctx;
	bool on = true;

	(void)ret;
	if (qmp_args_only(args, allowed, err) || qmp_arg_bool(args, "enable", true, &on, err))
		return -1;
	if (vmras_lazy_set_prefetch(vm->ras, on)) {
		qmp_errorf(err, "GenericError", "this VM's memory is not lazy (vmras run --lazy)");
		return -1;
	}
	return 0;
}

static int cmd_query_migrate(void *ctx, json_object *args, json_object **ret,
			     struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	if (qmp_args_only(args, allowed, err))
		return -1;
	*ret = migration_query(ctx);
	return 0;
}

/* migrate-set-parameters {downtime-limit: ms, max-bandwidth: bytes/s}, either or both. */
static int cmd_migrate_set_parameters(void *ctx, json_object *args, json_object **ret,
				      struct qmp_error *err)
{
	static const char *const allowed[] = { "downtime-limit", "max-bandwidth",
					       "max-postcopy-bandwidth", NULL };
	struct migration_params p = { UINT64_MAX, UINT64_MAX, UINT64_MAX };
	struct vmm_error e;

	(void)ret;
	if (qmp_args_only(args, allowed, err) ||
	    qmp_arg_u64(args, "downtime-limit", false, &p.downtime_limit_ms, err) ||
	    qmp_arg_u64(args, "max-bandwidth", false, &p.max_bandwidth, err) ||
	    qmp_arg_u64(args, "max-postcopy-bandwidth", false, &p.max_postcopy_bandwidth, err))
		return -1;
	if (migration_set_params(ctx, &p, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

static int cmd_query_migrate_parameters(void *ctx, json_object *args, json_object **ret,
					struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	struct migration_params p;

	if (qmp_args_only(args, allowed, err))
		return -1;
	migration_get_params(ctx, &p);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "downtime-limit", json_object_new_uint64(p.downtime_limit_ms));
	json_object_object_add(*ret, "max-bandwidth", json_object_new_uint64(p.max_bandwidth));
	json_object_object_add(*ret, "max-postcopy-bandwidth",
			       json_object_new_uint64(p.max_postcopy_bandwidth));
	return 0;
}

static int cmd_system_reset(void *ctx, json_object *args, json_object **ret,
			    struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };
	struct vmm_error e;

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	if (vmm_system_reset(ctx, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

static int cmd_quit(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	(void)ret;
	if (qmp_args_only(args, allowed, err))
		return -1;
	vmm_request_quit(ctx, "host-qmp-quit");
	return 0;
}

static int cmd_query_guest(void *ctx, json_object *args, json_object **ret,
			   struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	if (qmp_args_only(args, allowed, err))
		return -1;
	*ret = vmm_guest_report_json(ctx);
	return 0;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* x-write-guest-memory {gpa, data: "hex bytes"}: for tests, corrupts on purpose. */
static int cmd_write_guest_memory(void *ctx, json_object *args, json_object **ret,
				  struct qmp_error *err)
{
	static const char *const allowed[] = { "gpa", "data", NULL };
	unsigned char buf[MAX_WRITE_BYTES];
	struct vmm_error e;
	const char *hex;
	uint64_t gpa;
	size_t len;

	(void)ret;
	if (qmp_args_only(args, allowed, err) ||
	    qmp_arg_u64(args, "gpa", true, &gpa, err) ||
	    qmp_arg_str(args, "data", true, &hex, err))
		return -1;
	len = strlen(hex);
	if (len == 0 || len % 2 || len / 2 > MAX_WRITE_BYTES) {
		qmp_errorf(err, "GenericError",
			   "Parameter 'data' must be 1 to %d bytes as an even number of hex digits",
			   MAX_WRITE_BYTES);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)hex[i])) {
			qmp_errorf(err, "GenericError",
				   "Parameter 'data' has a non-hex character at %zu", i);
			return -1;
		}
	for (size_t i = 0; i < len / 2; i++)
		buf[i] = (unsigned char)(hexval((unsigned char)hex[2 * i]) << 4 |
					 hexval((unsigned char)hex[2 * i + 1]));
	if (vmm_write_guest(ctx, gpa, buf, len / 2, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

/* x-read-guest-memory {gpa, size}: bytes as hex (tests flip one byte with it). */
static int cmd_read_guest_memory(void *ctx, json_object *args, json_object **ret,
				 struct qmp_error *err)
{
	static const char *const allowed[] = { "gpa", "size", NULL };
	static const char digits[] = "0123456789abcdef";
	unsigned char buf[MAX_WRITE_BYTES];
	char hex[2 * MAX_WRITE_BYTES + 1];
	struct vmm_error e;
	uint64_t gpa, size;

	if (qmp_args_only(args, allowed, err) ||
	    qmp_arg_u64(args, "gpa", true, &gpa, err) ||
	    qmp_arg_u64(args, "size", true, &size, err))
		return -1;
	if (size == 0 || size > MAX_WRITE_BYTES) {
		qmp_errorf(err, "GenericError", "Parameter 'size' must be 1 to %d",
			   MAX_WRITE_BYTES);
		return -1;
	}
	if (vmm_read_guest(ctx, gpa, buf, size, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	for (uint64_t i = 0; i < size; i++) {
		hex[2 * i] = digits[buf[i] >> 4];
		hex[2 * i + 1] = digits[buf[i] & 15];
	}
	hex[2 * size] = '\0';
	*ret = json_object_new_object();
	json_object_object_add(*ret, "data", json_object_new_string(hex));
	return 0;
}

/*
 * x-protect-guest-memory {gpa, size, access: none|read|read-write}: change
 * the host mapping of guest RAM, so tests can make a host page unusable
 * without bad hardware. Whole backing pages only.
 */
static int cmd_protect_guest_memory(void *ctx, json_object *args, json_object **ret,
				    struct qmp_error *err)
{
	static const char *const allowed[] = { "gpa", "size", "access", NULL };
	static const struct {
		const char *name;
		int prot;
	} modes[] = {
		{ "none", PROT_NONE },
		{ "read", PROT_READ },
		{ "read-write", PROT_READ | PROT_WRITE },
	};
	struct vmm_error e;
	const char *access;
	uint64_t gpa, size;
	int prot = -1;

	(void)ret;
	if (qmp_args_only(args, allowed, err) ||
	    qmp_arg_u64(args, "gpa", true, &gpa, err) ||
	    qmp_arg_u64(args, "size", true, &size, err) ||
	    qmp_arg_str(args, "access", true, &access, err))
		return -1;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(access, modes[i].name))
			prot = modes[i].prot;
	if (prot < 0) {
		qmp_errorf(err, "GenericError",
			   "Parameter 'access' must be none, read or read-write");
		return -1;
	}
	if (vmm_protect_guest(ctx, gpa, size, prot, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

/*
 * inject-memory-error {gpa, type: ao|ar, size?, vcpu?, signal?}: stand in
 * for the hardware (see vmras_inject). size, if given, must be the page
 * size of the backing: that is what the hardware loses.
 */
static int cmd_inject_memory_error(void *ctx, json_object *args, json_object **ret,
				   struct qmp_error *err)
{
	static const char *const allowed[] = { "gpa", "type", "size", "vcpu", "signal", NULL };
	struct vmm *vm = ctx;
	struct vmm_error e;
	const char *type;
	uint64_t gpa, size = 0, vcpu = UINT64_MAX;
	enum vmras_error_kind kind;
	json_object *sig;
	bool signal = true;

	(void)ret;
	if (refuse_while_arriving(vm, err))
		return -1;
	if (qmp_args_only(args, allowed, err) ||
	    qmp_arg_u64(args, "gpa", true, &gpa, err) ||
	    qmp_arg_str(args, "type", true, &type, err) ||
	    qmp_arg_u64(args, "size", false, &size, err) ||
	    qmp_arg_u64(args, "vcpu", false, &vcpu, err))
		return -1;
	if (!strcmp(type, "ao")) {
		kind = VMRAS_AO;
	} else if (!strcmp(type, "ar")) {
		kind = VMRAS_AR;
	} else {
		qmp_errorf(err, "GenericError", "Parameter 'type' must be 'ao' or 'ar'");
		return -1;
	}
	if (size && size != vm->ram.page_size) {
		qmp_errorf(err, "GenericError",
			   "Parameter 'size' must be the backing page size (%llu)",
			   (unsigned long long)vm->ram.page_size);
		return -1;
	}
	if (json_object_object_get_ex(args, "signal", &sig)) {
		if (!json_object_is_type(sig, json_type_boolean)) {
			qmp_errorf(err, "GenericError",
				   "Invalid parameter type for 'signal', expected: boolean");
			return -1;
		}
		signal = json_object_get_boolean(sig);
	}
	if (!json_object_object_get_ex(args, "vcpu", NULL)) {
		vcpu = UINT64_MAX;	/* not given: any vCPU */
	} else if (vcpu >= vm->cfg.nr_vcpus) {
		qmp_errorf(err, "GenericError", "Parameter 'vcpu': no vCPU %llu",
			   (unsigned long long)vcpu);
		return -1;
	}
	if (vmm_inject_error(vm, gpa, kind, vcpu == UINT64_MAX ? -1 : (int)vcpu, signal, &e)) {
		qmp_errorf(err, "GenericError", "%s", e.msg);
		return -1;
	}
	return 0;
}

static int cmd_query_memory_errors(void *ctx, json_object *args, json_object **ret,
				   struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	if (qmp_args_only(args, allowed, err))
		return -1;
	*ret = vmm_memory_errors_json(ctx);
	return 0;
}

static int cmd_query_memory_error_stats(void *ctx, json_object *args, json_object **ret,
					struct qmp_error *err)
{
	static const char *const allowed[] = { NULL };

	if (qmp_args_only(args, allowed, err))
		return -1;
	*ret = vmm_memory_error_stats_json(ctx);
	return 0;
}

const struct qmp_command vmm_qmp_commands[] = {
	{ "query-status", cmd_query_status },
	{ "stop", cmd_stop },
	{ "cont", cmd_cont },
	{ "system_reset", cmd_system_reset },
	{ "quit", cmd_quit },
	{ "query-guest", cmd_query_guest },
	{ "x-write-guest-memory", cmd_write_guest_memory },
	{ "x-read-guest-memory", cmd_read_guest_memory },
	{ "x-lazy-prefetch", cmd_x_lazy_prefetch },
	{ "x-protect-guest-memory", cmd_protect_guest_memory },
	{ "inject-memory-error", cmd_inject_memory_error },
	{ "query-memory-errors", cmd_query_memory_errors },
	{ "query-memory-error-stats", cmd_query_memory_error_stats },
	{ "migrate", cmd_migrate },
	{ "migrate_cancel", cmd_migrate_cancel },
	{ "migrate-recover", cmd_migrate_recover },
	{ "migrate-pause", cmd_migrate_pause },
	{ "migrate-start-postcopy", cmd_migrate_start_postcopy },
	{ "migrate-set-capabilities", cmd_migrate_set_capabilities },
	{ "query-migrate-capabilities", cmd_query_migrate_capabilities },
	{ "query-migrate", cmd_query_migrate },
	{ "migrate-set-parameters", cmd_migrate_set_parameters },
	{ "query-migrate-parameters", cmd_query_migrate_parameters },
};
const size_t vmm_qmp_ncommands = sizeof(vmm_qmp_commands) / sizeof(vmm_qmp_commands[0]);
