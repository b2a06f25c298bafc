// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * mcetarget: the program inside the Linux test guest (tests/linux/).
 *
 * Built static with the host's gcc and run by the initramfs's /init as
 * root, on the serial console.  It reads one command a line from stdin and
 * answers with lines that start with "MCET " (everything else on the
 * console is the kernel's):
 *
 *   info              MCG_CAP, IA32_FEATURE_CONTROL, MCG_EXT_CTL of every
 *                     CPU (through /dev/cpu/N/msr when msr.ko is loaded)
 *   alloc             a new anonymous page, touched; prints its physical
 *                     address (from /proc/self/pagemap) and makes it the
 *                     current page
 *   freepage          allocates 64 pages, notes their physical addresses,
 *                     frees them, prints one that went back to the
 *                     allocator first (a free page for an SRAO)
 *   early | late      prctl(PR_MCE_KILL) early or late kill for this process
 *   pin CPU           run on that CPU only
 *   read SECONDS      read the current page in user mode in a tight loop
 *                     (no system call but one time() per million loads)
 *                     until SIGBUS or SECONDS pass
 *   touch             read the current page once
 *   wait SECONDS      sleep, so that an asynchronous SIGBUS (AO) can arrive
 *   meminfo           HardwareCorrupted from /proc/meminfo
 *   write PATH VALUE  write VALUE into a file (sysfs, procfs)
 *   exit              leave (init powers the guest off)
 *
 * A SIGBUS is reported as
 *   MCET sigbus code=<n> name=<BUS_MCEERR_AR|BUS_MCEERR_AO|...>
 *        addr=0x... lsb=<n> mine=<0|1> cpu=<n>
 * where mine says whether si_addr lies in the current page.  Every answer
 * ends with "MCET ok <command>" (or "MCET err <command> ..."), so the
 * harness knows when a command is done.
 *
 * With an argument (a tty such as /dev/ttyS1) it talks there, in raw mode,
 * instead of on stdin/stdout: a second serial port keeps its lines apart
 * from the kernel's console messages, which would otherwise cut into them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#endif
#ifndef BUS_MCEERR_AO
#define BUS_MCEERR_AO 5
#endif
#ifndef PR_MCE_KILL
#define PR_MCE_KILL 33
#define PR_MCE_KILL_SET 1
#define PR_MCE_KILL_LATE 0
#define PR_MCE_KILL_EARLY 1
#endif

#define PAGE 4096UL

static volatile uint64_t *cur_page;	/* the page the harness aims at */
static sigjmp_buf read_env;
static volatile sig_atomic_t in_read;

/* One line, written at once so that it does not interleave with the
 * kernel's console output more than it must. */
static void say(const char *fmt, ...)
{
	char buf[512];
	int n;
	va_list ap;

	memcpy(buf, "MCET ", 5);
	va_start(ap, fmt);
	n = vsnprintf(buf + 5, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += 5;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(1, buf, n);
}

static const char *bus_name(int code)
{
	switch (code) {
	case BUS_MCEERR_AR: return "BUS_MCEERR_AR";
	case BUS_MCEERR_AO: return "BUS_MCEERR_AO";
	case BUS_ADRALN: return "BUS_ADRALN";
	case BUS_ADRERR: return "BUS_ADRERR";
	case BUS_OBJERR: return "BUS_OBJERR";
	case SI_KERNEL: return "SI_KERNEL";
	case SI_USER: return "SI_USER";
	default: return "other";
	}
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	uintptr_t p = (uintptr_t)cur_page;
	int mine = p && a >= p && a < p + PAGE;

	(void)sig;
	(void)uc;
	say("sigbus code=%d name=%s addr=0x%lx lsb=%d mine=%d cpu=%d",
	    si->si_code, bus_name(si->si_code), (unsigned long)a,
	    (int)si->si_addr_lsb, mine, sched_getcpu());
	/* An AR comes back at once if we return to the load: leave it. */
	if (in_read) {
		in_read = 0;
		siglongjmp(read_env, 1);
	}
}

static int virt_to_phys(const void *v, uint64_t *pa)
{
	uint64_t e;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	off_t off = ((uintptr_t)v / PAGE) * sizeof(e);

	if (fd < 0)
		return -errno;
	if (pread(fd, &e, sizeof(e), off) != sizeof(e)) {
		int err = -errno;

		close(fd);
		return err ? err : -EIO;
	}
	close(fd);
	if (!(e & (1ULL << 63)))
		return -ENOENT;		/* not present */
	if (!(e & ((1ULL << 55) - 1)))
		return -EPERM;		/* PFN hidden: not root */
	*pa = (e & ((1ULL << 55) - 1)) * PAGE;
	return 0;
}

static uint64_t hardware_corrupted_kb(void)
{
	char line[256];
	unsigned long long kb = ~0ULL;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return kb;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HardwareCorrupted: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int rdmsr(int cpu, uint32_t msr, uint64_t *val)
{
	char path[64];
	int fd, r;

	snprintf(path, sizeof(path), "/dev/cpu/%d/msr", cpu);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	r = pread(fd, val, sizeof(*val), msr) == sizeof(*val) ? 0 : -errno;
	close(fd);
	return r;
}

static void cmd_info(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	say("cpus online=%ld", n);
	for (int c = 0; c < n; c++) {
		uint64_t cap = 0, feat = 0, ext = 0;
		int r1 = rdmsr(c, 0x179, &cap);		/* IA32_MCG_CAP */
		int r2 = rdmsr(c, 0x3a, &feat);		/* IA32_FEATURE_CONTROL */
		int r3 = rdmsr(c, 0x4d0, &ext);		/* IA32_MCG_EXT_CTL */

		if (r1) {
			say("msr cpu=%d unavailable errno=%d", c, -r1);
			continue;
		}
		say("msr cpu=%d mcg_cap=0x%llx feat_ctl=%s0x%llx mcg_ext_ctl=%s0x%llx",
		    c, (unsigned long long)cap, r2 ? "err:" : "",
		    (unsigned long long)(r2 ? (uint64_t)-r2 : feat),
		    r3 ? "err:" : "", (unsigned long long)(r3 ? (uint64_t)-r3 : ext));
	}
}

static void *new_page(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, PAGE);
	return p;
}

static void cmd_alloc(void)
{
	uint64_t pa;
	void *p = new_page();
	int r;

	if (!p) {
		say("err alloc mmap errno=%d", errno);
		return;
	}
	r = virt_to_phys(p, &pa);
	if (r) {
		say("err alloc pagemap errno=%d", -r);
		return;
	}
	cur_page = p;
	say("page vaddr=0x%lx paddr=0x%llx pfn=0x%llx", (unsigned long)p,
	    (unsigned long long)pa, (unsigned long long)(pa / PAGE));
}

static void cmd_freepage(void)
{
	enum { N = 64 };
	void *p[N];
	uint64_t pa[N];

	for (int i = 0; i < N; i++) {
		p[i] = new_page();
		if (!p[i] || virt_to_phys(p[i], &pa[i])) {
			say("err freepage");
			return;
		}
	}
	/* The first one freed sits deepest in the per-CPU free list. */
	for (int i = 0; i < N; i++)
		munmap(p[i], PAGE);
	say("freepage paddr=0x%llx pfn=0x%llx", (unsigned long long)pa[0],
	    (unsigned long long)(pa[0] / PAGE));
}

static volatile uint64_t loads;

/* The loop itself, out of line so that nothing of it lives across the
 * siglongjmp out of the SIGBUS handler. */
static __attribute__((noinline)) uint64_t read_loop(volatile uint64_t *q,
						     time_t end)
{
	uint64_t sum = 0;

	for (;;) {
		for (int i = 0; i < 1000000; i++)
			sum += q[i & 511];
		loads += 1000000;
		if (time(NULL) >= end)
			return sum;
	}
}

static void cmd_read(int seconds)
{
	volatile uint64_t *q = cur_page;
	uint64_t sum;

	if (!q) {
		say("err read no page");
		return;
	}
	loads = 0;
	if (sigsetjmp(read_env, 1)) {
		say("read interrupted loads=%llu", (unsigned long long)loads);
		return;
	}
	in_read = 1;
	say("reading cpu=%d", sched_getcpu());
	sum = read_loop(q, time(NULL) + seconds);
	in_read = 0;
	say("read done loads=%llu sum=%llu", (unsigned long long)loads,
	    (unsigned long long)sum);
}

static void cmd_touch(void)
{
	if (!cur_page) {
		say("err touch no page");
		return;
	}
	if (sigsetjmp(read_env, 1)) {
		say("touch interrupted");
		return;
	}
	in_read = 1;
	uint64_t v = cur_page[0];
	in_read = 0;
	say("touch value=0x%llx", (unsigned long long)v);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct termios t;
	char line[256];

	if (argc > 1) {
		int fd = open(argv[1], O_RDWR | O_NOCTTY);

		if (fd < 0) {
			perror(argv[1]);
			return 1;
		}
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 1)
			close(fd);
		if (tcgetattr(0, &t) == 0) {
			cfmakeraw(&t);
			t.c_lflag |= ICANON;	/* line at a time */
			t.c_iflag |= ICRNL;
			t.c_oflag |= OPOST | ONLCR;
			tcsetattr(0, TCSANOW, &t);
		}
	} else if (tcgetattr(0, &t) == 0) {
		/* No echo: the harness's commands would come back. */
		t.c_lflag &= ~(ECHO | ECHONL);
		tcsetattr(0, TCSANOW, &t);
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;	/* an AO must not end fgets() */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);

	say("ready pid=%d cpu=%d hwcorrupted_kb=%llu", getpid(), sched_getcpu(),
	    (unsigned long long)hardware_corrupted_kb());
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32] = "";
		int arg = 0;

		if (sscanf(line, "%31s %d", cmd, &arg) < 1)
			continue;
		if (!strcmp(cmd, "info")) {
			cmd_info();
		} else if (!strcmp(cmd, "alloc")) {
			cmd_alloc();
		} else if (!strcmp(cmd, "freepage")) {
			cmd_freepage();
		} else if (!strcmp(cmd, "early") || !strcmp(cmd, "late")) {
			int early = !strcmp(cmd, "early");

			if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET,
				  early ? PR_MCE_KILL_EARLY : PR_MCE_KILL_LATE, 0, 0))
				say("err %s prctl errno=%d", cmd, errno);
		} else if (!strcmp(cmd, "pin")) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(arg, &set);
			if (sched_setaffinity(0, sizeof(set), &set))
				say("err pin errno=%d", errno);
			say("pinned cpu=%d", sched_getcpu());
		} else if (!strcmp(cmd, "read")) {
			cmd_read(arg > 0 ? arg : 5);
		} else if (!strcmp(cmd, "touch")) {
			cmd_touch();
		} else if (!strcmp(cmd, "wait")) {
			struct timespec ts = { arg > 0 ? arg : 1, 0 };

			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
		} else if (!strcmp(cmd, "meminfo")) {
			say("meminfo hwcorrupted_kb=%llu",
			    (unsigned long long)hardware_corrupted_kb());
		} else if (!strcmp(cmd, "write")) {
			char path[128], val[64];
			int fd;

			if (sscanf(line, "%*s %127s %63s", path, val) != 2) {
				say("err write usage");
				continue;
			}
			fd = open(path, O_WRONLY);
			if (fd < 0 || write(fd, val, strlen(val)) < 0) {
				say("err write %s errno=%d", path, errno);
				if (fd >= 0)
					close(fd);
				continue;
			}
			close(fd);
		} else if (!strcmp(cmd, "exit")) {
			say("ok exit");
			return 0;
		} else {
			say("err unknown %s", cmd);
			continue;
		}
		say("ok %s", cmd);
	}
	return 0;
}
