// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras demo: boot the self-checking guest, inject an action-optional and
 * an action-required memory error, and say in a few lines what was lost,
 * what the guest was told, and that the rest of its data survived. Then
 * the running guest moves to a new `vmras run --incoming` process, its bad
 * pages with it, and finishes its passes there.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "migration.h"
#include "vmm.h"

#define AO_GPA 0x600000ULL	/* in vCPU 0's slice */
#define AR_GPA 0x1300000ULL	/* in vCPU 1's slice */
#define MCI_STATUS_UC (1ULL << 61)
#define MCI_STATUS_ADDRV (1ULL << 58)
#define MCI_STATUS_AR (1ULL << 55)
#define MCI_STATUS_DEFERRED (1ULL << 44)
#define DEST_LISTEN_MS 30000	/* for the destination to listen */
#define DEST_FINISH_MS 600000	/* for it to finish the guest's passes */

static uint64_t u64(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_uint64(v) : 0;
}

static bool boolean(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* What the guest was told, in its vendor's terms. */
static const char *mce_kind(uint64_t st, bool amd)
{
	if (amd)
		return st & MCI_STATUS_DEFERRED ? "a deferred error (action optional)"
		       : st & MCI_STATUS_UC ? "an uncorrected error with poison (action required)"
					    : "a corrected error";
	return st & MCI_STATUS_AR ? "SRAR (action required)" : "SRAO (action optional)";
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "?";
}

/* The events in the first len bytes of the log (those before the move). */
static void say_events(const char *path, off_t len)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (!f)
		return;
	while (ftello(f) < len && fgets(line, sizeof(line), f)) {
		json_object *e = json_tokener_parse(line), *flags, *ar;

		if (!e)
			continue;
		json_object_object_get_ex(e, "flags", &flags);
		json_object_object_get_ex(flags, "action-required", &ar);
		printf("  host:  %s error at GPA 0x%" PRIx64 " (from %s): %s %" PRIu64
		       " KiB; told the %s (action %s)%s%s\n",
		       json_object_get_boolean(ar) ? "action-required" : "action-optional",
		       u64(e, "gpa"), str(e, "source"),
		       !strcmp(str(e, "contained"), "true") ? "poisoned" : "could not poison",
		       u64(e, "size") >> 10, str(e, "recipient"), str(e, "action"),
		       *str(e, "detail") ? ": " : "", str(e, "detail"));
		json_object_put(e);
	}
	fclose(f);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The demo's files, in one private directory. */
struct demo_files {
	char dir[32];
	char log[64];	/* the source's MEMORY_FAILURE events */
	char sock[64];	/* the migration socket */
	char err[64];	/* the destination's stderr */
};

static void files_remove(const struct demo_files *f)
{
	unlink(f->log);
	unlink(f->sock);
	unlink(f->err);
	rmdir(f->dir);
}

/* The destination: `vmras run --incoming unix:PATH`, a child of the demo. */
struct dest {
	pid_t pid;
	int out;		/* its stdout: the --summary json line */
	const char *backend;
};

/* Its stderr's last line (it says why it failed in one). */
static const char *dest_said(const struct demo_files *f, char *buf, size_t len)
{
	FILE *fp = fopen(f->err, "r");
	char line[320];

	snprintf(buf, len, "it said nothing");
	if (!fp)
		return buf;
	while (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = '\0';
		if (*line)
			snprintf(buf, len, "%s", line);
	}
	fclose(fp);
	return buf;
}

static void dest_kill(struct dest *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = -1;
	}
	if (d->out >= 0) {
		close(d->out);
		d->out = -1;
	}
}

static void exit_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "was killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/*
 * Start it with the source's machine (the stream's header must match it)
 * and wait until it listens. 0, or -1 with why set.
 */
static int dest_start(struct dest *d, const struct demo_files *f, const struct vmm_config *cfg,
		      const char *backend, const char *vendor, char *why, size_t whylen)
{
	char mem[32], vcpus[16], passes[16], seed[32], uri[80], said[400], how[64];
	const char *argv[] = {
		"vmras", "run", "--incoming", uri, "--vcpus", vcpus, "--mem", mem,
		"--backend", backend, "--passes", passes, "--seed", seed,
		"--cpu-vendor", vendor, "--summary", "json", "--no-record", NULL,
	};
	pid_t parent = getpid();
	uint64_t end;
	int pfd[2], efd, status;

	snprintf(uri, sizeof(uri), "unix:%s", f->sock);
	snprintf(vcpus, sizeof(vcpus), "%u", cfg->nr_vcpus);
	snprintf(mem, sizeof(mem), "%" PRIu64, cfg->mem_size);
	snprintf(passes, sizeof(passes), "%u", cfg->passes);
	snprintf(seed, sizeof(seed), "%" PRIu64, cfg->seed);
	*d = (struct dest){ .pid = -1, .out = -1, .backend = backend };
	if (pipe2(pfd, O_CLOEXEC)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return -1;
	}
	efd = open(f->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (efd < 0) {
		snprintf(why, whylen, "create %s: %s", f->err, strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	d->pid = fork();
	if (d->pid == 0) {
		static const char msg[] = "vmras demo: exec /proc/self/exe failed\n";
		sigset_t none;

		/* It goes when the demo goes, however the demo ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		/* The source VM blocked its quit signals; the destination blocks its own. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (dup2(pfd[1], STDOUT_FILENO) < 0 || dup2(efd, STDERR_FILENO) < 0)
			_exit(127);
		execv("/proc/self/exe", (char *const *)argv);
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(127);
	}
	close(pfd[1]);
	close(efd);
	if (d->pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(pfd[0]);
		return -1;
	}
	d->out = pfd[0];
	for (end = now_ms() + DEST_LISTEN_MS;; sleep_ms(10)) {
		struct stat st;

		if (!stat(f->sock, &st) && S_ISSOCK(st.st_mode))
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = -1;
			exit_status(status, how, sizeof(how));
			snprintf(why, whylen, "it %s: %s", how, dest_said(f, said, sizeof(said)));
			dest_kill(d);
			return -1;
		}
		if (now_ms() > end) {
			snprintf(why, whylen, "it did not listen on %s within %d s", uri,
				 DEST_LISTEN_MS / 1000);
			dest_kill(d);
			return -1;
		}
	}
}

/*
 * Wait for it to finish the guest's passes: its --summary json, or NULL
 * with why set.
 */
static json_object *dest_finish(struct dest *d, const struct demo_files *f, char *why,
				size_t whylen)
{
	uint64_t end = now_ms() + DEST_FINISH_MS;
	size_t len = 0, cap = 0;
	char *buf = NULL, *line, said[400], how[64];
	json_object *sum = NULL;
	int status;

	for (;;) {
		struct pollfd p = { .fd = d->out, .events = POLLIN };
		uint64_t t = now_ms();
		ssize_t n;
		int r;

		r = t >= end ? 0 : poll(&p, 1, (int)(end - t));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(why, whylen, "it did not finish the guest's passes within %d s",
				 DEST_FINISH_MS / 1000);
			goto fail;
		}
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);

			if (!nb) {
				snprintf(why, whylen, "out of memory for its summary");
				goto fail;
			}
			buf = nb;
			cap += 65536;
		}
		n = read(d->out, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	waitpid(d->pid, &status, 0);
	d->pid = -1;
	buf = buf ? buf : calloc(1, 1);
	if (!buf) {
		snprintf(why, whylen, "out of memory for its summary");
		goto fail;
	}
	buf[len] = '\0';
	while (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	line = strrchr(buf, '\n');
	sum = json_tokener_parse(line ? line + 1 : buf);
	if (!sum || !json_object_is_type(sum, json_type_object)) {
		json_object_put(sum);
		sum = NULL;
		exit_status(status, how, sizeof(how));
		snprintf(why, whylen, "it %s without a summary: %s", how,
			 dest_said(f, said, sizeof(said)));
	}
	free(buf);
	dest_kill(d);
	return sum;
fail:
	free(buf);
	dest_kill(d);
	return NULL;
}

/*
 * The source's side of the move, beside vmm_run: once the guest has
 * retired its bad pages, migrate (vmm/migration.h), wait for the end, and
 * end the source's run.
 */
struct mover {
	pthread_t thread;
	struct vmm *vm;
	char uri[80];
	uint64_t wait_retired;	/* move once the guest retired this many pages */
	const char *log;	/* the event log */
	off_t log_len;		/* its length when the move began (or the end) */
	int stop;		/* vmm_run returned */
	bool started;
	char why[400];		/* why it did not start */
	json_object *query;	/* migration_query at the end */
	json_object *left;	/* the guest's report as it left */
};

static bool mig_over(const char *status)
{
	return !strcmp(status, "completed") || !strcmp(status, "failed") ||
	       !strcmp(status, "cancelled");
}

static void *mover_main(void *arg)
{
	struct mover *mv = arg;
	struct vmm_error e = { "" };
	struct stat st;

	for (;;) {
		json_object *g;
		uint64_t retired;
		char status[32];

		if (__atomic_load_n(&mv->stop, __ATOMIC_ACQUIRE)) {
			snprintf(mv->why, sizeof(mv->why), "the source VM stopped before the guest "
				 "retired its bad pages");
			return NULL;
		}
		g = vmm_guest_report_json(mv->vm);
		retired = u64(g, "pages-retired");
		snprintf(status, sizeof(status), "%s", str(g, "status"));
		json_object_put(g);
		if (retired >= mv->wait_retired)
			break;
		if (strcmp(status, "running")) {
			snprintf(mv->why, sizeof(mv->why), "the guest %s before it retired its bad "
				 "pages", status);
			return NULL;
		}
		sleep_ms(20);
	}
	/* Sending a bad page reads it (safely) again: not news, and not act 1's. */
	if (!stat(mv->log, &st))
		mv->log_len = st.st_size;
	if (migration_start(mv->vm, mv->uri, false, &e)) {
		snprintf(mv->why, sizeof(mv->why), "%s", e.msg);
		vmm_request_quit(mv->vm, "migration failed");
		return NULL;
	}
	mv->started = true;
	for (;;) {
		json_object *q = migration_query(mv->vm);

		if (mig_over(str(q, "status"))) {
			mv->query = q;
			break;
		}
		json_object_put(q);
		sleep_ms(20);
	}
	if (!strcmp(str(mv->query, "status"), "completed")) {
		mv->left = vmm_guest_report_json(mv->vm);
		vmm_request_quit(mv->vm, "migrated");
	} else {
		vmm_request_quit(mv->vm, "migration failed");
	}
	return NULL;
}

/* The bad pages in a query-memory-errors object, sorted: how many. */
static size_t bad_pages(json_object *me, uint64_t *gpa, uint64_t *size, size_t max)
{
	json_object *a;
	size_t n = 0;

	if (!json_object_object_get_ex(me, "errors", &a))
		return 0;
	for (size_t i = 0; i < json_object_array_length(a) && n < max; i++, n++) {
		json_object *x = json_object_array_get_idx(a, i);
		size_t j = n;

		for (; j && gpa[j - 1] > u64(x, "gpa"); j--) {
			gpa[j] = gpa[j - 1];
			size[j] = size[j - 1];
		}
		gpa[j] = u64(x, "gpa");
		size[j] = u64(x, "size");
	}
	return n;
}

/*
 * The move: where it went and how, what the destination lost (its
 * query-memory-errors), what the guest checked there. True if all is well.
 */
static bool say_migration(const struct mover *mv, const struct dest *d, int dest_pid,
			  json_object *src, json_object *dst)
{
	json_object *ram = NULL, *me = NULL, *g = NULL, *hc = NULL, *sme = NULL;
	uint64_t gpa[8], size[8], sgpa[8], ssize[8], verified;
	size_t n, sn;
	bool same, each = true;

	json_object_object_get_ex(mv->query, "ram", &ram);
	json_object_object_get_ex(dst, "memory-errors", &me);
	json_object_object_get_ex(dst, "guest", &g);
	json_object_object_get_ex(dst, "host-check", &hc);
	json_object_object_get_ex(src, "memory-errors", &sme);
	printf("\n  moved:   to a new process (pid %d) while running: %.1f MiB in %" PRIu64
	       " ms, stopped %" PRIu64 " ms; %" PRIu64 " pages sent as poisoned\n",
	       dest_pid, (double)u64(ram, "transferred") / (1 << 20), u64(mv->query, "total-time"),
	       u64(mv->query, "downtime"), u64(ram, "poisoned-pages"));
	/* Its own registry (query-memory-errors): the source's bad pages, poisoned again. */
	n = bad_pages(me, gpa, size, 8);
	sn = bad_pages(sme, sgpa, ssize, 8);
	same = n == sn && n > 0;
	for (size_t i = 0; i < n; i++) {
		same = same && gpa[i] == sgpa[i] && size[i] == ssize[i];
		each = each && size[i] == size[0];
	}
	printf("  there:   lost ");
	for (size_t i = 0; i < n; i++) {
		printf("%sGPA 0x%" PRIx64, i == 0 ? "" : i + 1 == n ? " and " : ", ", gpa[i]);
		if (!each)
			printf(" (%" PRIu64 " KiB)", size[i] >> 10);
	}
	if (n && each)
		printf(n > 1 ? ", %" PRIu64 " KiB each" : " (%" PRIu64 " KiB)", size[0] >> 10);
	printf("%s: %" PRIu64 " KiB of %" PRIu64 " MiB (%s), poisoned before the guest ran\n",
	       n ? "" : "nothing", u64(dst, "bytes-lost") >> 10, u64(dst, "mem") >> 20, d->backend);
	verified = u64(g, "pages-verified") - u64(mv->left, "pages-verified");
	printf("  there:   the guest went on: %" PRIu64 " more page verifications, %" PRIu64 " corrupted",
	       verified,
	       u64(g, "pages-corrupted"));
	if (hc)
		printf("; the host read back %" PRIu64 " pages, %" PRIu64 " corrupted",
		       u64(hc, "pages"), u64(hc, "corrupted") + u64(hc, "unreadable"));
	printf("\n  QEMU:    refuses to migrate a VM with poisoned memory (\"Can't migrate this vm with "
	       "hardware poisoned memory\");\n           here it moved with only its 4 KiB losses\n");
	return same && verified > 0 && !u64(g, "pages-corrupted") &&
	       !strcmp(str(dst, "result"), "pass") && boolean(dst, "completed");
}

int demo_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "cpu-vendor", required_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vmm_config cfg = {
		.nr_vcpus = 2, .mem_size = 32ULL << 20, .backend = RAM_HUGETLB_2M, .passes = 4,
		.seed = 1, .ninject = 2,
		.inject = {
			{ .kind = VMRAS_AO, .gpa = AO_GPA, .pass = 1 },
			{ .kind = VMRAS_AR, .gpa = AR_GPA, .pass = 2 },
		},
	};
	struct demo_files f = { .dir = "/tmp/vmras-demo-XXXXXX" };
	struct mover mv = { .wait_retired = 2, .log = f.log, .log_len = INT64_MAX };
	struct dest d = { .pid = -1, .out = -1 };
	struct vmm_error e = { "" };
	json_object *s, *g, *a, *ds = NULL;
	const char *vendor = "host";
	char why[512];
	struct vmm *vm;
	int c, code, dest_pid;
	uint64_t lost, mem;
	bool amd, moved;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (ram_backend_parse(optarg, &cfg.backend, &cfg.backend_path)) {
				tool_error("demo", "--backend: unknown backend '%s'", optarg);
				return 2;
			}
			if (cfg.backend == RAM_HUGETLB_1G)
				cfg.mem_size = 1ULL << 30;
			break;
		case 'V':
			if (x86_cpu_vendor_parse(optarg, &cfg.cpu_vendor)) {
				tool_error("demo", "--cpu-vendor: unknown vendor '%s' (host, intel, amd)",
					   optarg);
				return 2;
			}
			vendor = optarg;
			break;
		case 'h':
			printf("Usage: %s demo [--backend hugetlb-2m|anon|shmem|...] (default hugetlb-2m,\n"
			       "anon if no huge pages are free) [--cpu-vendor host|intel|amd] (default host)\n"
			       "The guest loses two pages, then moves to a child `%s run --incoming`.\n",
			       prog, prog);
			return 0;
		default: return 2;
		}
	}
	vmras_policy_default(&cfg.policy);
	if (!mkdtemp(f.dir)) {
		tool_error("demo", "create a directory %s: %s", f.dir, strerror(errno));
		return 2;
	}
	snprintf(f.log, sizeof(f.log), "%s/events.jsonl", f.dir);
	snprintf(f.sock, sizeof(f.sock), "%s/migration.sock", f.dir);
	snprintf(f.err, sizeof(f.err), "%s/destination.err", f.dir);
	snprintf(mv.uri, sizeof(mv.uri), "unix:%s", f.sock);
	cfg.event_log = f.log;
	cfg.record = "";	/* a demo's errors are not the host's */

	printf("vmras demo: a KVM guest with %u vCPUs and %" PRIu64 " MiB of %s RAM checks its own\n"
	       "memory, %u passes over every page. After pass 1 the host page behind GPA\n"
	       "0x%llx goes bad (found by a scrub: action optional); after pass 2 the one\n"
	       "behind GPA 0x%llx (consumed by vCPU 1: action required). Then the running\n"
	       "guest moves to a new process and finishes its passes there.\n\n",
	       cfg.nr_vcpus, cfg.mem_size >> 20, ram_backend_name(cfg.backend), cfg.passes,
	       AO_GPA, AR_GPA);
	fflush(stdout);
	if (vmm_create(&cfg, &vm, &e)) {
		if (cfg.backend != RAM_HUGETLB_2M) {
			tool_error("demo", "%s", e.msg);
			files_remove(&f);
			return 2;
		}
		/* No huge pages to be had: the same demo on small pages. */
		printf("(no 2 MiB huge pages free: %s; running on anonymous memory)\n\n", e.msg);
		cfg.backend = RAM_ANON;
		if (vmm_create(&cfg, &vm, &e)) {
			tool_error("demo", "%s", e.msg);
			files_remove(&f);
			return 2;
		}
	}
	/* The destination waits for the guest from the start (a file backend is the source's own). */
	if (dest_start(&d, &f, &cfg, cfg.backend == RAM_FILE ? "anon" : ram_backend_name(cfg.backend),
		       vendor, why, sizeof(why))) {
		if (cfg.backend != RAM_HUGETLB_2M && cfg.backend != RAM_HUGETLB_1G)
			goto no_dest;
		printf("(the destination could not start on %s RAM: %s; it runs on anonymous memory)\n\n",
		       ram_backend_name(cfg.backend), why);
		fflush(stdout);
		if (dest_start(&d, &f, &cfg, "anon", vendor, why, sizeof(why)))
			goto no_dest;
	}
	dest_pid = d.pid;
	mv.vm = vm;
	errno = pthread_create(&mv.thread, NULL, mover_main, &mv);
	if (errno) {
		snprintf(why, sizeof(why), "start a thread: %s", strerror(errno));
		dest_kill(&d);
		goto no_dest;
	}
	code = vmm_run(vm, &e) ? -1 : vmm_exit_code(vm);
	__atomic_store_n(&mv.stop, 1, __ATOMIC_RELEASE);
	pthread_join(mv.thread, NULL);
	if (code < 0) {
		tool_error("demo", "%s", e.msg);
		goto out_error;
	}
	s = vmm_summary_json(vm);
	json_object_object_get_ex(s, "guest", &g);
	amd = !strcmp(str(s, "cpu-vendor"), "amd");
	printf("  guest: CPU vendor %s: told of memory errors by %s's rules\n",
	       str(s, "cpu-vendor-id"), amd ? "AMD" : "Intel");
	say_events(f.log, mv.log_len);
	json_object_object_get_ex(g, "machine-check-log", &a);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *m = json_object_array_get_idx(a, i);
		uint64_t st = u64(m, "status");

		if (!(st & MCI_STATUS_ADDRV))
			continue; /* a bystander's view of a broadcast */
		printf("  guest: vCPU %" PRIu64 " %s: %s, MCi_ADDR 0x%" PRIx64
		       ", %llu KiB (MCi_MISC LSB %" PRIu64 ")\n",
		       u64(m, "vcpu"), boolean(m, "polled") ? "found polling its banks"
							    : "took a machine check",
		       mce_kind(st, amd), u64(m, "addr"), (1ULL << (u64(m, "misc") & 0x3f)) >> 10,
		       u64(m, "misc") & 0x3f);
	}
	json_object_object_get_ex(g, "retired", &a);
	for (size_t i = 0; i < json_object_array_length(a); i++)
		printf("  guest: retired GPA 0x%" PRIx64 ", %" PRIu64 " KiB, and never touched it again\n",
		       u64(json_object_array_get_idx(a, i), "gpa"),
		       u64(json_object_array_get_idx(a, i), "size") >> 10);
	lost = u64(s, "bytes-lost");
	mem = u64(s, "mem");
	printf("\n  checked: %" PRIu64 " page verifications, %" PRIu64 " corrupted pages\n",
	       u64(g, "pages-verified"), u64(g, "pages-corrupted"));
	printf("  lost:    %" PRIu64 " KiB of %" PRIu64 " MiB (backing pages of %" PRIu64 " KiB)\n",
	       lost >> 10, mem >> 20, u64(s, "page-size") >> 10);
	/* QEMU discards the whole backing page of each error until reboot. */
	printf("  QEMU:    would have lost %" PRIu64 " KiB: the whole %" PRIu64
	       " KiB page behind each of the 2 errors\n",
	       2 * u64(s, "page-size") >> 10, u64(s, "page-size") >> 10);
	fflush(stdout);
	if (code == 0 && u64(g, "pages-corrupted"))
		code = 1;

	/* The move. */
	if (!mv.started || strcmp(str(mv.query, "status"), "completed")) {
		tool_error("demo", "%s: %s", mv.started ? "migration failed" : "no migration",
			   !mv.started ? mv.why : json_object_object_get_ex(mv.query, "error-desc", NULL)
			   ? str(mv.query, "error-desc") : str(mv.query, "status"));
		json_object_put(s);
		goto out_error;
	}
	ds = dest_finish(&d, &f, why, sizeof(why));
	if (!ds) {
		tool_error("demo", "the destination (pid %d): %s", dest_pid, why);
		json_object_put(s);
		goto out_error;
	}
	moved = say_migration(&mv, &d, dest_pid, s, ds);
	if (code == 0 && !moved)
		code = 1;
	printf("  result:  %s\n", code == 0
	       ? "PASS: the guest was told in its own language, the rest of its data survived,\n"
		 "           and it moved on with only its 4 KiB losses"
	       : "FAIL: see above");
	json_object_put(ds);
	json_object_put(s);
	json_object_put(mv.query);
	json_object_put(mv.left);
	vmm_destroy(vm);
	files_remove(&f);
	return code;

no_dest:
	tool_error("demo", "start the destination (vmras run --incoming %s): %s", mv.uri, why);
	vmm_destroy(vm);
	files_remove(&f);
	return 2;
out_error:
	dest_kill(&d);
	json_object_put(mv.query);
	json_object_put(mv.left);
	vmm_destroy(vm);
	files_remove(&f);
	return code < 0 ? 2 : 1;
}
