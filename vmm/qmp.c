// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"

struct qmp_client {
	int fd;
	json_tokener *tok;
	bool negotiated;
	size_t msg_bytes;	/* fed since the last complete message */
	char *out;
	size_t out_len, out_cap;
};

struct qmp_event {
	struct qmp_event *next;
	char *text;		/* serialized, with a trailing "\r\n" */
};

struct qmp_server {
	int listen_fd, wake_fd;
	char path[108];
	const struct qmp_command *cmds;
	size_t ncmds;
	void *ctx;
	pthread_t thread;
	bool thread_started;
	struct qmp_client clients[QMP_MAX_CLIENTS];
	pthread_mutex_t lock;	/* events and stop */
	struct qmp_event *events, **events_tail;
	bool stopping;
};

void qmp_errorf(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	va_list ap;

	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
}

/* ---- arguments ----------------------------------------------------- */

/* The member `name` of type `type`: 1 found, 0 absent and optional, -1 error. */
static int get_arg(json_object *args, const char *name, bool required, json_type type,
		   const char *type_name, json_object **out, struct qmp_error *err)
{
	if (!json_object_object_get_ex(args, name, out) || !*out) {
		if (!required)
			return 0;
		qmp_errorf(err, "GenericError", "Parameter '%s' is missing", name);
		return -1;
	}
	if (!json_object_is_type(*out, type)) {
		qmp_errorf(err, "GenericError",
			   "Invalid parameter type for '%s', expected: %s", name, type_name);
		return -1;
	}
	return 1;
}

int qmp_arg_u64(json_object *args, const char *name, bool required, uint64_t *out,
		struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_int, "integer", &v, err);

	if (r <= 0)
		return r;
	/* json-c keeps integers above INT64_MAX as uint64. */
	if (json_object_get_int64(v) < 0) {
		qmp_errorf(err, "GenericError",
			   "Parameter '%s' expects a non-negative integer", name);
		return -1;
	}
	*out = json_object_get_uint64(v);
	return 0;
}

int qmp_arg_str(json_object *args, const char *name, bool required, const char **out,
		struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_string, "string", &v, err);

	if (r <= 0)
		return r;
	*out = json_object_get_string(v);
	return 0;
}

int qmp_arg_bool(json_object *args, const char *name, bool required, bool *out,
		 struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_boolean, "bool", &v, err);

	if (r <= 0)
		return r;
	*out = json_object_get_boolean(v);
	return 0;
}

int qmp_args_only(json_object *args, const char *const *allowed, struct qmp_error *err)
{
	json_object_object_foreach(args, key, val) {
		const char *const *a;

		(void)val;
		for (a = allowed; *a && strcmp(*a, key); a++)
			;
		if (!*a) {
			qmp_errorf(err, "GenericError", "Parameter '%s' is unexpected", key);
			return -1;
		}
	}
	return 0;
}

/* ---- output -------------------------------------------------------- */

static void client_close(struct qmp_client *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	json_tokener_free(c->tok);
	free(c->out);
	*c = (struct qmp_client){ .fd = -1 };
}

/* Queue text for a client; a client that stopped reading is dropped. */
static void client_queue(struct qmp_client *c, const char *text, size_t len)
{
	if (c->fd < 0)
		return;
	if (c->out_len + len > QMP_MAX_BACKLOG) {
		client_close(c);
		return;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			client_close(c);
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out_len += len;
}

static void client_send_json(struct qmp_client *c, json_object *o)
{
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

	client_queue(c, s, len);
	client_queue(c, "\r\n", 2);
}

static void client_flush(struct qmp_client *c)
{
	while (c->fd >= 0 && c->out_len) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				client_close(c);
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

static void send_error(struct qmp_client *c, const struct qmp_error *err, json_object *id)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(e, "class", json_object_new_string(err->cls));
	json_object_object_add(e, "desc", json_object_new_string(err->desc));
	json_object_object_add(o, "error", e);
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	client_send_json(c, o);
	json_object_put(o);
}

/* ---- commands ------------------------------------------------------ */

static void dispatch(struct qmp_server *s, struct qmp_client *c, json_object *msg)
{
	struct qmp_error err = { 0 };
	json_object *id = NULL, *exec = NULL, *args = NULL, *ret = NULL, *o;
	const struct qmp_command *cmd = NULL;
	const char *name;

	if (!json_object_is_type(msg, json_type_object)) {
		qmp_errorf(&err, "GenericError", "QMP input must be a JSON object");
		send_error(c, &err, NULL);
		return;
	}
	json_object_object_get_ex(msg, "id", &id);
	json_object_object_foreach(msg, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			qmp_errorf(&err, "GenericError", "QMP input member '%s' is unexpected", key);
			send_error(c, &err, id);
			return;
		}
	}
	if (!json_object_object_get_ex(msg, "execute", &exec) ||
	    !json_object_is_type(exec, json_type_string)) {
		qmp_errorf(&err, "GenericError", "QMP input lacks member 'execute' (a string)");
		send_error(c, &err, id);
		return;
	}
	if (json_object_object_get_ex(msg, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		qmp_errorf(&err, "GenericError", "QMP input member 'arguments' must be an object");
		send_error(c, &err, id);
		return;
	}
	name = json_object_get_string(exec);
	if (!c->negotiated && strcmp(name, "qmp_capabilities")) {
		qmp_errorf(&err, "CommandNotFound",
			   "Expecting capabilities negotiation with 'qmp_capabilities'");
		send_error(c, &err, id);
		return;
	}
	if (!strcmp(name, "qmp_capabilities")) {
		if (c->negotiated) {
			qmp_errorf(&err, "CommandNotFound",
				   "Capabilities negotiation is already complete, command ignored");
			send_error(c, &err, id);
			return;
		}
		c->negotiated = true;
	} else {
		for (size_t i = 0; i < s->ncmds; i++)
			if (!strcmp(s->cmds[i].name, name))
				cmd = &s->cmds[i];
		if (!cmd) {
			qmp_errorf(&err, "CommandNotFound", "The command %s has not been found", name);
			send_error(c, &err, id);
			return;
		}
	}

	if (cmd) {
		json_object *empty = args ? NULL : json_object_new_object();

		if (cmd->fn(s->ctx, args ? args : empty, &ret, &err)) {
			json_object_put(empty);
			if (!err.cls)
				qmp_errorf(&err, "GenericError", "%s failed", name);
			send_error(c, &err, id);
			return;
		}
		json_object_put(empty);
	}
	o = json_object_new_object();
	json_object_object_add(o, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	client_send_json(c, o);
	json_object_put(o);
}

/*
 * Feed received bytes to the client's tokener one at a time and dispatch
 * each whole message as it completes: a strict tokener refuses anything that
 * follows a complete object in the same buffer, and a client may send
 * several commands in one write (QMP allows pipelining).
 */
static void client_input(struct qmp_server *s, struct qmp_client *c, const char *buf,
			 size_t len)
{
	for (size_t off = 0; off < len && c->fd >= 0; off++) {
		json_object *msg = json_tokener_parse_ex(c->tok, buf + off, 1);
		enum json_tokener_error jerr = json_tokener_get_error(c->tok);

		if (jerr == json_tokener_continue) {
			if (++c->msg_bytes > QMP_MAX_MESSAGE) {
				struct qmp_error err;

				qmp_errorf(&err, "GenericError",
					   "JSON message longer than %d bytes", QMP_MAX_MESSAGE);
				send_error(c, &err, NULL);
				client_flush(c);
				client_close(c);
			}
			continue;
		}
		c->msg_bytes = 0;
		json_tokener_reset(c->tok);
		if (jerr != json_tokener_success) {
			struct qmp_error err;
			const char *nl = memchr(buf + off, '\n', len - off);

			qmp_errorf(&err, "GenericError", "JSON parse error, %s",
				   json_tokener_error_desc(jerr));
			send_error(c, &err, NULL);
			/* Resynchronise after the next newline (the loop steps over it). */
			off = nl ? (size_t)(nl - buf) : len;
			continue;
		}
		dispatch(s, c, msg);
		json_object_put(msg);
	}
}

static void client_accept(struct qmp_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct qmp_client *c = NULL;
	json_object *g, *q, *v, *qv;

	if (fd < 0)
		return;
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->clients[i].fd < 0) {
			c = &s->clients[i];
			break;
		}
	if (!c) {
		static const char busy[] =
			"{\"error\": {\"class\": \"GenericError\", \"desc\": \"too many QMP clients\"}}\r\n";

		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	*c = (struct qmp_client){ .fd = fd, .tok = json_tokener_new() };
	if (!c->tok) {
		close(fd);
		c->fd = -1;
		return;
	}
	json_tokener_set_flags(c->tok, JSON_TOKENER_STRICT);

	qv = json_object_new_object();
	json_object_object_add(qv, "major", json_object_new_int(0));
	json_object_object_add(qv, "minor", json_object_new_int(1));
	json_object_object_add(qv, "micro", json_object_new_int(0));
	v = json_object_new_object();
	json_object_object_add(v, "qemu", qv);
	json_object_object_add(v, "package", json_object_new_string("vmras " VMRAS_VERSION));
	q = json_object_new_object();
	json_object_object_add(q, "version", v);
	json_object_object_add(q, "capabilities", json_object_new_array());
	g = json_object_new_object();
	json_object_object_add(g, "QMP", q);
	client_send_json(c, g);
	json_object_put(g);
	client_flush(c);
}

static void deliver_events(struct qmp_server *s)
{
	struct qmp_event *ev;

	pthread_mutex_lock(&s->lock);
	ev = s->events;
	s->events = NULL;
	s->events_tail = &s->events;
	pthread_mutex_unlock(&s->lock);
	while (ev) {
		struct qmp_event *next = ev->next;

		for (int i = 0; i < QMP_MAX_CLIENTS; i++)
			if (s->clients[i].fd >= 0 && s->clients[i].negotiated)
				client_queue(&s->clients[i], ev->text, strlen(ev->text));
		free(ev->text);
		free(ev);
		ev = next;
	}
}

static void *server_thread(void *arg)
{
	struct qmp_server *s = arg;
	struct pollfd pfd[2 + QMP_MAX_CLIENTS];
	char buf[4096];

	for (;;) {
		int n = 0, map[QMP_MAX_CLIENTS];
		bool stopping;

		pthread_mutex_lock(&s->lock);
		stopping = s->stopping;
		pthread_mutex_unlock(&s->lock);
		deliver_events(s);
		for (int i = 0; i < QMP_MAX_CLIENTS; i++)
			client_flush(&s->clients[i]);
		if (stopping)
			break;

		pfd[n++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
		for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
			struct qmp_client *c = &s->clients[i];

			if (c->fd < 0)
				continue;
			map[n - 2] = i;
			pfd[n++] = (struct pollfd){
				.fd = c->fd,
				.events = POLLIN | (c->out_len ? POLLOUT : 0),
			};
		}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;

			(void)!read(s->wake_fd, &v, sizeof(v));
		}
		if (pfd[1].revents & POLLIN)
			client_accept(s);
		for (int k = 2; k < n; k++) {
			struct qmp_client *c = &s->clients[map[k - 2]];

			if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

				if (r > 0)
					client_input(s, c, buf, (size_t)r);
				else if (r == 0 || (errno != EAGAIN && errno != EINTR))
					client_close(c);
			}
		}
	}
	return NULL;
}

static void wake(struct qmp_server *s)
{
	uint64_t one = 1;

	(void)!write(s->wake_fd, &one, sizeof(one));
}

void qmp_server_emit(struct qmp_server *s, const char *event, json_object *data)
{
	struct qmp_event *ev;
	struct timeval tv;
	json_object *o, *ts;
	const char *text;

	if (!s) {
		json_object_put(data);
		return;
	}
	gettimeofday(&tv, NULL);
	ts = json_object_new_object();
	json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
	json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec));
	o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(event));
	json_object_object_add(o, "data", data ? data : json_object_new_object());
	json_object_object_add(o, "timestamp", ts);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	ev = calloc(1, sizeof(*ev));
	if (ev && asprintf(&ev->text, "%s\r\n", text) < 0)
		ev->text = NULL;
	json_object_put(o);
	if (!ev || !ev->text) {
		free(ev);
		return;
	}
	pthread_mutex_lock(&s->lock);
	*s->events_tail = ev;
	s->events_tail = &ev->next;
	pthread_mutex_unlock(&s->lock);
	wake(s);
}

int qmp_server_start(struct qmp_server **out, const char *path,
		     const struct qmp_command *cmds, size_t ncmds, void *ctx,
		     struct vmm_error *e)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct qmp_server *s;
	struct stat st;
	mode_t old_umask;
	int r;

	if (strlen(path) >= sizeof(addr.sun_path))
		return vmm_failf(e, -ENAMETOOLONG, "control socket path too long: %s", path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return vmm_fail(e, -ENOMEM, "allocate QMP server");
	s->listen_fd = s->wake_fd = -1;
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		s->clients[i].fd = -1;
	s->cmds = cmds;
	s->ncmds = ncmds;
	s->ctx = ctx;
	s->events_tail = &s->events;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->path, sizeof(s->path), "%s", path);
	memcpy(addr.sun_path, path, strlen(path));

	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		r = vmm_fail(e, -errno, "eventfd for QMP server");
		goto err;
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0) {
		r = vmm_fail(e, -errno, "socket for control %s", path);
		goto err;
	}
	/* A stale socket from an earlier run is replaced; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			r = vmm_failf(e, -EEXIST, "control path %s exists and is not a socket", path);
			goto err;
		}
		unlink(path);
	}
	/* Created 0600: only the owner may drive the VM. No threads yet. */
	old_umask = umask(0177);
	r = bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old_umask);
	if (r < 0) {
		r = vmm_fail(e, -errno, "bind control socket %s", path);
		goto err;
	}
	if (listen(s->listen_fd, 8) < 0) {
		r = vmm_fail(e, -errno, "listen on control socket %s", path);
		unlink(path);
		goto err;
	}
	r = -pthread_create(&s->thread, NULL, server_thread, s);
	if (r) {
		vmm_fail(e, r, "start QMP thread");
		unlink(path);
		goto err;
	}
	s->thread_started = true;
	*out = s;
	return 0;
err:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return r;
}

void qmp_server_stop(struct qmp_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	wake(s);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	deliver_events(s);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		client_flush(&s->clients[i]);
		client_close(&s->clients[i]);
	}
	close(s->listen_fd);
	close(s->wake_fd);
	unlink(s->path);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
