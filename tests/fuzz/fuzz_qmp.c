// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for whole QMP sessions: any bytes as what one client
 * sends, cut into reads of varying sizes, through the session (vmm/qmp.c)
 * and the VMM's real commands (vmm/control.c), whose argument checks run
 * as they do in the VMM. The VM under them is a stub: each call the
 * commands make is checked against what the real function would accept
 * (a range inside RAM, a buffer of the length given, a vCPU that exists)
 * and answers like it.
 *
 * It is built with QMP_MAX_MESSAGE 512, QMP_MAX_VALUES 64 and
 * QMP_MAX_BACKLOG 16 KiB, so that inputs of libFuzzer's size reach them; a client may read nothing
 * and events may come between reads (the first byte says).
 *
 * Besides crashes and sanitizer reports it aborts when an invariant fails:
 *   - every line the session queued is one strict, UTF-8 JSON object: a
 *     greeting, a {"return"}, an {"error": {"class", "desc"}} or an event,
 *     never a half message;
 *   - what waits to be sent never exceeds QMP_MAX_BACKLOG;
 *   - a session that ended says why.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "migration.h"
#include "postcopy.h"
#include "qmp.h"
#include "vmm_internal.h"
#include "vmras/lazy.h"

#define RAM_SIZE (8ULL << 20)
#define MAX_WRITE_BYTES 4096	/* control.c's */

static struct vmm vm;
static struct migration_params params;
static bool postcopy_cap, stopped;

static int check_range(uint64_t gpa, uint64_t len, struct vmm_error *e)
{
	if (!len || gpa >= RAM_SIZE || len > RAM_SIZE - gpa)
		return vmm_failf(e, -EINVAL, "outside RAM");
	return 0;
}

/* ---- the stubbed VM -------------------------------------------------- */

void migration_cancel(struct vmm *v) { (void)v; }
void migration_get_params(struct vmm *v, struct migration_params *p) { (void)v; *p = params; }
bool migration_get_postcopy(struct vmm *v) { (void)v; return postcopy_cap; }
bool migration_handed_over(struct vmm *v) { (void)v; return false; }
bool migration_incoming_active(struct vmm *v) { (void)v; return false; }
bool vmm_frozen(struct vmm *v) { (void)v; return false; }
void vmm_stop(struct vmm *v) { (void)v; stopped = true; }
void vmm_cont(struct vmm *v) { (void)v; stopped = false; }
void vmm_request_quit(struct vmm *v, const char *reason) { (void)v; (void)strlen(reason); }
enum vmm_status vmm_status(struct vmm *v) { (void)v; return stopped ? VMM_PAUSED : VMM_RUNNING; }
const char *vmm_status_name(enum vmm_status s) { return s == VMM_PAUSED ? "paused" : "running"; }

int migration_pause(struct vmm *v, struct vmm_error *e)
{
	(void)v;
	return vmm_fail(e, -ENOENT, "no migration");
}

int migration_start_postcopy(struct vmm *v, struct vmm_error *e)
{
	(void)v;
	return vmm_fail(e, -ENOENT, "no migration");
}

int postcopy_in_recover(struct vmm *v, const char *uri, struct vmm_error *e)
{
	(void)v;
	return vmm_failf(e, -ENOENT, "nothing to recover at %s", uri);
}

int migration_start(struct vmm *v, const char *uri, bool resume, struct vmm_error *e)
{
	(void)v, (void)resume;
	/* The stub never connects: a refusal that names the URI. */
	return vmm_failf(e, -ECONNREFUSED, "migrate to %s", uri);
}

int migration_set_postcopy(struct vmm *v, bool on, struct vmm_error *e)
{
	(void)v, (void)e;
	postcopy_cap = on;
	return 0;
}

int migration_set_params(struct vmm *v, const struct migration_params *p, struct vmm_error *e)
{
	(void)v, (void)e;
	params = *p;
	return 0;
}

json_object *migration_query(struct vmm *v)
{
	json_object *o = json_object_new_object();

	(void)v;
	json_object_object_add(o, "status", json_object_new_string("none"));
	return o;
}

json_object *vmm_guest_report_json(struct vmm *v)
{
	(void)v;
	return json_object_new_object();
}

json_object *vmm_memory_errors_json(struct vmm *v)
{
	(void)v;
	return json_object_new_object();
}

json_object *vmm_memory_error_stats_json(struct vmm *v)
{
	(void)v;
	return json_object_new_object();
}

int vmm_system_reset(struct vmm *v, struct vmm_error *e)
{
	(void)v, (void)e;
	return 0;
}

int vmm_write_guest(struct vmm *v, uint64_t gpa, const void *buf, size_t len,
		    struct vmm_error *e)
{
	const volatile unsigned char *b = buf;

	(void)v;
	if (len > MAX_WRITE_BYTES)
		abort();
	if (len)
		(void)b[len - 1];	/* ASan checks that buf holds len bytes */
	return check_range(gpa, len, e);
}

int vmm_read_guest(struct vmm *v, uint64_t gpa, void *buf, size_t len, struct vmm_error *e)
{
	(void)v;
	if (check_range(gpa, len, e))
		return -EINVAL;
	memset(buf, 0x5a, len);
	return 0;
}

int vmm_protect_guest(struct vmm *v, uint64_t gpa, uint64_t size, int prot,
		      struct vmm_error *e)
{
	(void)v;
	if (prot & ~(PROT_READ | PROT_WRITE))
		abort();
	return check_range(gpa, size, e);
}

int vmm_inject_error(struct vmm *v, uint64_t gpa, enum vmras_error_kind kind, int vcpu,
		     bool signal, struct vmm_error *e)
{
	(void)v, (void)kind, (void)signal;
	if (vcpu >= (int)vm.cfg.nr_vcpus)
		abort();
	return check_range(gpa, 1, e);
}

int vmras_lazy_set_prefetch(struct vmras *v, bool on)
{
	(void)v, (void)on;
	return -ENOENT;
}

/* ---- the session ----------------------------------------------------- */

/*
 * Every queued line is one JSON object of the four kinds (greeting, return,
 * error, event); with drain, it is then "sent" (else the client reads
 * nothing and the lines pile up, as far as the backlog's limit).
 */
static void check_output(struct qmp_session *s, bool drain)
{
	size_t len;
	char *p = (char *)qmp_session_pending(s, &len), *end = p + len;
	json_tokener *tok;

	if (len > QMP_MAX_BACKLOG)
		abort();
	if (!drain)
		return;
	tok = json_tokener_new();
	if (!tok)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		json_object *o, *e, *x;

		if (!nl || nl == p || nl[-1] != '\r')
			abort();
		json_tokener_reset(tok);
		o = json_tokener_parse_ex(tok, p, (int)(nl - 1 - p));
		if (!o || !json_object_is_type(o, json_type_object) ||
		    json_tokener_get_parse_end(tok) != (size_t)(nl - 1 - p))
			abort();
		if (json_object_object_get_ex(o, "error", &e) &&
		    (!json_object_object_get_ex(e, "class", &x) || !json_object_get_string(x)[0] ||
		     !json_object_object_get_ex(e, "desc", &x)))
			abort();
		if (!json_object_object_get_ex(o, "error", &e) &&
		    !json_object_object_get_ex(o, "return", &x) &&
		    !json_object_object_get_ex(o, "QMP", &x) &&
		    !json_object_object_get_ex(o, "event", &x))
			abort();
		json_object_put(o);
		p = nl + 1;
	}
	json_tokener_free(tok);
	qmp_session_sent(s, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t reads[] = { 4096, 1, 7, 64, 4096, 3, 512, 4096 };
	static const char ev[] = "{\"event\": \"STOP\", \"data\": {}, \"timestamp\": "
				 "{\"seconds\": 1, \"microseconds\": 2}}\r\n";
	struct qmp_session s;
	size_t off = 0;
	unsigned int k, mode;

	if (!size)
		return 0;
	/*
	 * The first byte picks how the stream is cut into reads (bits 0-2),
	 * whether the client reads what it is sent (bit 3: not; then the
	 * backlog's limit is reached) and whether events come between reads
	 * (bit 4).
	 */
	k = data[0] & 7;
	mode = data[0];
	data++, size--;
	vm.cfg.nr_vcpus = 2;
	vm.ram.page_size = 4096;
	params = (struct migration_params){ 300, 0, 0 };
	postcopy_cap = stopped = false;
	if (qmp_session_init(&s, vmm_qmp_commands, vmm_qmp_ncommands, &vm))
		return 0;
	qmp_session_greet(&s);
	check_output(&s, true);
	while (off < size && !s.closed) {
		size_t n = reads[k++ % (sizeof(reads) / sizeof(reads[0]))];

		if (n > size - off)
			n = size - off;
		qmp_session_input(&s, (const char *)data + off, n);
		if (mode & 16)
			qmp_session_event(&s, ev, sizeof(ev) - 1);
		check_output(&s, !(mode & 8));
		off += n;
	}
	check_output(&s, true);
	if (s.closed && !s.why[0])
		abort();
	qmp_session_fini(&s);
	return 0;
}
