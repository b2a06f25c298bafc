/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small blocking QMP client for the vmras commands that drive a VM. */
#ifndef VMRAS_TOOL_QMP_CLIENT_H
#define VMRAS_TOOL_QMP_CLIENT_H

#include <json-c/json.h>

struct qmp_client;

/*
 * Connect, read the greeting, negotiate. -errno; *why says what failed (a
 * VM that refused: -ECONNREFUSED, *why with its reason). What the VM
 * sends is not trusted: a message that is not a JSON object is -EBADMSG,
 * one over 4 MiB -EMSGSIZE, one of over 16384 values -E2BIG; over 4 MiB of
 * events before an answer -ENOBUFS; no answer within 30 s -ETIMEDOUT.
 */
int qmpc_connect(const char *path, struct qmp_client **out, const char **why);
/* The same over a connected socket (taken, closed on failure). */
int qmpc_attach(int fd, struct qmp_client **out, const char **why);
void qmpc_close(struct qmp_client *c);

/*
 * Run a command (args may be NULL; ownership taken). Returns 0 with *ret
 * the "return" value, or -EPROTO with *errdesc set to the QMP error's
 * desc (valid until the next call), or -errno.
 */
int qmpc_execute(struct qmp_client *c, const char *cmd, json_object *args,
		 json_object **ret, const char **errdesc);

/*
 * The next event (kept while waiting for replies, or newly read), waiting
 * at most timeout_ms (-1: forever). 0 with *ev (caller puts it), -ETIMEDOUT,
 * or -errno.
 */
int qmpc_next_event(struct qmp_client *c, int timeout_ms, json_object **ev);

/* What a qmpc_* error means, in one phrase. */
const char *qmpc_strerror(int r);

#endif
