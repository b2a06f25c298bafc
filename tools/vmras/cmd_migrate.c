// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras migrate: move a running VM (or snapshot it to a file) over its
 * control socket: migrate-set-parameters, migrate, then query-migrate and
 * the MIGRATION events until it is over, with a progress line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "qmp_client.h"

#define PAGE 4096ULL
#define TTY_TICK_MS 250		/* a progress line rewritten in place */
#define LOG_TICK_MS 1000	/* one progress line a second */
#define CANCEL_WAIT_MS 30000	/* for the cancelled status after Ctrl-C */

static volatile sig_atomic_t interrupted;	/* the signal, or 0 */
static volatile sig_atomic_t interrupts;

static void on_signal(int sig)
{
	interrupted = sig;
	interrupts++;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A member, or def when it is absent or not a number (field names may change). */
static uint64_t num(json_object *o, const char *k, uint64_t def)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return def;
	return json_object_get_uint64(v);
}

static bool has(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int);
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v) : NULL;
}

/* One query-migrate answer, whatever names its fields have. */
struct mig_info {
	const char *status;	/* NULL: no migration */
	const char *error;
	uint64_t total, transferred, pages, data, zero, poisoned, syncs;
	uint64_t total_ms, downtime_ms, setup_ms;
	bool has_downtime;
};

static void mig_info(json_object *q, struct mig_info *m)
{
	json_object *ram = NULL;

	json_object_object_get_ex(q, "ram", &ram);
	*m = (struct mig_info){ .status = str(q, "status"), .error = str(q, "error-desc") };
	m->total = num(ram, "total", 0);
	m->transferred = num(ram, "transferred", 0);
	m->poisoned = num(ram, "poisoned-pages", 0);
	/* QEMU's names (normal, duplicate) or the first ones (pages, zero-pages). */
	m->zero = has(ram, "duplicate") ? num(ram, "duplicate", 0) : num(ram, "zero-pages", 0);
	if (has(ram, "pages")) {
		m->pages = num(ram, "pages", 0);
		m->data = m->pages - (m->zero + m->poisoned < m->pages ? m->zero + m->poisoned
								       : m->pages);
	} else {
		m->data = num(ram, "normal", 0);
		m->pages = m->data + m->zero + m->poisoned;
	}
	m->syncs = num(ram, "dirty-sync-count", 0);
	m->total_ms = num(q, "total-time", 0);
	m->setup_ms = num(q, "setup-time", 0);
	m->has_downtime = has(q, "downtime");
	m->downtime_ms = num(q, "downtime", 0);
}

static bool finished(const char *status)
{
	return status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
			  !strcmp(status, "cancelled"));
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1 << 20);
}

struct progress {
	bool tty;
	bool shown;		/* a tty line is on screen */
	size_t width;		/* its length, to blank it */
	uint64_t rate_t, rate_bytes;	/* the rate's last sample */
	double rate;		/* bytes/s */
	bool windowed;		/* rate is over a window, not the average */
};

/* Take the progress line off the screen (before another line is printed). */
static void progress_clear(struct progress *p)
{
	if (p->tty && p->shown) {
		fprintf(stderr, "\r%*s\r", (int)p->width, "");
		fflush(stderr);
		p->shown = false;
	}
}

static void progress_show(struct progress *p, const struct mig_info *m)
{
	uint64_t t = now_ms();
	unsigned int pct = 0;
	char line[200];
	int n;

	/* The rate over the last second or so; in the first one, the average. */
	if (!p->rate_t) {
		p->rate_t = t;
		p->rate_bytes = m->transferred;
	}
	if (!p->windowed && m->total_ms)
		p->rate = (double)m->transferred * 1000 / (double)m->total_ms;
	if (t - p->rate_t >= 900) {
		p->windowed = true;
		p->rate = (double)(m->transferred - p->rate_bytes) * 1000 / (double)(t - p->rate_t);
		p->rate_t = t;
		p->rate_bytes = m->transferred;
	}
	/* Pages sent again (dirtied meanwhile) go over 100%: it is not done until it is. */
	if (m->total)
		pct = (unsigned int)(m->pages * PAGE * 100 / m->total);
	if (pct > 99)
		pct = 99;
	n = snprintf(line, sizeof(line), "%s migrate: %-6s %2u%%  %.1f MiB  %.1f MiB/s  "
		     "dirty syncs %" PRIu64 "  poisoned %" PRIu64, prog, m->status, pct,
		     mib(m->transferred), p->rate / (1 << 20), m->syncs, m->poisoned);
	if (n < 0)
		return;
	if (n >= (int)sizeof(line))
		n = (int)sizeof(line) - 1;
	if (p->tty) {
		struct winsize ws;

		/* A line that wraps cannot be rewritten in place. */
		if (!ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) && ws.ws_col > 1 && n >= ws.ws_col) {
			n = ws.ws_col - 1;
			line[n] = '\0';
		}
		fprintf(stderr, "\r%s%*s", line, (int)(p->width > (size_t)n ? p->width - (size_t)n : 0),
			"");
		p->width = (size_t)n;
		p->shown = true;
	} else {
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
}

static void migrate_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s migrate --control SOCK --to URI [--downtime-limit MS]\n"
		"                     [--max-bandwidth BYTES] [--detach]\n"
		"Move the VM behind SOCK (vmras run --control) to a destination started\n"
		"with `vmras run --incoming URI` and the same --mem, --vcpus, --seed,\n"
		"--passes; or snapshot it to file:PATH. Poisoned pages go as poisoned.\n"
		"  --to URI               tcp:HOST:PORT, unix:PATH or file:PATH\n"
		"  --downtime-limit MS    the longest the guest may stop at the end\n"
		"  --max-bandwidth BYTES  bytes/s while the guest runs (K, M, G: binary\n"
		"                         multiples; 0: no limit)\n"
		"  --detach               return once the VM has accepted the migration\n"
		"A progress line goes to stderr; the summary to stdout. Ctrl-C cancels the\n"
		"migration (the guest runs on at the source).\n"
		"Exit status: 0 completed (or accepted, with --detach); 1 the migration\n"
		"failed or was cancelled, or the VM could not be told; 2 usage; 130 Ctrl-C.\n",
		prog);
}

static const char *why(int r, const char *desc)
{
	return r == -EPROTO ? desc : qmpc_strerror(r);
}

/*
 * Wait up to ms for a MIGRATION event that ends it (then true), or for
 * another signal than the seen ones; other events are dropped. A lost
 * connection: *r = -errno.
 */
static bool wait_end_event(struct qmp_client *c, int ms, sig_atomic_t seen, int *r)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	for (;;) {
		uint64_t t = now_ms();
		json_object *ev, *data = NULL;
		bool over;

		*r = 0;
		if (t >= end || interrupts != seen)
			return false;
		*r = qmpc_next_event(c, (int)(end - t), &ev);
		if (*r == -ETIMEDOUT) {
			*r = 0;
			return false;
		}
		if (*r)
			return false;
		over = str(ev, "event") && !strcmp(str(ev, "event"), "MIGRATION") &&
		       json_object_object_get_ex(ev, "data", &data) &&
		       finished(str(data, "status"));
		json_object_put(ev);
		if (over)
			return true;
	}
}

int migrate_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 't' },
		{ "downtime-limit", required_argument, NULL, 'd' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "detach", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL, *uri = NULL, *desc = "", *what;
	json_object *params = json_object_new_object(), *ret, *q = NULL;
	struct progress p = { .tty = isatty(STDERR_FILENO) };
	struct sigaction sa = { .sa_handler = on_signal };
	struct qmp_client *c = NULL;
	bool detach = false, cancel_sent = false;
	uint64_t v, cancel_deadline = 0, last_line = 0;
	struct mig_info m;
	int opt, r, code = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': uri = optarg; break;
		case 'd':
			if (tool_parse_size(optarg, false, &v)) {
				tool_error("migrate", "--downtime-limit: not a number of milliseconds: '%s'",
					   optarg);
				goto usage;
			}
			json_object_object_add(params, "downtime-limit", json_object_new_uint64(v));
			break;
		case 'b':
			if (tool_parse_size(optarg, true, &v)) {
				tool_error("migrate", "--max-bandwidth: not a number of bytes/s: '%s'",
					   optarg);
				goto usage;
			}
			json_object_object_add(params, "max-bandwidth", json_object_new_uint64(v));
			break;
		case 'D': detach = true; break;
		case 'h':
			migrate_usage(stdout);
			json_object_put(params);
			return 0;
		default: goto usage;
		}
	}
	if (optind != argc) {
		tool_error("migrate", "unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (!path || !uri) {
		tool_error("migrate", "--control SOCK and --to URI are required");
		goto usage;
	}

	r = qmpc_connect(path, &c, &what);
	if (r) {
		tool_error("migrate", "%s %s: %s", what, path,
			   why(r, "an unexpected answer (not a vmras control socket?)"));
		json_object_put(params);
		return 1;
	}
	if (json_object_object_length(params)) {
		r = qmpc_execute(c, "migrate-set-parameters", params, &ret, &desc);
		params = NULL;
		if (r) {
			tool_error("migrate", "migrate-set-parameters: %s", why(r, desc));
			goto out;
		}
		json_object_put(ret);
	} else {
		json_object_put(params);
		params = NULL;
	}

	/* From here Ctrl-C cancels what it started. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	{
		json_object *args = json_object_new_object();

		json_object_object_add(args, "uri", json_object_new_string(uri));
		r = qmpc_execute(c, "migrate", args, &ret, &desc);
	}
	if (r) {
		tool_error("migrate", "migrate to %s: %s", uri, why(r, desc));
		goto out;
	}
	json_object_put(ret);
	if (detach && !interrupts) {
		code = 0;
		goto out;
	}
	/* The first line after a second: one that fails at once says only why. */
	last_line = now_ms();

	for (;;) {
		if (interrupts && !cancel_sent) {
			r = qmpc_execute(c, "migrate_cancel", NULL, &ret, &desc);
			if (r) {
				progress_clear(&p);
				tool_error("migrate", "interrupted, and migrate_cancel failed: %s",
					   why(r, desc));
				code = 128 + interrupted;
				goto out;
			}
			json_object_put(ret);
			cancel_sent = true;
			cancel_deadline = now_ms() + CANCEL_WAIT_MS;
		}
		if (interrupts > 1 || (cancel_sent && now_ms() > cancel_deadline)) {
			progress_clear(&p);
			tool_error("migrate", "interrupted: migrate_cancel sent, not waiting for "
				   "the migration to stop");
			code = 128 + interrupted;
			goto out;
		}
		json_object_put(q);
		q = NULL;
		r = qmpc_execute(c, "query-migrate", NULL, &q, &desc);
		if (r) {
			progress_clear(&p);
			tool_error("migrate", "query-migrate: %s", why(r, desc));
			goto out;
		}
		mig_info(q, &m);
		if (!m.status) {
			progress_clear(&p);
			tool_error("migrate", "query-migrate: the VM reports no migration");
			goto out;
		}
		if (finished(m.status))
			break;
		if (p.tty || now_ms() - last_line >= LOG_TICK_MS) {
			progress_show(&p, &m);
			last_line = now_ms();
		}
		/* Until the next line, or the event that ends it. */
		wait_end_event(c, p.tty ? TTY_TICK_MS : LOG_TICK_MS / 4, interrupts, &r);
		if (r) {
			progress_clear(&p);
			tool_error("migrate", "reading %s: %s", path, why(r, desc));
			goto out;
		}
	}

	progress_clear(&p);
	if (!strcmp(m.status, "completed")) {
		printf("%s migrate: completed in %" PRIu64 " ms (downtime %" PRIu64 " ms, setup %"
		       PRIu64 " ms): %" PRIu64 " pages sent (%" PRIu64 " data, %" PRIu64 " zero, %"
		       PRIu64 " poisoned), %.1f MiB, %" PRIu64 " dirty syncs%s\n", prog, m.total_ms,
		       m.downtime_ms, m.setup_ms, m.pages, m.data, m.zero, m.poisoned,
		       mib(m.transferred), m.syncs,
		       interrupts ? " (too late to cancel: the guest had moved)" : "");
		fflush(stdout);
		code = 0;
	} else if (interrupts && !strcmp(m.status, "cancelled")) {
		tool_error("migrate", "migration cancelled (interrupted); the guest runs on at "
			   "the source");
		code = 128 + interrupted;
	} else {
		tool_error("migrate", "migration failed: %s", m.error ? m.error : m.status);
	}
out:
	json_object_put(q);
	qmpc_close(c);
	return code;
usage:
	json_object_put(params);
	return 2;
}
