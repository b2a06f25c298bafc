// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp_client.h"

#define MAX_KEPT 1024
#define MAX_KEPT_BYTES (4 << 20)	/* events read while waiting for an answer */
#define ANSWER_MS 30000		/* a command's answer, however many events come first */
/*
 * What one message from the VM may be (the fuzz target builds with less):
 * the largest answer (query-memory-errors) is tens of KiB and about 3,500
 * values; json-c builds each value as the bytes come, about 1 KiB each.
 */
#ifndef QMPC_MAX_MESSAGE
#define QMPC_MAX_MESSAGE (4 << 20)
#endif
#ifndef QMPC_MAX_VALUES
#define QMPC_MAX_VALUES 16384
#endif

struct qmp_client {
	int fd;
	json_tokener *tok;
	char buf[4096];
	size_t len, off;
	size_t msg_bytes;		/* of the message being read */
	unsigned int msg_values;	/* its '{', '[' and ',' outside strings */
	bool in_string, escaped;
	size_t kept_bytes;
	int broken;			/* -errno: the stream went past what can be read */
	json_object *kept[MAX_KEPT];	/* events read while waiting for a reply */
	unsigned int nkept;
	json_object *last_error;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * What json-c will allocate for in the bytes it just took: objects, arrays
 * and members (one per ',' outside strings). -1 past QMPC_MAX_VALUES.
 */
static int count_values(struct qmp_client *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];

		if (c->in_string) {
			if (c->escaped)
				c->escaped = false;
			else if (ch == '\\')
				c->escaped = true;
			else if (ch == '"')
				c->in_string = false;
		} else if (ch == '"') {
			c->in_string = true;
		} else if ((ch == '{' || ch == '[' || ch == ',') && ++c->msg_values > QMPC_MAX_VALUES) {
			return -1;
		}
	}
	return 0;
}

/*
 * A message too big to read: the stream cannot be followed past it. What
 * json-c built of it is freed now, and every later read fails the same.
 */
static int broken(struct qmp_client *c, int err)
{
	json_tokener_reset(c->tok);
	c->broken = err;
	return err;
}

/*
 * The next JSON object; -ETIMEDOUT, -ECONNRESET on EOF, -EBADMSG for what
 * is not a JSON object, -EMSGSIZE for one over QMPC_MAX_MESSAGE bytes,
 * -E2BIG for one of over QMPC_MAX_VALUES values.
 */
static int next_message(struct qmp_client *c, int timeout_ms, json_object **out)
{
	if (c->broken)
		return c->broken;
	for (;;) {
		/*
		 * A byte at a time, as the VMM's server reads: a strict tokener
		 * refuses whatever follows a whole value in the same buffer.
		 */
		while (c->off < c->len) {
			char ch = c->buf[c->off++];
			json_object *o;
			enum json_tokener_error err;

			if (!c->msg_bytes && (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'))
				continue;
			if (count_values(c, &ch, 1))
				return broken(c, -E2BIG);
			c->msg_bytes++;
			o = json_tokener_parse_ex(c->tok, &ch, 1);
			err = json_tokener_get_error(c->tok);
			if (err == json_tokener_continue) {
				if (c->msg_bytes > QMPC_MAX_MESSAGE)
					return broken(c, -EMSGSIZE);
				continue;
			}
			json_tokener_reset(c->tok);
			c->msg_bytes = 0;
			c->msg_values = 0;
			c->in_string = c->escaped = false;
			if (err != json_tokener_success || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				return -EBADMSG;
			}
			*out = o;
			return 0;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(c->fd, c->buf, sizeof(c->buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		c->len = (size_t)n;
		c->off = 0;
	}
}

static int send_json(struct qmp_client *c, json_object *o)
{
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

	while (len) {
		ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		s += n;
		len -= (size_t)n;
	}
	return send(c->fd, "\n", 1, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

int qmpc_execute(struct qmp_client *c, const char *cmd, json_object *args,
		 json_object **ret, const char **errdesc)
{
	json_object *o = json_object_new_object(), *m, *v;
	uint64_t deadline;
	int r;

	json_object_object_add(o, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(o, "arguments", args);
	r = send_json(c, o);
	json_object_put(o);
	if (r)
		return r;
	deadline = now_ms() + ANSWER_MS;
	for (;;) {
		uint64_t now = now_ms();

		r = now < deadline ? next_message(c, (int)(deadline - now), &m) : -ETIMEDOUT;
		if (r)
			return r;
		if (json_object_object_get_ex(m, "event", NULL)) {
			size_t len = strlen(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));

			/* Kept for qmpc_next_event; more than that is not a VM answering. */
			if (c->nkept == MAX_KEPT || c->kept_bytes + len > MAX_KEPT_BYTES) {
				json_object_put(m);
				return -ENOBUFS;
			}
			c->kept[c->nkept++] = m;
			c->kept_bytes += len;
			continue;
		}
		if (json_object_object_get_ex(m, "return", &v)) {
			/* QMP returns a value, {} at least: null is not an answer. */
			*ret = json_object_get(v);
			json_object_put(m);
			return v ? 0 : -EBADMSG;
		}
		json_object_put(c->last_error);
		c->last_error = m;
		*errdesc = "an answer with neither a return nor an error description";
		if (json_object_object_get_ex(m, "error", &v) &&
		    json_object_object_get_ex(v, "desc", &v) && json_object_is_type(v, json_type_string))
			*errdesc = json_object_get_string(v);
		return -EPROTO;
	}
}

int qmpc_next_event(struct qmp_client *c, int timeout_ms, json_object **ev)
{
	json_object *m;
	int r;

	if (c->nkept) {
		*ev = c->kept[0];
		memmove(c->kept, c->kept + 1, --c->nkept * sizeof(c->kept[0]));
		if (!c->nkept)
			c->kept_bytes = 0;
		return 0;
	}
	for (;;) {
		r = next_message(c, timeout_ms, &m);
		if (r)
			return r;
		if (json_object_object_get_ex(m, "event", NULL)) {
			*ev = m;
			return 0;
		}
		json_object_put(m); /* a stray reply */
	}
}

int qmpc_attach(int fd, struct qmp_client **out, const char **why)
{
	static __thread char refused[200];
	struct qmp_client *c = calloc(1, sizeof(*c));
	json_object *greeting, *ret, *err;
	const char *desc;
	int r;

	*why = "allocate a QMP client";
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->tok = json_tokener_new();
	if (!c->tok) {
		r = -ENOMEM;
		goto err;
	}
	/* QMP is JSON: no single-quoted strings, no trailing text in a value. */
	json_tokener_set_flags(c->tok, JSON_TOKENER_STRICT);
	*why = "read the QMP greeting";
	r = next_message(c, 10000, &greeting);
	if (r)
		goto err;
	r = json_object_object_get_ex(greeting, "QMP", NULL) ? 0 : -EPROTO;
	if (r && json_object_object_get_ex(greeting, "error", &err) &&
	    json_object_object_get_ex(err, "desc", &err) && json_object_is_type(err, json_type_string)) {
		/* The VM said no (another uid, too many clients): its reason, not ours. */
		snprintf(refused, sizeof(refused), "the VM refused the connection (%s)",
			 json_object_get_string(err));
		*why = refused;
		r = -ECONNREFUSED;
	}
	json_object_put(greeting);
	if (r)
		goto err;
	*why = "negotiate capabilities";
	r = qmpc_execute(c, "qmp_capabilities", NULL, &ret, &desc);
	if (r)
		goto err;
	json_object_put(ret);
	*out = c;
	return 0;
err:
	qmpc_close(c);
	return r;
}

int qmpc_connect(const char *path, struct qmp_client **out, const char **why)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, r;

	*why = "connect";
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		r = -errno;
		close(fd);
		return r;
	}
	return qmpc_attach(fd, out, why);
}

void qmpc_close(struct qmp_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->tok)
		json_tokener_free(c->tok);
	for (unsigned int i = 0; i < c->nkept; i++)
		json_object_put(c->kept[i]);
	json_object_put(c->last_error);
	free(c);
}

const char *qmpc_strerror(int r)
{
	switch (r) {
	case -EBADMSG: return "the VM sent something that is not a JSON object";
	case -EMSGSIZE: return "the VM sent a message over 4 MiB";
	case -E2BIG: return "the VM sent a message of too many values";
	case -ENOBUFS: return "the VM sent over 4 MiB of events without answering";
	case -ETIMEDOUT: return "no answer from the VM within 30 s";
	case -ECONNRESET: return "the VM closed the control connection";
	default: return strerror(-r);
	}
}
