// SPDX-License-Identifier: GPL-2.0-or-later
/* The QMP server: the socket, who may connect, moving bytes (see qmp.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp.h"

#define LISTEN_BACKLOG 8

struct qmp_client {
	int fd;			/* -1: a free slot */
	struct ucred peer;
	struct qmp_session sess;
};

struct qmp_event {
	struct qmp_event *next;
	char *text;		/* serialized, with a trailing "\r\n" */
	size_t len;
};

struct qmp_server {
	int listen_fd, wake_fd;
	char path[108];
	const struct qmp_command *cmds;
	size_t ncmds;
	void *ctx;
	uid_t allow[QMP_MAX_ALLOWED_UIDS];
	size_t nallow;
	pthread_t thread;
	bool thread_started;
	struct qmp_client clients[QMP_MAX_CLIENTS];
	pthread_mutex_t lock;	/* events and stopping; a leaf */
	struct qmp_event *events, **events_tail;
	size_t events_bytes;	/* queued, at most QMP_MAX_BACKLOG */
	uint64_t events_lost;	/* dropped since the last delivery (queue full) */
	dev_t sock_dev;		/* the socket this server bound, to unlink only it */
	ino_t sock_ino;
	bool stopping;
	/* The server thread's: */
	uint64_t accept_paused_until_ms;	/* accept failed for want of fds or memory */
	uint64_t refused_last_ms, refused_quiet;	/* the refusal lines' rate limit */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- clients ------------------------------------------------------- */

static void client_flush(struct qmp_client *c)
{
	size_t len;
	const char *p;

	while (c->fd >= 0 && (p = qmp_session_pending(&c->sess, &len), len)) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A client that went (EPIPE, ECONNRESET) has nothing to be told. */
			if (errno != EAGAIN)
				c->sess.closed = true;
			return;
		}
		qmp_session_sent(&c->sess, (size_t)n);
	}
}

static void client_close(struct qmp_client *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	qmp_session_fini(&c->sess);
	c->fd = -1;
}

/*
 * A session that ended: what can still be sent (its last error) is sent
 * without waiting, and the reason printed when the server, not the
 * client, ended it.
 */
static void client_reap(struct qmp_client *c)
{
	if (c->fd < 0 || !c->sess.closed)
		return;
	client_flush(c);
	if (c->sess.why[0])
		fprintf(stderr, "vmras run: control socket: client pid %d uid %u cut off: %s\n",
			(int)c->peer.pid, (unsigned int)c->peer.uid, c->sess.why);
	client_close(c);
}

static bool uid_allowed(const struct qmp_server *s, uid_t uid)
{
	if (uid == geteuid())
		return true;
	for (size_t i = 0; i < s->nallow; i++)
		if (s->allow[i] == uid)
			return true;
	return false;
}

/* A refusal before any session: one QMP error, then the door closes. */
static void refuse(struct qmp_server *s, int fd, const struct ucred *peer, const char *desc)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	const char *text;
	uint64_t now = now_ms();

	/* Said first: the client may act on its answer at once. One line a second at most. */
	if (now - s->refused_last_ms >= 1000 || !s->refused_last_ms) {
		char more[64] = "";

		if (s->refused_quiet)
			snprintf(more, sizeof(more), " (and %llu more refusals not shown)",
				 (unsigned long long)s->refused_quiet);
		/* One write: other threads print too. */
		fprintf(stderr, "vmras run: control socket: client pid %d uid %u refused: %s%s\n",
			(int)peer->pid, (unsigned int)peer->uid, desc, more);
		s->refused_last_ms = now;
		s->refused_quiet = 0;
	} else {
		s->refused_quiet++;
	}
	json_object_object_add(e, "class", json_object_new_string("GenericError"));
	json_object_object_add(e, "desc", json_object_new_string(desc));
	json_object_object_add(o, "error", e);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (text) {
		(void)!send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)!send(fd, "\r\n", 2, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	json_object_put(o);
	close(fd);
}

static void client_accept(struct qmp_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct ucred peer = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t len = sizeof(peer);
	struct qmp_client *c = NULL;
	char why[128];

	if (fd < 0) {
		/*
		 * The connection stays queued: without a pause poll would wake
		 * at once, for ever. Out of fds or memory, try again in a second.
		 */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			fprintf(stderr, "vmras run: control socket: accept: %s; new clients wait "
				"a second\n", strerror(errno));
			s->accept_paused_until_ms = now_ms() + 1000;
		}
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0) {
		snprintf(why, sizeof(why), "its credentials are unknown (SO_PEERCRED: %s)",
			 strerror(errno));
		refuse(s, fd, &peer, why);
		return;
	}
	if (!uid_allowed(s, peer.uid)) {
		snprintf(why, sizeof(why), "uid %u may not use this control socket",
			 (unsigned int)peer.uid);
		refuse(s, fd, &peer, why);
		return;
	}
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->clients[i].fd < 0) {
			c = &s->clients[i];
			break;
		}
	if (!c) {
		refuse(s, fd, &peer, "too many QMP clients");
		return;
	}
	if (qmp_session_init(&c->sess, s->cmds, s->ncmds, s->ctx)) {
		refuse(s, fd, &peer, "no memory for another client");
		return;
	}
	c->fd = fd;
	c->peer = peer;
	qmp_session_greet(&c->sess);
	client_flush(c);
	client_reap(c);
}

/* ---- events -------------------------------------------------------- */

static void deliver_one(struct qmp_server *s, const char *text, size_t len)
{
	/* Each event sent as far as it goes: a burst does not cut off a reader. */
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->clients[i].fd >= 0) {
			qmp_session_event(&s->clients[i].sess, text, len);
			client_flush(&s->clients[i]);
		}
}

static void deliver_events(struct qmp_server *s)
{
	struct qmp_event *ev;
	uint64_t lost;

	pthread_mutex_lock(&s->lock);
	ev = s->events;
	lost = s->events_lost;
	s->events = NULL;
	s->events_tail = &s->events;
	s->events_bytes = 0;
	s->events_lost = 0;
	pthread_mutex_unlock(&s->lock);
	while (ev) {
		struct qmp_event *next = ev->next;

		deliver_one(s, ev->text, ev->len);
		free(ev->text);
		free(ev);
		ev = next;
	}
	/* Events dropped before this thread could take them: every client is told how many. */
	if (lost) {
		char text[160];
		int n = snprintf(text, sizeof(text), "{\"event\":\"VMRAS_EVENTS_LOST\",\"data\":"
				 "{\"count\":%llu},\"timestamp\":{\"seconds\":%lld,"
				 "\"microseconds\":0}}\r\n", (unsigned long long)lost,
				 (long long)time(NULL));

		deliver_one(s, text, (size_t)n);
	}
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
	int n;

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
	n = ev && text ? asprintf(&ev->text, "%s\r\n", text) : -1;
	json_object_put(o);
	if (n < 0) {
		/* Only events are lost to no memory; commands still answer. */
		free(ev);
		return;
	}
	ev->len = (size_t)n;
	pthread_mutex_lock(&s->lock);
	if (s->stopping || s->events_bytes + ev->len > QMP_MAX_BACKLOG) {
		s->events_lost += !s->stopping;
		pthread_mutex_unlock(&s->lock);
		free(ev->text);
		free(ev);
		return;
	}
	*s->events_tail = ev;
	s->events_tail = &ev->next;
	s->events_bytes += ev->len;
	pthread_mutex_unlock(&s->lock);
	wake(s);
}

/* ---- the thread ---------------------------------------------------- */

static void *server_thread(void *arg)
{
	struct qmp_server *s = arg;
	struct pollfd pfd[2 + QMP_MAX_CLIENTS];
	char buf[4096];

	for (;;) {
		int n = 0, map[QMP_MAX_CLIENTS], timeout;
		uint64_t now;
		bool stopping;

		pthread_mutex_lock(&s->lock);
		stopping = s->stopping;
		pthread_mutex_unlock(&s->lock);
		deliver_events(s);
		for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
			client_flush(&s->clients[i]);
			client_reap(&s->clients[i]);
		}
		if (stopping)
			break;

		now = now_ms();
		timeout = s->accept_paused_until_ms > now ? (int)(s->accept_paused_until_ms - now) : -1;
		pfd[n++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = timeout < 0 ? s->listen_fd : -1, .events = POLLIN };
		for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
			struct qmp_client *c = &s->clients[i];
			size_t pending;

			if (c->fd < 0)
				continue;
			qmp_session_pending(&c->sess, &pending);
			map[n - 2] = i;
			pfd[n++] = (struct pollfd){
				.fd = c->fd,
				.events = POLLIN | (pending ? POLLOUT : 0),
			};
		}
		if (poll(pfd, (nfds_t)n, timeout) < 0) {
			/* ENOMEM: the clients wait; the next round may have memory. */
			if (errno != EINTR) {
				fprintf(stderr, "vmras run: control socket: poll: %s\n",
					strerror(errno));
				sleep(1);
			}
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			uint64_t v;

			(void)!read(s->wake_fd, &v, sizeof(v));
		}
		if (pfd[1].revents & POLLIN)
			client_accept(s);
		for (int k = 2; k < n; k++) {
			struct qmp_client *c = &s->clients[map[k - 2]];
			ssize_t r;

			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0)
				qmp_session_input(&c->sess, buf, (size_t)r);
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				client_close(c);	/* the client went: nothing to say */
		}
	}
	return NULL;
}

/* ---- start and stop ------------------------------------------------ */

int qmp_server_start(struct qmp_server **out, const char *path,
		     const struct qmp_command *cmds, size_t ncmds, void *ctx,
		     const uid_t *allow_uids, size_t nallow, struct vmm_error *e)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct qmp_server *s;
	struct stat st;
	int r;

	if (strlen(path) >= sizeof(addr.sun_path))
		return vmm_failf(e, -ENAMETOOLONG, "control socket path too long: %s", path);
	if (nallow > QMP_MAX_ALLOWED_UIDS)
		return vmm_failf(e, -E2BIG, "control socket: more than %d other users allowed",
				 QMP_MAX_ALLOWED_UIDS);
	s = calloc(1, sizeof(*s));
	if (!s)
		return vmm_fail(e, -ENOMEM, "allocate QMP server");
	s->listen_fd = s->wake_fd = -1;
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		s->clients[i].fd = -1;
	s->cmds = cmds;
	s->ncmds = ncmds;
	s->ctx = ctx;
	if (nallow)
		memcpy(s->allow, allow_uids, nallow * sizeof(*allow_uids));
	s->nallow = nallow;
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
	/* A stale socket from an earlier run is replaced; a live one or anything else is not. */
	if (lstat(path, &st) == 0) {
		int probe_fd;

		if (!S_ISSOCK(st.st_mode)) {
			r = vmm_failf(e, -EEXIST, "control path %s exists and is not a socket", path);
			goto err;
		}
		/* Non-blocking: a listener with a full backlog must not hold this VMM. */
		probe_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (probe_fd < 0) {
			r = vmm_fail(e, -errno, "socket to check control %s", path);
			goto err;
		}
		r = connect(probe_fd, (struct sockaddr *)&addr, sizeof(addr)) ? -errno : 0;
		close(probe_fd);
		if (!r || r == -EAGAIN) {
			r = vmm_failf(e, -EADDRINUSE, "control socket %s is in use by another "
				      "process", path);
			goto err;
		}
		/* Only a socket nobody listens on is stale; anything else is not ours to remove. */
		if (r != -ECONNREFUSED) {
			r = vmm_fail(e, r, "check control socket %s", path);
			goto err;
		}
		unlink(path);
	}
	if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = vmm_fail(e, -errno, "bind control socket %s", path);
		goto err;
	}
	/*
	 * 0600 before listen (no one can connect before it): only the owner
	 * may reach it; the others the operator allows need the mode widened
	 * or a directory of their own. The uid check is what lets them in.
	 */
	if (chmod(path, 0600) < 0 || lstat(path, &st) < 0) {
		r = vmm_fail(e, -errno, "chmod 0600 control socket %s", s->path);
		unlink(path);
		goto err;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	if (listen(s->listen_fd, LISTEN_BACKLOG) < 0) {
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
	struct stat st;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	wake(s);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	/* What was emitted before the stop still goes out, as far as it can. */
	deliver_events(s);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		client_flush(&s->clients[i]);
		client_close(&s->clients[i]);
	}
	close(s->listen_fd);
	s->listen_fd = -1;
	/* Only if the path is still this server's socket (not a successor's). */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
		unlink(s->path);
}

void qmp_server_free(struct qmp_server *s)
{
	struct qmp_event *ev;

	if (!s)
		return;
	qmp_server_stop(s);
	/* Nothing is queued after the stop; this is for a stop that was never made. */
	while ((ev = s->events)) {
		s->events = ev->next;
		free(ev->text);
		free(ev);
	}
	close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
