/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A QMP server on a unix socket: greeting, capabilities negotiation,
 * {"execute", "arguments", "id"} commands answered by {"return"} or
 * {"error": {"class", "desc"}}, and asynchronous events with timestamps.
 * One thread; any thread may emit events.
 */
#ifndef VMRAS_VMM_QMP_H
#define VMRAS_VMM_QMP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define QMP_MAX_CLIENTS 16
#define QMP_MAX_MESSAGE (64 * 1024)	/* one command's JSON text */
#define QMP_MAX_BACKLOG (1024 * 1024)	/* unsent output before a client is dropped */

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

struct qmp_server;

int qmp_server_start(struct qmp_server **out, const char *path,
		     const struct qmp_command *cmds, size_t ncmds, void *ctx,
		     struct vmm_error *e);
/* Send an event to every negotiated client; takes ownership of data. */
void qmp_server_emit(struct qmp_server *s, const char *event, json_object *data);
/* Flush what can be sent, close every client, remove the socket. */
void qmp_server_stop(struct qmp_server *s);

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
