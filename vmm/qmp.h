/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A QMP server on a unix socket: greeting, capabilities negotiation,
 * {"execute", "arguments", "id"} commands answered by {"return"} or
 * {"error": {"class", "desc"}}, and asynchronous events with timestamps.
 *
 * Two halves. A session (qmp.c) is one client's protocol: bytes in,
 * commands dispatched, bytes out, with no socket, so that the fuzz target
 * runs whole sessions through exactly this code. The server (qmp_server.c)
 * owns the socket, checks who connects and moves bytes.
 *
 * Threads: the server's one thread owns every session and runs every
 * command; any thread may emit events until qmp_server_free (a mutex
 * guards their queue, taken by nothing else; after qmp_server_stop they
 * are dropped). The server prints one line on stderr for each client it
 * refuses or cuts off, with the reason (refusals at most one a second,
 * with a count of those not printed).
 *
 * Limits (what a hostile or broken client can cost):
 *   - QMP_MAX_CLIENTS sessions; a client of another uid is refused;
 *   - one message: QMP_MAX_MESSAGE bytes and QMP_MAX_VALUES containers
 *     and members (json-c builds the objects as the bytes come: the count
 *     bounds its memory, about 1 KiB a value), else an error and the
 *     client is disconnected;
 *   - QMP_MAX_DEPTH levels of nesting (json-c counts a scalar inside the
 *     innermost container as a level), else an error and the line is
 *     skipped;
 *   - after a parse error, input is skipped up to a newline, a control
 *     character or 0xFF (QMP's resynchronisation), for at most
 *     QMP_MAX_MESSAGE bytes, else an error and a disconnect;
 *   - QMP_MAX_BACKLOG bytes of output a client has not read: it is not
 *     reading, so it cannot be told; it is disconnected with the reason
 *     printed. Events waiting for the server thread are bounded alike:
 *     past the bound they are dropped, counted, and every client is told
 *     how many with a VMRAS_EVENTS_LOST event.
 * Every refusal that can be sent is a QMP error with a class. json-c
 * aborts when it cannot allocate: the limits above are what bound it.
 */
#ifndef VMRAS_VMM_QMP_H
#define VMRAS_VMM_QMP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* (The fuzz target builds with smaller limits, to reach them.) */
#define QMP_MAX_CLIENTS 16
#ifndef QMP_MAX_MESSAGE
#define QMP_MAX_MESSAGE (64 * 1024)	/* one command's JSON text */
#endif
#ifndef QMP_MAX_VALUES
#define QMP_MAX_VALUES 1024		/* objects, arrays and members in one message */
#endif
#define QMP_MAX_DEPTH 16		/* nesting; no command needs more than 4 */
#ifndef QMP_MAX_BACKLOG
#define QMP_MAX_BACKLOG (1024 * 1024)	/* unsent output before a client is dropped */
#endif
#define QMP_MAX_ALLOWED_UIDS 8		/* other users the operator lets in */

struct qmp_error {
	const char *cls;	/* "GenericError", "CommandNotFound", ... */
	char desc[256];
};

struct qmp_command {
	const char *name;
	/*
	 * Returns 0 with *ret set (NULL means {}), or -1 with err filled.
	 * args is never NULL (an empty object when none were given).
	 */
	int (*fn)(void *ctx, json_object *args, json_object **ret, struct qmp_error *err);
};

/* ---- a session: one client's protocol, no I/O -------------------------- */

struct qmp_session {
	const struct qmp_command *cmds;
	size_t ncmds;
	void *ctx;
	json_tokener *tok;
	bool negotiated;
	bool skipping;		/* after a parse error: input up to the next newline */
	bool in_string, escaped;	/* where the message's bytes are, for counting */
	unsigned char utf8_need, utf8_lo, utf8_hi;	/* inside a UTF-8 character */
	size_t msg_bytes;	/* of the message (or the skipped garbage) so far */
	unsigned int msg_values;	/* '{', '[' and ',' outside strings so far */
	char *out;		/* what the client has not been sent yet: out[out_off..out_len) */
	size_t out_off, out_len, out_cap;
	/* Set once: the session is over (out still holds what may be sent). */
	bool closed;
	char why[160];
};

int qmp_session_init(struct qmp_session *s, const struct qmp_command *cmds, size_t ncmds,
		     void *ctx);
void qmp_session_fini(struct qmp_session *s);
/* Queue the greeting. */
void qmp_session_greet(struct qmp_session *s);
/* Parse received bytes, run each whole command, queue the answers. */
void qmp_session_input(struct qmp_session *s, const char *buf, size_t len);
/* Queue an event's text (with its "\r\n") if the client negotiated. */
void qmp_session_event(struct qmp_session *s, const char *text, size_t len);
/* What waits to be sent, and how much. */
static inline const char *qmp_session_pending(const struct qmp_session *s, size_t *len)
{
	*len = s->out_len - s->out_off;
	return s->out + s->out_off;
}
/* The first n bytes of what waits were sent. */
void qmp_session_sent(struct qmp_session *s, size_t n);

/* ---- the server ------------------------------------------------------- */

struct qmp_server;

/*
 * Listen on path (created 0600). Besides the VMM's own user, the users in
 * allow_uids (nallow of them, at most QMP_MAX_ALLOWED_UIDS) may connect;
 * anyone else is refused with a QMP error.
 */
int qmp_server_start(struct qmp_server **out, const char *path,
		     const struct qmp_command *cmds, size_t ncmds, void *ctx,
		     const uid_t *allow_uids, size_t nallow, struct vmm_error *e);
/* Send an event to every negotiated client; takes ownership of data. */
void qmp_server_emit(struct qmp_server *s, const char *event, json_object *data);
/*
 * Flush what can be sent, close every client, remove the socket; events
 * emitted from now on are dropped. Then, once no thread can emit any more,
 * qmp_server_free.
 */
void qmp_server_stop(struct qmp_server *s);
void qmp_server_free(struct qmp_server *s);

/* ---- command arguments ------------------------------------------------ */

/* Argument helpers: 0, or -1 with a QMP-style error in err. */
int qmp_arg_u64(json_object *args, const char *name, bool required, uint64_t *out,
		struct qmp_error *err);
int qmp_arg_str(json_object *args, const char *name, bool required, const char **out,
		struct qmp_error *err);
int qmp_arg_bool(json_object *args, const char *name, bool required, bool *out,
		 struct qmp_error *err);
/* Reject members other than those listed (NULL-terminated). */
int qmp_args_only(json_object *args, const char *const *allowed, struct qmp_error *err);

void qmp_errorf(struct qmp_error *err, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
