// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The operator's view of the durable record: `vmras errors` (what went
 * wrong, each bad page's history, a summary with what QEMU would have
 * lost), `vmras metrics` (Prometheus text) and `vmras exporter` (the same
 * over HTTP). All of them read the database another process may be
 * writing (WAL: readers never block the writers).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cmd.h"
#include "http.h"
#include "vmm.h"

#define READ_BUSY_MS 2000
#define SCHEMA 1

/* ---- the database ---------------------------------------------------- */

static int db_open(const char *cmd, const char *path, sqlite3 **db)
{
	sqlite3_stmt *st;
	int rc, version = -1;

	rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		tool_error(cmd, "open the record %s: %s", path, *db ? sqlite3_errmsg(*db)
								 : sqlite3_errstr(rc));
		sqlite3_close(*db);
		return -1;
	}
	sqlite3_busy_timeout(*db, READ_BUSY_MS);
	rc = sqlite3_prepare_v2(*db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
				&st, NULL);
	if (rc == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			version = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (version != SCHEMA) {
		if (version < 0)
			tool_error(cmd, "the record %s: %s", path, rc == SQLITE_OK
				   ? "no schema version in it" : sqlite3_errmsg(*db));
		else
			tool_error(cmd, "the record %s has schema version %d; this vmras reads %d",
				   path, version, SCHEMA);
		sqlite3_close(*db);
		return -1;
	}
	return 0;
}

static int db_fail(const char *cmd, sqlite3 *db, const char *what)
{
	tool_error(cmd, "read the record (%s): %s", what, sqlite3_errmsg(db));
	return 2;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t ? (const char *)t : "";
}

/* "2026-11-21T23:50:01.123Z" */
static void iso_time(int64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
		 (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, (int)(ns / 1000000 % 1000));
}

/* Seconds since the epoch, or YYYY-MM-DD[THH:MM[:SS]] in UTC: ns, or -1. */
static int64_t parse_time(const char *s)
{
	struct tm tm = { 0 };
	char *end;
	long long secs = strtoll(s, &end, 10);

	if (*s && !*end && secs >= 0)
		return (int64_t)secs * 1000000000LL;
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end && *end == 'T')
		end = strptime(end + 1, "%H:%M", &tm);
	if (end && *end == ':')
		end = strptime(end + 1, "%S", &tm);
	if (!end || *end)
		return -1;
	return (int64_t)timegm(&tm) * 1000000000LL;
}

/* ---- vmras errors ---------------------------------------------------- */

struct filter {
	const char *vm, *kind, *source, *action;
	int64_t since, until;
};

/* The events filter, as SQL over events e joined with vms v; binds from 1. */
static const char FILTER_SQL[] =
	"(?1 IS NULL OR v.name = ?1 OR v.uuid = ?1) AND (?2 IS NULL OR e.kind = ?2) AND "
	"(?3 IS NULL OR e.source = ?3) AND (?4 IS NULL OR e.action = ?4) AND "
	"e.time_ns >= ?5 AND e.time_ns < ?6";

static void bind_filter(sqlite3_stmt *st, const struct filter *f)
{
	const char *t[] = { f->vm, f->kind, f->source, f->action };

	for (int i = 0; i < 4; i++)
		if (t[i])
			sqlite3_bind_text(st, i + 1, t[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, f->since);
	sqlite3_bind_int64(st, 6, f->until);
}

static int errors_table(sqlite3 *db, const struct filter *f)
{
	char sql[1024], when[64], gpa[24];
	sqlite3_stmt *st;
	int rc, n = 0;

	snprintf(sql, sizeof(sql), "SELECT e.time_ns, v.name, e.kind, e.source, e.action, e.gpa, "
		 "e.lost, e.detail FROM events e JOIN vms v ON v.id = e.vm_id WHERE %s "
		 "ORDER BY e.time_ns, e.id", FILTER_SQL);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail("errors", db, "events");
	bind_filter(st, f);
	printf("%-24s %-16s %-4s %-10s %-7s %-14s %8s  %s\n", "TIME", "VM", "KIND", "SOURCE",
	       "ACTION", "GPA", "LOST", "DETAIL");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		iso_time(sqlite3_column_int64(st, 0), when, sizeof(when));
		if (sqlite3_column_type(st, 5) == SQLITE_NULL)
			snprintf(gpa, sizeof(gpa), "-");
		else
			snprintf(gpa, sizeof(gpa), "0x%" PRIx64, (uint64_t)sqlite3_column_int64(st, 5));
		printf("%-24s %-16s %-4s %-10s %-7s %-14s %8" PRId64 "  %s\n", when,
		       col_text(st, 1), col_text(st, 2), col_text(st, 3), col_text(st, 4), gpa,
		       (int64_t)sqlite3_column_int64(st, 6), col_text(st, 7));
		n++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail("errors", db, "events");
	printf("%d error%s\n", n, n == 1 ? "" : "s");
	return 0;
}

static json_object *int_or_null(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL
		: json_object_new_int64(sqlite3_column_int64(st, i));
}

static json_object *time_json(int64_t ns)
{
	char when[64];

	iso_time(ns, when, sizeof(when));
	return json_object_new_string(when);
}

/* Each bad 4 KiB page (or unsplit range) the filtered events name, with its history. */
static int ranges_json(sqlite3 *db, const struct filter *f, json_object *out)
{
	char sql[1536];
	sqlite3_stmt *st, *hist;
	int rc;

	snprintf(sql, sizeof(sql),
		 "SELECT DISTINCT c.vm_id, v.name, v.uuid, c.gpa, c.size, "
		 "(SELECT p.state FROM poison p WHERE p.vm_id = c.vm_id AND p.gpa = c.gpa) "
		 "FROM range_changes c JOIN vms v ON v.id = c.vm_id WHERE c.change = 'reported' AND "
		 "EXISTS (SELECT 1 FROM events e WHERE e.id = c.event_id AND %s) "
		 "ORDER BY c.vm_id, c.gpa", FILTER_SQL);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_fail("errors", db, "ranges");
	if (sqlite3_prepare_v2(db, "SELECT time_ns, change, gpa, size, event_id FROM range_changes "
			       "WHERE vm_id = ?1 AND gpa < ?2 + ?3 AND ?2 < gpa + size "
			       "ORDER BY time_ns, id", -1, &hist, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return db_fail("errors", db, "history");
	}
	bind_filter(st, f);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *r = json_object_new_object(), *h = json_object_new_array();

		json_object_object_add(r, "vm", json_object_new_string(col_text(st, 1)));
		json_object_object_add(r, "uuid", json_object_new_string(col_text(st, 2)));
		json_object_object_add(r, "gpa", json_object_new_int64(sqlite3_column_int64(st, 3)));
		json_object_object_add(r, "size", json_object_new_int64(sqlite3_column_int64(st, 4)));
		json_object_object_add(r, "still-poisoned",
				       json_object_new_boolean(sqlite3_column_type(st, 5) != SQLITE_NULL));
		sqlite3_bind_int64(hist, 1, sqlite3_column_int64(st, 0));
		sqlite3_bind_int64(hist, 2, sqlite3_column_int64(st, 3));
		sqlite3_bind_int64(hist, 3, sqlite3_column_int64(st, 4));
		while (sqlite3_step(hist) == SQLITE_ROW) {
			json_object *c = json_object_new_object();

			json_object_object_add(c, "time", time_json(sqlite3_column_int64(hist, 0)));
			json_object_object_add(c, "change", json_object_new_string(col_text(hist, 1)));
			json_object_object_add(c, "gpa", json_object_new_int64(sqlite3_column_int64(hist, 2)));
			json_object_object_add(c, "size", json_object_new_int64(sqlite3_column_int64(hist, 3)));
			json_object_object_add(c, "event", int_or_null(hist, 4));
			json_object_array_add(h, c);
		}
		sqlite3_reset(hist);
		json_object_object_add(r, "history", h);
		json_object_array_add(out, r);
	}
	sqlite3_finalize(hist);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail("errors", db, "ranges");
}

static int errors_json(sqlite3 *db, const struct filter *f)
{
	static const char *const names[] = {
		"id", "vm", "uuid", "seq", "time", "kind", "source", "si-code", "addr-lsb", "vcpu",
		"tid", "hva", "gpa", "recipient", "action", "action-required", "recursive",
		"contained", "size", "lost", "page-size", "detail",
	};
	json_object *o = json_object_new_object(), *a = json_object_new_array(),
		    *ranges = json_object_new_array();
	char sql[1024];
	sqlite3_stmt *st;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT e.id, v.name, v.uuid, e.seq, e.time_ns, e.kind, e.source, "
		 "e.si_code, e.addr_lsb, e.vcpu, e.tid, e.hva, e.gpa, e.recipient, e.action, "
		 "e.action_required, e.recursive, e.contained, e.size, e.lost, e.page_size, e.detail "
		 "FROM events e JOIN vms v ON v.id = e.vm_id WHERE %s ORDER BY e.time_ns, e.id",
		 FILTER_SQL);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		json_object_put(o);
		json_object_put(a);
		json_object_put(ranges);
		return db_fail("errors", db, "events");
	}
	bind_filter(st, f);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object *e = json_object_new_object();

		for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
			json_object *val;

			if (i == 4)
				val = time_json(sqlite3_column_int64(st, i));
			else if (i == 15 || i == 16 || i == 17)
				val = json_object_new_boolean(sqlite3_column_int(st, i));
			else if (sqlite3_column_type(st, i) == SQLITE_TEXT)
				val = json_object_new_string(col_text(st, i));
			else
				val = int_or_null(st, i);
			json_object_object_add(e, names[i], val);
		}
		json_object_array_add(a, e);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE || ranges_json(db, f, ranges)) {
		json_object_put(o);
		json_object_put(a);
		json_object_put(ranges);
		return rc != SQLITE_DONE ? db_fail("errors", db, "events") : 2;
	}
	json_object_object_add(o, "errors", a);
	json_object_object_add(o, "ranges", ranges);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return 0;
}

/*
 * Per VM name and for the host: errors, bytes lost, what QEMU would have
 * lost (the whole backing page of each error that cost memory, once per
 * page and run), splits.
 */
static const char SUMMARY_SQL[] =
	"WITH ev AS (SELECT e.*, v.name FROM events e JOIN vms v ON v.id = e.vm_id WHERE %s), "
	"lost AS (SELECT name, vm_id, gpa - gpa %% max(page_size, 4096) AS base, "
	"max(max(page_size, lost)) AS bytes FROM ev WHERE lost > 0 AND gpa IS NOT NULL "
	"GROUP BY name, vm_id, base), "
	"per AS (SELECT name, count(*) AS errors, sum(lost) AS bytes_lost FROM ev GROUP BY name), "
	"q AS (SELECT name, sum(bytes) AS qemu FROM lost GROUP BY name), "
	"sp AS (SELECT v.name, count(*) AS splits FROM range_changes c JOIN vms v ON v.id = c.vm_id "
	"WHERE c.change = 'split' AND c.time_ns >= ?5 AND c.time_ns < ?6 AND "
	"(?1 IS NULL OR v.name = ?1 OR v.uuid = ?1) GROUP BY v.name) "
	"SELECT per.name, per.errors, per.bytes_lost, coalesce(q.qemu, 0), coalesce(sp.splits, 0) "
	"FROM per LEFT JOIN q ON q.name = per.name LEFT JOIN sp ON sp.name = per.name "
	"ORDER BY per.name";

static int errors_summary(sqlite3 *db, const struct filter *f, bool json)
{
	char sql[2048];
	sqlite3_stmt *st;
	json_object *o = json_object_new_object(), *vms = json_object_new_array();
	int64_t tot[4] = { 0 };
	int rc;

	snprintf(sql, sizeof(sql), SUMMARY_SQL, FILTER_SQL);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		json_object_put(o);
		json_object_put(vms);
		return db_fail("errors", db, "summary");
	}
	bind_filter(st, f);
	if (!json)
		printf("%-20s %8s %14s %18s %7s\n", "VM", "ERRORS", "BYTES LOST", "QEMU WOULD LOSE",
		       "SPLITS");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t v[4];
		json_object *x = json_object_new_object();

		for (int i = 0; i < 4; i++) {
			v[i] = sqlite3_column_int64(st, i + 1);
			tot[i] += v[i];
		}
		if (!json)
			printf("%-20s %8" PRId64 " %14" PRId64 " %18" PRId64 " %7" PRId64 "\n",
			       col_text(st, 0), v[0], v[1], v[2], v[3]);
		json_object_object_add(x, "vm", json_object_new_string(col_text(st, 0)));
		json_object_object_add(x, "errors", json_object_new_int64(v[0]));
		json_object_object_add(x, "bytes-lost", json_object_new_int64(v[1]));
		json_object_object_add(x, "qemu-bytes-lost", json_object_new_int64(v[2]));
		json_object_object_add(x, "splits", json_object_new_int64(v[3]));
		json_object_array_add(vms, x);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_object_put(o);
		json_object_put(vms);
		return db_fail("errors", db, "summary");
	}
	if (json) {
		json_object *h = json_object_new_object();

		json_object_object_add(h, "errors", json_object_new_int64(tot[0]));
		json_object_object_add(h, "bytes-lost", json_object_new_int64(tot[1]));
		json_object_object_add(h, "qemu-bytes-lost", json_object_new_int64(tot[2]));
		json_object_object_add(h, "splits", json_object_new_int64(tot[3]));
		json_object_object_add(o, "vms", vms);
		json_object_object_add(o, "host", h);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	} else {
		json_object_put(vms);
		printf("%-20s %8" PRId64 " %14" PRId64 " %18" PRId64 " %7" PRId64 "\n", "(host)",
		       tot[0], tot[1], tot[2], tot[3]);
	}
	json_object_put(o);
	return 0;
}

static void errors_usage(FILE *f)
{
	fprintf(f, "Usage: vmras errors [--record PATH] [--vm NAME|UUID] [--kind ao|ar]\n"
		   "                    [--source S] [--action A] [--since T] [--until T]\n"
		   "                    [--json] [--summary]\n"
		   "  errors from the record (default " VMM_DEFAULT_RECORD "), oldest first;\n"
		   "  --json: every field, and each bad page with its history; --summary: per\n"
		   "  VM and for the host, errors, bytes lost, what QEMU would have lost, splits.\n"
		   "  T: seconds since the epoch, or YYYY-MM-DD[THH:MM[:SS]] (UTC).\n");
}

int errors_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "record", required_argument, NULL, 'r' }, { "vm", required_argument, NULL, 'v' },
		{ "kind", required_argument, NULL, 'k' }, { "source", required_argument, NULL, 's' },
		{ "action", required_argument, NULL, 'a' }, { "since", required_argument, NULL, 'S' },
		{ "until", required_argument, NULL, 'U' }, { "json", no_argument, NULL, 'j' },
		{ "summary", no_argument, NULL, 'm' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct filter f = { .since = 0, .until = INT64_MAX };
	const char *path = VMM_DEFAULT_RECORD;
	bool json = false, summary = false;
	sqlite3 *db;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': path = optarg; break;
		case 'v': f.vm = optarg; break;
		case 'k': f.kind = optarg; break;
		case 's': f.source = optarg; break;
		case 'a': f.action = optarg; break;
		case 'S':
		case 'U': {
			int64_t t = parse_time(optarg);

			if (t < 0) {
				tool_error("errors", "--%s: not a time: '%s'", c == 'S' ? "since" : "until",
					   optarg);
				return 2;
			}
			*(c == 'S' ? &f.since : &f.until) = t;
			break;
		}
		case 'j': json = true; break;
		case 'm': summary = true; break;
		case 'h': errors_usage(stdout); return 0;
		default: errors_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		tool_error("errors", "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (f.kind && strcmp(f.kind, "ao") && strcmp(f.kind, "ar")) {
		tool_error("errors", "--kind: ao or ar, not '%s'", f.kind);
		return 2;
	}
	if (db_open("errors", path, &db))
		return 2;
	r = summary ? errors_summary(db, &f, json) : json ? errors_json(db, &f) : errors_table(db, &f);
	sqlite3_close(db);
	return r;
}

/* ---- metrics --------------------------------------------------------- */

struct text {
	char *buf;
	size_t len, cap;
	bool oom;
};

static __attribute__((format(printf, 2, 3))) void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0 || t->oom)
			return;
		if (t->buf && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap ? t->cap * 2 : 4096;
			char *b;

			while (cap < t->len + (size_t)n + 1)
				cap *= 2;
			b = realloc(t->buf, cap);
			if (!b) {
				t->oom = true;
				return;
			}
			t->buf = b;
			t->cap = cap;
		}
	}
}

/* A label value in the exposition format: \\, \" and \n escaped. */
static void put_label(struct text *t, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			put(t, "\\%c", *s);
		else if (*s == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *s);
	}
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Rows of (vm, value) from sql as name{vm="..."} value. */
static int per_vm(sqlite3 *db, struct text *t, const char *name, const char *sql)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		put(t, "%s{vm=\"", name);
		put_label(t, col_text(st, 0));
		put(t, "\"} %" PRId64 "\n", (int64_t)sqlite3_column_int64(st, 1));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Processes that still run and never said they ended: their poison is "now". */
static void alive_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	pid_t pid = (pid_t)sqlite3_value_int64(argv[0]);
	char host[256] = "";

	(void)argc;
	(void)gethostname(host, sizeof(host) - 1);
	sqlite3_result_int(ctx, pid > 0 && !strcmp((const char *)sqlite3_value_text(argv[1]) ?: "",
						   host) &&
				    (kill(pid, 0) == 0 || errno == EPERM));
}

static int stat_family(sqlite3 *db, struct text *t, const char *name, const char *help,
		       const char *stat)
{
	char sql[512];

	family(t, name, "counter", help);
	snprintf(sql, sizeof(sql), "SELECT v.name, sum(s.value) FROM vm_stats s JOIN vms v "
		 "ON v.id = s.vm_id WHERE s.name = '%s' GROUP BY v.name ORDER BY v.name", stat);
	return per_vm(db, t, name, sql);
}

/* The whole exposition into t: 0, or -1 (the database's message says why). */
static int metrics_text(sqlite3 *db, struct text *t)
{
	sqlite3_stmt *st;
	int rc;

	family(t, "vmras_memory_errors_total", "counter",
	       "Guest memory errors vmras handled, by kind, source and action.");
	if (sqlite3_prepare_v2(db, "SELECT v.name, e.kind, e.source, e.action, count(*) FROM events e "
			       "JOIN vms v ON v.id = e.vm_id GROUP BY v.name, e.kind, e.source, e.action "
			       "ORDER BY 1, 2, 3, 4", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* Every label escaped: the database is shared, not ours alone. */
		put(t, "vmras_memory_errors_total{vm=\"");
		put_label(t, col_text(st, 0));
		put(t, "\",kind=\"");
		put_label(t, col_text(st, 1));
		put(t, "\",source=\"");
		put_label(t, col_text(st, 2));
		put(t, "\",action=\"");
		put_label(t, col_text(st, 3));
		put(t, "\"} %" PRId64 "\n", (int64_t)sqlite3_column_int64(st, 4));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -1;
	family(t, "vmras_memory_lost_bytes_total", "counter",
	       "Guest memory lost to errors, in bytes (4 KiB where vmras split a huge page).");
	if (per_vm(db, t, "vmras_memory_lost_bytes_total",
		   "SELECT v.name, sum(e.lost) FROM events e JOIN vms v ON v.id = e.vm_id "
		   "GROUP BY v.name ORDER BY v.name"))
		return -1;
	family(t, "vmras_memory_qemu_lost_bytes_total", "counter",
	       "What QEMU would have lost for the same errors: each one's whole backing page.");
	if (per_vm(db, t, "vmras_memory_qemu_lost_bytes_total",
		   "SELECT name, sum(bytes) FROM (SELECT v.name, max(max(e.page_size, e.lost)) AS bytes "
		   "FROM events e JOIN vms v ON v.id = e.vm_id WHERE e.lost > 0 AND e.gpa IS NOT NULL "
		   "GROUP BY e.vm_id, e.gpa - e.gpa % max(e.page_size, 4096)) GROUP BY name "
		   "ORDER BY name"))
		return -1;
	family(t, "vmras_memory_poisoned_bytes", "gauge",
	       "Guest memory poisoned now, in VMs still running.");
	if (sqlite3_create_function(db, "vmras_alive", 2, SQLITE_UTF8, NULL, alive_fn, NULL, NULL) !=
	    SQLITE_OK ||
	    per_vm(db, t, "vmras_memory_poisoned_bytes",
		   "SELECT v.name, coalesce(sum(p.size), 0) FROM vms v LEFT JOIN poison p ON "
		   "p.vm_id = v.id WHERE v.end_ns IS NULL AND vmras_alive(v.pid, v.host) "
		   "GROUP BY v.name ORDER BY v.name"))
		return -1;
	family(t, "vmras_huge_page_splits_total", "counter",
	       "Huge pages split so that an error cost 4 KiB, not the whole page.");
	if (per_vm(db, t, "vmras_huge_page_splits_total",
		   "SELECT v.name, count(*) FROM range_changes c JOIN vms v ON v.id = c.vm_id "
		   "WHERE c.change = 'split' GROUP BY v.name ORDER BY v.name"))
		return -1;
	if (stat_family(db, t, "vmras_notifications_deferred_total",
			"Machine checks that waited for the guest to be able to take them.",
			"notice_deferred") ||
	    stat_family(db, t, "vmras_notifications_undeliverable_total",
			"Machine checks the guest could not take (the undeliverable policy ran).",
			"notice_undeliverable") ||
	    stat_family(db, t, "vmras_events_dropped_total",
			"Memory-error reports lost before vmras could handle them (ring full).",
			"dropped") ||
	    stat_family(db, t, "vmras_record_dropped_total",
			"Outcomes not recorded (record queue full, writes that failed).",
			"record_dropped") ||
	    stat_family(db, t, "vmras_record_write_errors_total",
			"Record writes that failed.", "record_errors"))
		return -1;
	return t->oom ? -1 : 0;
}

static void metrics_usage(FILE *f)
{
	fprintf(f, "Usage: vmras metrics [--record PATH]\n"
		   "  the record's numbers in Prometheus text format (default record "
		   VMM_DEFAULT_RECORD ")\n");
}

int metrics_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "record", required_argument, NULL, 'r' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	const char *path = VMM_DEFAULT_RECORD;
	struct text t = { 0 };
	sqlite3 *db;
	int c, r = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': path = optarg; break;
		case 'h': metrics_usage(stdout); return 0;
		default: metrics_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		tool_error("metrics", "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (db_open("metrics", path, &db))
		return 2;
	if (metrics_text(db, &t))
		r = t.oom ? (tool_error("metrics", "out of memory"), 2) : db_fail("metrics", db, "metrics");
	else
		fwrite(t.buf, 1, t.len, stdout);
	free(t.buf);
	sqlite3_close(db);
	return r;
}

/* ---- exporter -------------------------------------------------------- */

static volatile sig_atomic_t exporter_stop;

static void on_stop(int sig)
{
	(void)sig;
	exporter_stop = 1;
}

/* All of buf, or false (the client went away, or stalled past SO_SNDTIMEO). */
static bool send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static void respond(int fd, const char *status, const char *type, const char *body, size_t len,
		    bool head)
{
	char h[320];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%sConnection: close\r\n\r\n", status, type, len,
			 strncmp(status, "405", 3) ? "" : "Allow: GET, HEAD\r\n");

	if (send_all(fd, h, (size_t)n) && !head && len)
		(void)send_all(fd, body, len);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One connection: the whole request within 2 s, the answer within 5 s (a
 * client that trickles or never reads cannot hold a scrape up), close.
 */
static void serve(int fd, const char *path)
{
	char req[HTTP_MAX_REQUEST], url[256];
	struct timeval snd = { .tv_sec = 5 };
	int64_t end = mono_ms() + 2000;
	size_t got = 0;
	int head = 0;
	enum http_parse p = HTTP_INCOMPLETE;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
	while (p == HTTP_INCOMPLETE && got < sizeof(req)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = end - mono_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = recv(fd, req + got, sizeof(req) - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		p = http_parse_request(req, got, url, sizeof(url), &head);
	}
	if (p == HTTP_OK && !strcmp(url, "/metrics")) {
		struct text t = { 0 };
		sqlite3 *db;

		/* Opened per scrape: a database replaced or not yet there is seen. */
		if (db_open("exporter", path, &db)) {
			static const char msg[] = "the record cannot be read (see the exporter's stderr)\n";

			respond(fd, "503 Service Unavailable", "text/plain", msg, sizeof(msg) - 1, head);
		} else if (metrics_text(db, &t)) {
			static const char msg[] = "the record cannot be read\n";

			tool_error("exporter", "read the record: %s", sqlite3_errmsg(db));
			respond(fd, "503 Service Unavailable", "text/plain", msg, sizeof(msg) - 1, head);
			sqlite3_close(db);
		} else {
			respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", t.buf, t.len,
				head);
			sqlite3_close(db);
		}
		free(t.buf);
	} else if (p == HTTP_OK) {
		static const char msg[] = "vmras exporter: metrics at /metrics\n";

		respond(fd, strcmp(url, "/") ? "404 Not Found" : "200 OK", "text/plain", msg,
			sizeof(msg) - 1, head);
	} else if (p == HTTP_METHOD) {
		respond(fd, "405 Method Not Allowed", "text/plain", "", 0, false);
	} else if (p == HTTP_BAD) {
		respond(fd, "400 Bad Request", "text/plain", "", 0, false);
	}
	close(fd);
}

static void exporter_usage(FILE *f)
{
	fprintf(f, "Usage: vmras exporter [--listen ADDR:PORT] [--record PATH]\n"
		   "  serve the record's metrics at http://ADDR:PORT/metrics for Prometheus\n"
		   "  (default 127.0.0.1:9477, record " VMM_DEFAULT_RECORD "); SIGINT/SIGTERM stop it\n");
}

int exporter_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "record", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	const char *path = VMM_DEFAULT_RECORD, *listen_at = "127.0.0.1:9477";
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	char host[256];
	const char *colon;
	int c, fd, one = 1, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': listen_at = optarg; break;
		case 'r': path = optarg; break;
		case 'h': exporter_usage(stdout); return 0;
		default: exporter_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		tool_error("exporter", "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	colon = strrchr(listen_at, ':');
	if (!colon || colon == listen_at || (size_t)(colon - listen_at) >= sizeof(host)) {
		tool_error("exporter", "--listen: expected ADDR:PORT, got '%s'", listen_at);
		return 2;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_at), listen_at);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		tool_error("exporter", "--listen %s: %s", listen_at, gai_strerror(rc));
		return 2;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16)) {
		tool_error("exporter", "listen on %s: %s", listen_at, strerror(errno));
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return 2;
	}
	freeaddrinfo(ai);
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa = { .sa_handler = on_stop };

		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	while (!exporter_stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int conn;

		if (poll(&pfd, 1, 500) <= 0)
			continue;
		conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (conn >= 0)
			serve(conn, path);
	}
	close(fd);
	return 0;
}
