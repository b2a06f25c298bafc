// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the vmras commands' QMP client
 * (tools/vmras/qmp_client.c): any bytes as what the VM at the other end of
 * the socket sends, then the end of the connection. The client reads the
 * greeting, negotiates, runs a command and reads events until the
 * connection ends, as `vmras inject` and `vmras events` do. Besides
 * crashes and sanitizer reports it aborts when an invariant fails:
 *   - every call returns 0 or a negative errno, and what it returns on
 *     success is there: a return value, an event object, an error's text;
 *   - the connection's end is an error, never a hang (poll is bounded).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_client *c;
	const char *why = NULL, *desc = NULL;
	json_object *ret = NULL, *ev;
	int sv[2], r;
	size_t off = 0;

	/* The whole input fits the socket's buffer (libFuzzer's inputs are at most 64 KiB here). */
	if (size > (64 << 10) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	while (off < size) {
		ssize_t n = write(sv[1], data + off, size - off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);
	r = qmpc_attach(sv[0], &c, &why);
	if (r) {
		if (r > 0 || !why)
			abort();
		close(sv[1]);
		return 0;
	}
	r = qmpc_execute(c, "query-status", NULL, &ret, &desc);
	if (r > 0 || (r == 0 && !ret) || (r == -EPROTO && !desc))
		abort();
	json_object_put(ret);
	while ((r = qmpc_next_event(c, 1000, &ev)) == 0) {
		if (!json_object_is_type(ev, json_type_object))
			abort();
		json_object_put(ev);
	}
	if (r > 0 || r == -ETIMEDOUT)
		abort();
	qmpc_close(c);
	close(sv[1]);
	return 0;
}
