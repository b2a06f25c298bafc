// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The durable record (see record.h for the threads). Schema, version 1:
 *
 *   meta(key, value)            schema_version
 *   vms(id, name, uuid, pid, host, start_ns, end_ns, memory)
 *                               memory: JSON array of the regions
 *   events(id, vm_id, seq, time_ns, kind, source, si_code, addr_lsb, vcpu,
 *          tid, hva, gpa, valid, recipient, action, action_required,
 *          recursive, contained, size, lost, page_size, detail)
 *                               every outcome; lost: the bytes it newly
 *                               cost (a duplicate or stale report: 0);
 *                               page_size: the backing's page at gpa
 *                               (what QEMU would have lost)
 *   range_changes(id, vm_id, time_ns, gpa, size, change, event_id)
 *                               reported contained notified ignored
 *                               contain-failed split salvaged migrated-in
 *                               migrated-out restored
 *   poison(vm_id, gpa, size, state, kind, source, reports, first_ns,
 *          last_ns)             the bad ranges now, per VM run
 *   vm_stats(vm_id, name, value) the library's counters, last written
 *
 * A newer schema than this code knows is refused (recording stays off);
 * an older one is brought up by the migrations in order.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "record/record.h"
#include "util/clock.h"

#define QUEUE_MAX 8192		/* items waiting; beyond, reported unrecorded */
#define BATCH_MAX 512		/* items in one transaction */
#define OPEN_BUSY_MS 1000	/* another writer holds the database at open */
#define WRITE_BUSY_MS 5000	/* ... at a commit */
#define WRITE_TRIES 3		/* then the batch is dropped, counted */
#define DEGRADED_BUSY_MS 100	/* a try after a batch failed */
#define RECORD_NICE 10

enum item_kind { IT_FAILURE, IT_CHANGE, IT_RESET, IT_MIGRATED_OUT };

struct item {
	struct item *next;
	enum item_kind kind;
	uint64_t time_ns;
	struct vmras_failure f;		/* FAILURE */
	bool apply;			/* FAILURE: carry out its reset/fatal after the report */
	uint64_t page_size;		/* FAILURE: the backing's page at f.ev.gpa */
	struct vmras_poison range;	/* FAILURE: the registry's entry then (size 0: none) */
	uint64_t gpa, size;		/* CHANGE */
	const char *change;		/* CHANGE: a string literal */
};

struct vr_record {
	struct vmras *v;
	sqlite3 *db;			/* the record thread's, after open */
	int64_t vm_id;
	pthread_t thread;

	pthread_mutex_t lock;		/* a leaf: the queue, the counts, stop */
	pthread_cond_t cond;		/* work for the thread */
	pthread_cond_t done;		/* items reported (flush) */
	struct item *head, **tail;
	size_t queued;
	uint64_t enqueued, reported;	/* items ever queued, ever reported */
	bool stop, exited;
	bool degraded;			/* the record thread's: the last batch failed */
};

static const char *const schema_v1[] = {
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
	"CREATE TABLE IF NOT EXISTS vms(id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
	"uuid TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, start_ns INTEGER NOT NULL, "
	"end_ns INTEGER, memory TEXT NOT NULL)",
	"CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, vm_id INTEGER NOT NULL "
	"REFERENCES vms(id), seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, kind TEXT NOT NULL, "
	"source TEXT NOT NULL, si_code INTEGER NOT NULL, addr_lsb INTEGER NOT NULL, "
	"vcpu INTEGER NOT NULL, tid INTEGER NOT NULL, hva INTEGER, gpa INTEGER, "
	"valid INTEGER NOT NULL, recipient TEXT NOT NULL, action TEXT NOT NULL, "
	"action_required INTEGER NOT NULL, recursive INTEGER NOT NULL, contained INTEGER NOT NULL, "
	"size INTEGER NOT NULL, lost INTEGER NOT NULL, page_size INTEGER NOT NULL, "
	"detail TEXT NOT NULL)",
	"CREATE INDEX IF NOT EXISTS events_vm_time ON events(vm_id, time_ns)",
	"CREATE TABLE IF NOT EXISTS range_changes(id INTEGER PRIMARY KEY, vm_id INTEGER NOT NULL "
	"REFERENCES vms(id), time_ns INTEGER NOT NULL, gpa INTEGER NOT NULL, size INTEGER NOT NULL, "
	"change TEXT NOT NULL, event_id INTEGER REFERENCES events(id))",
	"CREATE INDEX IF NOT EXISTS range_changes_vm_gpa ON range_changes(vm_id, gpa)",
	"CREATE TABLE IF NOT EXISTS poison(vm_id INTEGER NOT NULL REFERENCES vms(id), "
	"gpa INTEGER NOT NULL, size INTEGER NOT NULL, state INTEGER NOT NULL, kind TEXT NOT NULL, "
	"source TEXT NOT NULL, reports INTEGER NOT NULL, first_ns INTEGER NOT NULL, "
	"last_ns INTEGER NOT NULL, PRIMARY KEY(vm_id, gpa))",
	"CREATE TABLE IF NOT EXISTS vm_stats(vm_id INTEGER NOT NULL REFERENCES vms(id), "
	"name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY(vm_id, name))",
	NULL,
};

/* migrations[k] brings a version k database to k + 1 (none yet past 1). */
static const char *const *const migrations[VR_RECORD_SCHEMA + 1] = {
	[0] = schema_v1,
};

static const char *const state_names[] = {
	"reported", "contained", "notified", "ignored", "contain-failed",
};

/* ---- helpers ------------------------------------------------------- */

static int sql_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EROFS;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EILSEQ;
	default:
		return -EIO;
	}
}

static int exec(sqlite3 *db, const char *sql)
{
	return sql_err(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/* Run a prepared statement to its end and reset it: 0 or -errno. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_err(rc);
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	return sql_err(sqlite3_prepare_v2(db, sql, -1, st, NULL));
}

static int64_t i64(uint64_t x)
{
	return (int64_t)x;
}

static const char *kind_name(enum vmras_error_kind k)
{
	return k == VMRAS_AR ? "ar" : "ao";
}

/* ---- opening ------------------------------------------------------- */

static int schema_version(sqlite3 *db, int *version)
{
	sqlite3_stmt *st;
	int rc;

	*version = 0;
	rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
				&st, NULL);
	if (rc != SQLITE_OK) /* no meta table: a new database */
		return sqlite3_errcode(db) == SQLITE_ERROR ? 0 : sql_err(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sql_err(rc);
}

static int migrate_schema(sqlite3 *db, char *why, size_t why_len)
{
	int version, err;

	err = exec(db, "BEGIN IMMEDIATE");
	if (err)
		return err;
	err = schema_version(db, &version);
	if (!err && version > VR_RECORD_SCHEMA) {
		snprintf(why, why_len, "its schema version %d is newer than this vmras's (%d)",
			 version, VR_RECORD_SCHEMA);
		err = -EPROTONOSUPPORT;
	}
	for (; !err && version < VR_RECORD_SCHEMA; version++)
		for (const char *const *sql = migrations[version]; !err && *sql; sql++)
			err = exec(db, *sql);
	if (!err) {
		char set[96];

		snprintf(set, sizeof(set), "INSERT OR REPLACE INTO meta VALUES('schema_version', '%d')",
			 VR_RECORD_SCHEMA);
		err = exec(db, set);
	}
	if (!err)
		err = exec(db, "COMMIT");
	if (err)
		(void)exec(db, "ROLLBACK");
	return err;
}

static const char *backing_name(enum vmras_backing b)
{
	switch (b) {
	case VMRAS_BACKING_ANON: return "anon";
	case VMRAS_BACKING_SHMEM: return "shmem";
	case VMRAS_BACKING_HUGETLB: return "hugetlb";
	case VMRAS_BACKING_GUEST_MEMFD: return "guest-memfd";
	default: return "file";
	}
}

static int add_vm(struct vr_record *rec)
{
	const struct vmras_config *cfg = &rec->v->cfg;
	char memory[VMRAS_MEMMAP_MAX_REGIONS * 96 + 4], host[256] = "";
	size_t n = 0;
	sqlite3_stmt *st;
	int err;

	memory[n++] = '[';
	for (unsigned int i = 0; i < vmras_memmap_count(rec->v->map); i++) {
		const struct vmras_region *r = vmras_memmap_region(rec->v->map, i);

		int k = snprintf(memory + n, sizeof(memory) - n,
				 "%s{\"gpa\":%" PRIu64 ",\"size\":%" PRIu64 ",\"backing\":\"%s\","
				 "\"page-size\":%" PRIu64 "}", i ? "," : "", r->gpa, r->size,
				 backing_name(r->backing), r->page_size);

		if (k < 0 || (size_t)k >= sizeof(memory) - n - 1)
			return -ENOSPC;	/* 96 bytes a region always fit */
		n += (size_t)k;
	}
	snprintf(memory + n, sizeof(memory) - n, "]");
	(void)gethostname(host, sizeof(host) - 1);
	err = prepare(rec->db, "INSERT INTO vms(name, uuid, pid, host, start_ns, memory) "
		      "VALUES(?, ?, ?, ?, ?, ?)", &st);
	if (err)
		return err;
	sqlite3_bind_text(st, 1, cfg->vm_name ? cfg->vm_name : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, cfg->vm_uuid ? cfg->vm_uuid : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, getpid());
	sqlite3_bind_text(st, 4, host, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, i64(vr_now_ns()));
	sqlite3_bind_text(st, 6, memory, -1, SQLITE_TRANSIENT);
	err = step_done(st);
	sqlite3_finalize(st);
	if (!err)
		rec->vm_id = sqlite3_last_insert_rowid(rec->db);
	return err;
}

static void *record_main(void *arg);

int vr_record_open(struct vmras *v, const char *path, struct vr_record **out, char *why,
		   size_t why_len)
{
	struct vr_record *rec = calloc(1, sizeof(*rec));
	sqlite3_stmt *st = NULL;
	int err, rc;

	snprintf(why, why_len, "cannot use it");
	pthread_cond_init(&rec->done, NULL);
	if (!rec)
		return -ENOMEM;
	rec->v = v;
	rec->tail = &rec->head;
	pthread_mutex_init(&rec->lock, NULL);
	pthread_cond_init(&rec->cond, NULL);
	rc = sqlite3_open_v2(path, &rec->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, NULL);
	err = sql_err(rc);
	if (!err) {
		sqlite3_busy_timeout(rec->db, OPEN_BUSY_MS);
		/* WAL: readers (vmras errors, other VMMs) never block the writer. */
		err = prepare(rec->db, "PRAGMA journal_mode=WAL", &st);
		if (!err && sqlite3_step(st) == SQLITE_ROW &&
		    strcmp((const char *)sqlite3_column_text(st, 0) ?: "", "wal"))
			err = -EROFS;
		else if (!err)
			err = sql_err(sqlite3_errcode(rec->db));
		sqlite3_finalize(st);
	}
	if (!err)
		err = exec(rec->db, "PRAGMA synchronous=NORMAL");
	/*
	 * Keep the -wal and -shm files when the last writer closes: a reader
	 * that may not write the directory (vmras errors as a user, an
	 * exporter) can open a WAL database read-only only while they exist.
	 */
	if (!err) {
		int persist = 1;

		sqlite3_file_control(rec->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	}
	if (!err)
		err = migrate_schema(rec->db, why, why_len);
	if (!err)
		err = add_vm(rec);
	if (!err) {
		sqlite3_busy_timeout(rec->db, WRITE_BUSY_MS);
		err = -pthread_create(&rec->thread, NULL, record_main, rec);
		if (err)
			snprintf(why, why_len, "start its thread: %s", strerror(-err));
	}
	if (err) {
		if (err != -EPROTONOSUPPORT && !strstr(why, "thread"))
			snprintf(why, why_len, "%s", rec->db ? sqlite3_errmsg(rec->db) : strerror(-err));
		sqlite3_close(rec->db);
		pthread_cond_destroy(&rec->done);
		pthread_cond_destroy(&rec->cond);
		pthread_mutex_destroy(&rec->lock);
		free(rec);
		return err;
	}
	*out = rec;
	return 0;
}

/* ---- queueing ------------------------------------------------------ */

static bool enqueue(struct vr_record *rec, struct item *it)
{
	bool ok;

	it->next = NULL;
	pthread_mutex_lock(&rec->lock);
	ok = !rec->stop && rec->queued < QUEUE_MAX;
	if (ok) {
		*rec->tail = it;
		rec->tail = &it->next;
		rec->queued++;
		rec->enqueued++;
		pthread_cond_signal(&rec->cond);
	}
	pthread_mutex_unlock(&rec->lock);
	if (!ok) {
		VR_STAT_ADD(rec->v, record_dropped, 1);
		free(it);
	}
	return ok;
}

static struct item *item_new(enum item_kind kind)
{
	struct item *it = calloc(1, sizeof(*it));

	if (it) {
		it->kind = kind;
		it->time_ns = vr_now_ns();
	}
	return it;
}

bool vr_record_failure(struct vr_record *rec, const struct vmras_failure *f, bool apply)
{
	struct item *it = item_new(IT_FAILURE);
	const struct vmras_region *r;

	if (!it) {
		VR_STAT_ADD(rec->v, record_dropped, 1);
		return false;
	}
	it->f = *f;
	it->apply = apply;
	if (f->ev.valid & VMRAS_EV_GPA) {
		r = vmras_memmap_find_gpa(rec->v->map, f->ev.gpa);
		it->page_size = r ? r->page_size : 0;
		if (vmras_registry_lookup(rec->v->registry, f->ev.gpa, &it->range))
			it->range.size = 0;
	}
	return enqueue(rec, it);
}

void vr_record_change(struct vr_record *rec, uint64_t gpa, uint64_t size, const char *change)
{
	struct item *it = item_new(IT_CHANGE);

	if (!it) {
		VR_STAT_ADD(rec->v, record_dropped, 1);
		return;
	}
	it->gpa = gpa;
	it->size = size;
	it->change = change;
	enqueue(rec, it);
}

static void queue_simple(struct vr_record *rec, enum item_kind kind)
{
	struct item *it = item_new(kind);

	if (!it) {
		VR_STAT_ADD(rec->v, record_dropped, 1);
		return;
	}
	enqueue(rec, it);
}

void vr_record_reset(struct vr_record *rec)
{
	queue_simple(rec, IT_RESET);
}

void vr_record_migrated_out(struct vr_record *rec)
{
	queue_simple(rec, IT_MIGRATED_OUT);
}

int vr_record_flush(struct vr_record *rec)
{
	uint64_t target;

	if (pthread_equal(pthread_self(), rec->thread))
		return -EDEADLK;
	pthread_mutex_lock(&rec->lock);
	target = rec->enqueued;
	while (rec->reported < target && !rec->exited)
		pthread_cond_wait(&rec->done, &rec->lock);
	pthread_mutex_unlock(&rec->lock);
	return 0;
}

/* ---- writing (the record thread) ----------------------------------- */

struct stmts {
	sqlite3_stmt *event, *change, *old_state, *upsert, *absorb, *restored, *clear, *end,
		*stat;
};

static int stmts_prepare(sqlite3 *db, struct stmts *s)
{
	return prepare(db, "INSERT INTO events(vm_id, seq, time_ns, kind, source, si_code, "
		       "addr_lsb, vcpu, tid, hva, gpa, valid, recipient, action, action_required, "
		       "recursive, contained, size, page_size, detail, lost) "
		       "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,"
		       "?21)",
		       &s->event) ?:
	       prepare(db, "INSERT INTO range_changes(vm_id, time_ns, gpa, size, change, event_id) "
		       "VALUES(?1, ?2, ?3, ?4, ?5, ?6)", &s->change) ?:
	       prepare(db, "SELECT state FROM poison WHERE vm_id = ?1 AND gpa = ?2", &s->old_state) ?:
	       prepare(db, "INSERT INTO poison(vm_id, gpa, size, state, kind, source, reports, "
		       "first_ns, last_ns) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9) "
		       "ON CONFLICT(vm_id, gpa) DO UPDATE SET size = excluded.size, "
		       "state = excluded.state, kind = excluded.kind, reports = excluded.reports, "
		       "last_ns = excluded.last_ns", &s->upsert) ?:
	       prepare(db, "DELETE FROM poison WHERE vm_id = ?1 AND gpa > ?2 AND gpa < ?3",
		       &s->absorb) ?:
	       prepare(db, "INSERT INTO range_changes(vm_id, time_ns, gpa, size, change) "
		       "SELECT vm_id, ?2, gpa, size, ?3 FROM poison WHERE vm_id = ?1 ORDER BY gpa",
		       &s->restored) ?:
	       prepare(db, "DELETE FROM poison WHERE vm_id = ?1", &s->clear) ?:
	       prepare(db, "UPDATE vms SET end_ns = ?2 WHERE id = ?1", &s->end) ?:
	       prepare(db, "INSERT OR REPLACE INTO vm_stats VALUES(?1, ?2, ?3)", &s->stat);
}

static void stmts_finalize(struct stmts *s)
{
	sqlite3_stmt **all = (sqlite3_stmt **)s;

	for (size_t i = 0; i < sizeof(*s) / sizeof(*all); i++)
		sqlite3_finalize(all[i]);
}

static int add_change(struct vr_record *rec, struct stmts *s, uint64_t time_ns, uint64_t gpa,
		      uint64_t size, const char *change, int64_t event_id)
{
	sqlite3_bind_int64(s->change, 1, rec->vm_id);
	sqlite3_bind_int64(s->change, 2, i64(time_ns));
	sqlite3_bind_int64(s->change, 3, i64(gpa));
	sqlite3_bind_int64(s->change, 4, i64(size));
	sqlite3_bind_text(s->change, 5, change, -1, SQLITE_STATIC);
	if (event_id)
		sqlite3_bind_int64(s->change, 6, event_id);
	return step_done(s->change);
}

static int write_failure(struct vr_record *rec, struct stmts *s, const struct item *it)
{
	const struct vmras_failure *f = &it->f;
	const struct vmras_poison *p = &it->range;
	sqlite3_stmt *e = s->event;
	bool newly_lost;
	int64_t id;
	int old = -1, err = 0, rc;

	/* What is new about the range since the record last saw it. */
	if (p->size) {
		sqlite3_bind_int64(s->old_state, 1, rec->vm_id);
		sqlite3_bind_int64(s->old_state, 2, i64(p->gpa));
		rc = sqlite3_step(s->old_state);
		if (rc == SQLITE_ROW)
			old = sqlite3_column_int(s->old_state, 0);
		else if (rc != SQLITE_DONE)
			err = sql_err(rc);
		sqlite3_reset(s->old_state);
		if (err)
			return err;
	}
	newly_lost = p->size && (p->state & VMRAS_PS_CONTAINED) &&
		     (old < 0 || !(old & VMRAS_PS_CONTAINED));
	sqlite3_bind_int64(e, 1, rec->vm_id);
	sqlite3_bind_int64(e, 2, i64(f->ev.seq));
	sqlite3_bind_int64(e, 3, i64(f->ev.time_ns));
	sqlite3_bind_text(e, 4, kind_name(f->ev.kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(e, 5, vmras_source_name(f->ev.source), -1, SQLITE_STATIC);
	sqlite3_bind_int(e, 6, f->ev.si_code);
	sqlite3_bind_int(e, 7, (int)f->ev.addr_lsb);
	sqlite3_bind_int(e, 8, f->ev.valid & VMRAS_EV_VCPU ? f->ev.vcpu : -1);
	sqlite3_bind_int(e, 9, f->ev.tid);
	if (f->ev.valid & VMRAS_EV_HVA)
		sqlite3_bind_int64(e, 10, i64(f->ev.hva));
	if (f->ev.valid & VMRAS_EV_GPA)
		sqlite3_bind_int64(e, 11, i64(f->ev.gpa));
	sqlite3_bind_int(e, 12, (int)f->ev.valid);
	sqlite3_bind_text(e, 13, vmras_recipient_name(f->recipient), -1, SQLITE_STATIC);
	sqlite3_bind_text(e, 14, vmras_action_name(f->action), -1, SQLITE_STATIC);
	sqlite3_bind_int(e, 15, f->action_required);
	sqlite3_bind_int(e, 16, f->recursive);
	sqlite3_bind_int(e, 17, f->contained);
	sqlite3_bind_int64(e, 18, i64(f->size));
	sqlite3_bind_int64(e, 19, i64(it->page_size));
	sqlite3_bind_text(e, 20, f->detail, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(e, 21, newly_lost ? i64(f->size ? f->size : p->size) : 0);
	err = step_done(e);
	if (err || !p->size)
		return err;
	id = sqlite3_last_insert_rowid(rec->db);
	if (old < 0 && f->ev.source == VMRAS_SRC_MIGRATION)
		err = add_change(rec, s, it->time_ns, p->gpa, p->size, "migrated-in", id);
	for (unsigned int b = 0; !err && b < sizeof(state_names) / sizeof(state_names[0]); b++)
		if ((p->state & (1u << b)) && (old < 0 || !(old & (1 << b))))
			err = add_change(rec, s, it->time_ns, p->gpa, p->size, state_names[b], id);
	if (err)
		return err;
	sqlite3_bind_int64(s->upsert, 1, rec->vm_id);
	sqlite3_bind_int64(s->upsert, 2, i64(p->gpa));
	sqlite3_bind_int64(s->upsert, 3, i64(p->size));
	sqlite3_bind_int64(s->upsert, 4, p->state);
	sqlite3_bind_text(s->upsert, 5, kind_name(p->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(s->upsert, 6, vmras_source_name(p->source), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s->upsert, 7, p->reports);
	sqlite3_bind_int64(s->upsert, 8, i64(p->first_ns));
	sqlite3_bind_int64(s->upsert, 9, i64(p->last_ns));
	err = step_done(s->upsert);
	/* A huge range absorbed the small ones inside it, as the registry did. */
	if (!err && p->size > SMALL_PAGE) {
		sqlite3_bind_int64(s->absorb, 1, rec->vm_id);
		sqlite3_bind_int64(s->absorb, 2, i64(p->gpa));
		sqlite3_bind_int64(s->absorb, 3, i64(p->gpa + p->size));
		err = step_done(s->absorb);
	}
	return err;
}

static int write_all_ranges(struct vr_record *rec, struct stmts *s, uint64_t time_ns,
			    const char *change, bool clear)
{
	int err;

	sqlite3_bind_int64(s->restored, 1, rec->vm_id);
	sqlite3_bind_int64(s->restored, 2, i64(time_ns));
	sqlite3_bind_text(s->restored, 3, change, -1, SQLITE_STATIC);
	err = step_done(s->restored);
	if (!err && clear) {
		sqlite3_bind_int64(s->clear, 1, rec->vm_id);
		err = step_done(s->clear);
	}
	return err;
}

static int write_stats(struct vr_record *rec, struct stmts *s)
{
	struct vmras_stats st;
	int err = 0;

	vmras_get_stats(rec->v, &st);
	const struct {
		const char *name;
		uint64_t value;
	} now[] = {
#define C(n) { #n, st.n }
		C(dropped), C(duplicates), C(contained), C(contain_failed),
		C(notice_delivered), C(notice_deferred), C(notice_undeliverable),
		C(not_guest_ram), C(bytes_lost), C(log_errors), C(splits), C(splits_refused),
		C(subpages_salvaged), C(uffd_unrouted), C(fill_errors), C(reports_lost),
		C(copies_refused), C(record_dropped), C(record_errors),
#undef C
	};

	for (size_t i = 0; !err && i < sizeof(now) / sizeof(now[0]); i++) {
		sqlite3_bind_int64(s->stat, 1, rec->vm_id);
		sqlite3_bind_text(s->stat, 2, now[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s->stat, 3, i64(now[i].value));
		err = step_done(s->stat);
	}
	return err;
}

static int write_batch(struct vr_record *rec, struct stmts *s, struct item *batch)
{
	int err = exec(rec->db, "BEGIN IMMEDIATE");

	for (struct item *it = batch; it && !err; it = it->next) {
		switch (it->kind) {
		case IT_FAILURE:
			err = write_failure(rec, s, it);
			break;
		case IT_CHANGE:
			err = add_change(rec, s, it->time_ns, it->gpa, it->size, it->change, 0);
			break;
		case IT_RESET:
			err = write_all_ranges(rec, s, it->time_ns, "restored", true);
			break;
		case IT_MIGRATED_OUT:
			err = write_all_ranges(rec, s, it->time_ns, "migrated-out", false);
			if (!err) {
				sqlite3_bind_int64(s->end, 1, rec->vm_id);
				sqlite3_bind_int64(s->end, 2, i64(it->time_ns));
				err = step_done(s->end);
			}
			break;
		}
	}
	if (!err)
		err = write_stats(rec, s);
	if (!err)
		err = exec(rec->db, "COMMIT");
	if (err)
		(void)exec(rec->db, "ROLLBACK");
	return err;
}

static void *record_main(void *arg)
{
	struct vr_record *rec = arg;
	struct stmts s = { 0 };
	bool ready = stmts_prepare(rec->db, &s) == 0, stop = false;

	/*
	 * Behind the engine and the vCPUs for the CPU: the disk can wait, a
	 * machine check should not (a thread may always lower its priority).
	 */
	(void)setpriority(PRIO_PROCESS, (id_t)vr_gettid(), RECORD_NICE);

	if (!ready)
		VR_STAT_ADD(rec->v, record_errors, 1);
	while (!stop) {
		struct item *batch, *it, **cut;
		size_t n = 0;
		int err = -EIO;

		pthread_mutex_lock(&rec->lock);
		while (!rec->head && !rec->stop)
			pthread_cond_wait(&rec->cond, &rec->lock);
		batch = rec->head;
		for (cut = &rec->head; *cut && n < BATCH_MAX; cut = &(*cut)->next)
			n++;
		rec->head = *cut;
		*cut = NULL;
		if (!rec->head)
			rec->tail = &rec->head;
		rec->queued -= n;
		stop = rec->stop && !rec->head;
		pthread_mutex_unlock(&rec->lock);
		if (!batch)
			continue;
		/*
		 * After a failed batch (a database locked for long), one short
		 * try a batch, so reports are not held up for minutes behind a
		 * lock; the full wait again once a batch goes through.
		 */
		sqlite3_busy_timeout(rec->db, rec->degraded ? DEGRADED_BUSY_MS : WRITE_BUSY_MS);
		for (int t = 0; ready && err && t < (rec->degraded ? 1 : WRITE_TRIES); t++)
			err = write_batch(rec, &s, batch);
		rec->degraded = err != 0;
		if (err) {
			VR_STAT_ADD(rec->v, record_errors, 1);
			for (it = batch; it; it = it->next)
				VR_STAT_ADD(rec->v, record_dropped, 1);
		}
		/* On disk (or counted as lost): now the world may hear of it. */
		while ((it = batch)) {
			batch = it->next;
			if (it->kind == IT_FAILURE) {
				vr_report_now(rec->v, &it->f);
				if (it->apply)
					vr_apply(rec->v, &it->f);
			}
			free(it);
		}
		pthread_mutex_lock(&rec->lock);
		rec->reported += n;
		pthread_cond_broadcast(&rec->done);
		pthread_mutex_unlock(&rec->lock);
	}
	/* The run ends: its end time, its last counters. */
	if (ready && !exec(rec->db, "BEGIN IMMEDIATE")) {
		sqlite3_bind_int64(s.end, 1, rec->vm_id);
		sqlite3_bind_int64(s.end, 2, i64(vr_now_ns()));
		if (step_done(s.end) || write_stats(rec, &s) || exec(rec->db, "COMMIT"))
			(void)exec(rec->db, "ROLLBACK");
	}
	stmts_finalize(&s);
	pthread_mutex_lock(&rec->lock);
	rec->exited = true;
	pthread_cond_broadcast(&rec->done);
	pthread_mutex_unlock(&rec->lock);
	return NULL;
}

void vr_record_close(struct vr_record *rec)
{
	if (!rec)
		return;
	pthread_mutex_lock(&rec->lock);
	rec->stop = true;
	pthread_cond_signal(&rec->cond);
	pthread_mutex_unlock(&rec->lock);
	pthread_join(rec->thread, NULL);
	sqlite3_close(rec->db);
	pthread_cond_destroy(&rec->done);
	pthread_cond_destroy(&rec->cond);
	pthread_mutex_destroy(&rec->lock);
	free(rec);
}
