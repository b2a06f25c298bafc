// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer target for the record's readers: `vmras errors` (table, JSON,
 * summary, filters) and `vmras metrics` (tools/vmras/cmd_record.c, compiled
 * in) on a database the fuzzer makes. The first byte picks the reader;
 * the second how the database is made:
 *   - even: the rest is SQL run on an empty database (the seeds are real
 *     records, dumped), so that tables of the right names hold whatever
 *     types and values the fuzzer writes: NULLs, text for numbers, huge
 *     and negative times, a `memory` column that is not JSON. Only what
 *     makes tables and rows is allowed (an authorizer refuses ATTACH,
 *     PRAGMA and the rest), and a progress handler stops runaway queries;
 *   - odd: the rest is the database file itself, bytes as a disk holds them
 *     after corruption.
 * Besides crashes and sanitizer reports it aborts when an invariant fails:
 *   - a reader exits 0, 1 or 2 (2 after saying why);
 *   - with --json, what it printed is one JSON value.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <json-c/json.h>

/*
 * The readers, with their static helpers. Their databases open through
 * fuzz_open: a view the fuzzer made of a recursive query without end, or
 * of gigabyte blobs, stops at a bound (a runaway query is SQLite's to
 * stop, not a bug of the reader's) and the reader reports the error.
 */
static int fuzz_open(const char *path, sqlite3 **db, int flags, const char *vfs);
#define sqlite3_open_v2 fuzz_open
#include "../../tools/vmras/cmd_record.c"
#undef sqlite3_open_v2

static int stop_runaway(void *ctx)
{
	return ++*(int *)ctx > 2000;	/* x 1000 VM instructions */
}

static int reader_steps;

static int fuzz_open(const char *path, sqlite3 **db, int flags, const char *vfs)
{
	int r = sqlite3_open_v2(path, db, flags, vfs);

	if (r == SQLITE_OK) {
		reader_steps = 0;
		sqlite3_limit(*db, SQLITE_LIMIT_LENGTH, 1 << 20);
		sqlite3_progress_handler(*db, 1000, stop_runaway, &reader_steps);
	}
	return r;
}

const char *prog = "vmras";
static bool said_why;

void tool_error(const char *cmd, const char *fmt, ...)
{
	(void)cmd, (void)fmt;
	said_why = true;
}

static char db_path[64];
static int out_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(db_path, sizeof(db_path), "/dev/shm/vmras-fuzz-record-%d.db", (int)getpid());
	/* A big sort's temporary files: in memory too, never in /var/tmp. */
	setenv("SQLITE_TMPDIR", "/dev/shm", 1);
	/* The readers print on stdout: into a memfd, to be checked and emptied. */
	out_fd = memfd_create("fuzz-record-out", MFD_CLOEXEC);
	if (out_fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0)
		abort();
	return 0;
}

static int only_building(void *ctx, int action, const char *a, const char *b, const char *c,
			 const char *d)
{
	(void)ctx, (void)a, (void)b, (void)c, (void)d;
	switch (action) {
	case SQLITE_CREATE_TABLE: case SQLITE_CREATE_INDEX: case SQLITE_CREATE_VIEW:
	case SQLITE_INSERT: case SQLITE_UPDATE: case SQLITE_DELETE: case SQLITE_READ:
	case SQLITE_SELECT: case SQLITE_TRANSACTION: case SQLITE_FUNCTION:
	case SQLITE_RECURSIVE: case SQLITE_REINDEX: case SQLITE_SAVEPOINT:
	case SQLITE_ALTER_TABLE: case SQLITE_DROP_TABLE: case SQLITE_DROP_INDEX:
	case SQLITE_DROP_VIEW:
		return SQLITE_OK;
	default:
		return SQLITE_DENY;
	}
}

static void remove_db(void)
{
	static const char *const ext[] = { "", "-wal", "-shm", "-journal" };
	char p[80];

	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", db_path, ext[i]);
		unlink(p);
	}
}

static bool make_from_sql(const uint8_t *data, size_t size)
{
	char *sql = malloc(size + 1);
	sqlite3 *db = NULL;
	int steps = 0;
	bool ok;

	if (!sql)
		return false;
	memcpy(sql, data, size);
	sql[size] = '\0';
	ok = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) ==
	     SQLITE_OK;
	if (ok) {
		sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
		sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
		sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 20);
		sqlite3_set_authorizer(db, only_building, NULL);
		sqlite3_progress_handler(db, 1000, stop_runaway, &steps);
		/* Whatever ran before an error stays: a half-built record is a case too. */
		sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	sqlite3_close(db);
	free(sql);
	return ok;
}

static bool make_from_bytes(const uint8_t *data, size_t size)
{
	int fd = open(db_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, data, size) == (ssize_t)size;
	close(fd);
	return ok;
}

static void check_output(bool json)
{
	off_t len;
	char *text;

	fflush(stdout);
	len = lseek(out_fd, 0, SEEK_CUR);
	if (json && len > 0) {
		json_tokener *tok = json_tokener_new();
		json_object *o;

		if (!tok)
			abort();
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
		text = malloc((size_t)len + 1);
		if (!text || pread(out_fd, text, (size_t)len, 0) != len)
			abort();
		text[len] = '\0';
		o = json_tokener_parse_ex(tok, text, (int)len);
		if (!o || json_tokener_get_parse_end(tok) + 1 < (size_t)len)
			abort();
		json_object_put(o);
		json_tokener_free(tok);
		free(text);
	}
	if (ftruncate(out_fd, 0) || lseek(out_fd, 0, SEEK_SET))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const modes[][6] = {
		{ "errors", NULL },
		{ "errors", "--json", NULL },
		{ "errors", "--summary", NULL },
		{ "errors", "--summary", "--json", NULL },
		{ "errors", "--json", "--kind", "ao", "--vm", "vm0" },
		{ "errors", "--since", "1", "--until", "2026-11-22T10:00", NULL },
		{ "metrics", NULL },
	};
	const size_t nmodes = sizeof(modes) / sizeof(modes[0]);
	char *argv[16];
	unsigned int sel;
	int argc = 0, rc;
	bool json = false, made;

	if (size < 2)
		return 0;
	sel = data[0] % nmodes;
	remove_db();
	made = data[1] & 1 ? make_from_bytes(data + 2, size - 2)
			   : make_from_sql(data + 2, size - 2);
	if (!made)
		return 0;
	for (int i = 0; i < 6 && modes[sel][i]; i++) {
		argv[argc++] = (char *)modes[sel][i];
		json |= !strcmp(modes[sel][i], "--json");
	}
	argv[argc++] = (char *)"--record";
	argv[argc++] = db_path;
	argv[argc] = NULL;
	said_why = false;
	rc = !strcmp(argv[0], "metrics") ? metrics_main(argc, argv) : errors_main(argc, argv);
	if (rc < 0 || rc > 2 || (rc == 2 && !said_why))
		abort();
	check_output(json && rc == 0);
	remove_db();
	return 0;
}
