// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmras probe: one line per check (PASS/WARN/FAIL/INFO and why), in the
 * manner of virt-host-validate, or the same facts as one JSON object.
 * docs/probe.md documents every JSON key.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "cmd.h"
#include "kabi/kvm.h"
#include "kabi/mce.h"
#include "vmras/probe.h"

#define CAP_SYS_ADMIN_BIT 21
#define CAP_IPC_LOCK_BIT 14
#define BIT_SET(v, n) (((v) >> (n)) & 1)

/* ---- text ---------------------------------------------------------- */

enum level { PASS, WARN, FAIL, INFO };
static const char *const level_names[] = { "PASS", "WARN", "FAIL", "INFO" };

static void line(const char *section, enum level lv, const char *check,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void line(const char *section, enum level lv, const char *check,
		 const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	printf("%8s: %-60s: %s%s%s%s\n", section, check, level_names[lv],
	       detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

static const char *mce_kill_name(int policy)
{
	switch (policy) {
	case PR_MCE_KILL_LATE: return "late";
	case PR_MCE_KILL_EARLY: return "early";
	case PR_MCE_KILL_DEFAULT: return "default";
	default: return "unknown";
	}
}

static const char *size_name(uint64_t size, char *buf, size_t n)
{
	if (size >= (1ULL << 30) && !(size & ((1ULL << 30) - 1)))
		snprintf(buf, n, "%" PRIu64 " GiB", size >> 30);
	else if (size >= (1ULL << 20) && !(size & ((1ULL << 20) - 1)))
		snprintf(buf, n, "%" PRIu64 " MiB", size >> 20);
	else
		snprintf(buf, n, "%" PRIu64 " KiB", size >> 10);
	return buf;
}

/* Names of the set bits of v, from a bit->name function, comma-separated. */
static const char *bit_names(uint64_t v, const char *(*name)(unsigned int),
			     char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned int b = 0; b < 64; b++) {
		const char *s;
		int w;

		if (!BIT_SET(v, b))
			continue;
		s = name(b);
		w = s ? snprintf(buf + o, n - o, "%s%s", o ? "," : "", s)
		      : snprintf(buf + o, n - o, "%sbit%u", o ? "," : "", b);
		if (w < 0 || (size_t)w >= n - o)
			break;
		o += (size_t)w;
	}
	return buf[0] ? buf : "none";
}

static const char *gmem_flag_name(unsigned int bit)
{
	switch (1ULL << bit) {
	case GUEST_MEMFD_FLAG_MMAP: return "MMAP";
	case GUEST_MEMFD_FLAG_INIT_SHARED: return "INIT_SHARED";
	default: return NULL;
	}
}

static void text_kernel(const struct vmras_probe *p)
{
	const struct vmras_probe_kernel *k = &p->kernel;

	line("kernel", INFO, "Kernel version", "%s %s",
	     k->release[0] ? k->release : "unknown", k->machine);
	if (k->memory_failure)
		line("kernel", PASS, "Checking for memory-failure support",
		     "memory_failure_early_kill=%d memory_failure_recovery=%d",
		     k->early_kill, k->recovery);
	else
		line("kernel", WARN, "Checking for memory-failure support",
		     "no /proc/sys/vm/memory_failure_*: kernel built without CONFIG_MEMORY_FAILURE never reports errors");
	if (k->mce_kill_policy >= 0)
		line("kernel", INFO, "This process's PR_MCE_KILL policy", "%s",
		     mce_kill_name(k->mce_kill_policy));
	else
		line("kernel", WARN, "This process's PR_MCE_KILL policy",
		     "prctl(PR_MCE_KILL_GET): %s", strerror(-k->mce_kill_policy));
	if (k->hw_corrupted_known)
		line("kernel", k->hw_corrupted_kib ? WARN : PASS,
		     "Hardware-corrupted memory (HardwareCorrupted)",
		     "%" PRIu64 " kB", k->hw_corrupted_kib);
	else
		line("kernel", INFO, "Hardware-corrupted memory (HardwareCorrupted)",
		     "not reported by this kernel");
}

static void text_kvm(const struct vmras_probe *p)
{
	const struct vmras_probe_kvm *k = &p->kvm;
	char buf[256];

	if (!k->probed) {
		line("kvm", INFO, "Checking /dev/kvm", "not probed (--no-devices)");
		return;
	}
	if (k->open_err) {
		line("kvm", FAIL, "Checking /dev/kvm", "%s", strerror(-k->open_err));
		return;
	}
	line("kvm", PASS, "Checking /dev/kvm", "API version %d", k->api_version);
	if (!k->arm64) {
		line("kvm", k->mce_banks > 0 ? PASS : FAIL, "Checking KVM_CAP_MCE",
		     "%d banks", k->mce_banks > 0 ? k->mce_banks : 0);
		if (k->mce_cap_err)
			line("kvm", FAIL, "Checking KVM_X86_GET_MCE_CAP_SUPPORTED", "%s",
			     strerror(-k->mce_cap_err));
		else
			line("kvm", k->mce_cap_supported & MCG_SER_P ? PASS : WARN,
			     "Checking emulated MCG_CAP bits", "%s",
			     bit_names(k->mce_cap_supported & ~MCG_BANKCNT_MASK,
				       vmras_mcg_cap_bit_name, buf, sizeof(buf)));
	}
	line("kvm", k->memory_fault_info > 0 ? PASS : WARN,
	     "Checking KVM_CAP_MEMORY_FAULT_INFO", "%s",
	     k->memory_fault_info > 0 ? "KVM_EXIT_MEMORY_FAULT reported"
				      : "memory faults come back as bare -EFAULT");
	line("kvm", k->user_memory2 > 0 ? PASS : INFO, "Checking KVM_CAP_USER_MEMORY2",
	     "%s", k->user_memory2 > 0 ? "supported" : "not supported");
	if (k->guest_memfd > 0)
		line("kvm", PASS, "Checking KVM_CAP_GUEST_MEMFD", "flags: %s",
		     bit_names(k->guest_memfd_flags, gmem_flag_name, buf, sizeof(buf)));
	else
		line("kvm", INFO, "Checking KVM_CAP_GUEST_MEMFD", "not supported");
	if (k->ram_access_as_mmio >= 0)
		line("kvm", INFO, "Checking how KVM reports RAM it cannot use", "%s",
		     k->ram_access_as_mmio ? "as MMIO exits (KVM emulates guest instructions)"
					   : "as -EFAULT or SIGBUS (hardware virtualization)");
	else
		line("kvm", WARN, "Checking how KVM reports RAM it cannot use",
		     "could not tell: %s", strerror(-k->ram_access_as_mmio));
	if (k->vm_types_err == 0)
		line("kvm", INFO, "Checking KVM_CAP_VM_TYPES", "%s",
		     bit_names(k->vm_types, vmras_kvm_vm_type_name, buf, sizeof(buf)));
	else
		line("kvm", INFO, "Checking KVM_CAP_VM_TYPES", "not supported");
	if (k->arm64) {
		line("kvm", k->arm_inject_ext_dabt > 0 ? PASS : FAIL,
		     "Checking KVM_CAP_ARM_INJECT_EXT_DABT", "%d", k->arm_inject_ext_dabt);
		line("kvm", k->arm_inject_serror_esr > 0 ? PASS : WARN,
		     "Checking KVM_CAP_ARM_INJECT_SERROR_ESR", "%d", k->arm_inject_serror_esr);
		line("kvm", k->arm_sea_to_user > 0 ? PASS : INFO,
		     "Checking KVM_CAP_ARM_SEA_TO_USER", "%d", k->arm_sea_to_user);
	} else {
		line("kvm", INFO, "Checking arm64 SEA/SError injection caps",
		     "not applicable on %s", p->kernel.machine);
	}
}

static void text_uffd(const struct vmras_probe *p)
{
	const struct vmras_probe_uffd *u = &p->uffd;
	char buf[512];

	if (u->unprivileged >= 0)
		line("uffd", INFO, "vm.unprivileged_userfaultfd", "%d", u->unprivileged);
	if (!u->probed) {
		line("uffd", INFO, "Checking userfaultfd", "not probed (--no-devices)");
		return;
	}
	if (u->syscall_err)
		line("uffd", WARN, "Checking userfaultfd(2)", "%s", strerror(-u->syscall_err));
	else
		line("uffd", u->user_mode_only ? WARN : PASS, "Checking userfaultfd(2)",
		     "%s", u->user_mode_only ? "user-mode faults only" : "available");
	if (!u->dev_present)
		line("uffd", INFO, "Checking /dev/userfaultfd", "absent");
	else
		line("uffd", u->dev_err ? WARN : PASS, "Checking /dev/userfaultfd", "%s",
		     u->dev_err ? strerror(-u->dev_err) : "available");
	if (u->syscall_err)
		return;
	if (u->api_err) {
		line("uffd", FAIL, "Checking UFFDIO_API", "%s", strerror(-u->api_err));
		return;
	}
	line("uffd", INFO, "Features offered", "%s",
	     bit_names(u->features, vmras_uffd_feature_name, buf, sizeof(buf)));
}

static void text_hugepages(const struct vmras_probe *p)
{
	const struct vmras_probe_hugepages *hp = &p->hugepages;
	char sz[32], check[64];

	if (hp->nsizes == 0)
		line("hugepage", WARN, "Checking hugetlb page sizes", "none");
	for (unsigned int i = 0; i < hp->nsizes; i++) {
		const struct vmras_probe_hugepage_size *h = &hp->sizes[i];

		snprintf(check, sizeof(check), "Huge pages of %s%s",
			 size_name(h->size, sz, sizeof(sz)),
			 h->size == hp->default_size ? " (default)" : "");
		line("hugepage", INFO, check,
		     "total %" PRIu64 ", free %" PRIu64 ", reserved %" PRIu64
		     ", surplus %" PRIu64, h->total, h->free, h->reserved, h->surplus);
	}
	if (hp->nmounts == 0)
		line("hugepage", INFO, "hugetlbfs mounts", "none (memfd_create(MFD_HUGETLB) still works)");
	for (unsigned int i = 0; i < hp->nmounts; i++)
		line("hugepage", INFO, "hugetlbfs mount", "%s, page size %s",
		     hp->mounts[i].path,
		     size_name(hp->mounts[i].page_size, sz, sizeof(sz)));
	line("hugepage", INFO, "Transparent huge pages", "enabled=%s shmem_enabled=%s",
	     hp->thp_enabled[0] ? hp->thp_enabled : "unknown",
	     hp->thp_shmem_enabled[0] ? hp->thp_shmem_enabled : "unknown");
}

static void text_privileges(const struct vmras_probe *p)
{
	const struct vmras_probe_privileges *pv = &p->privileges;

	if (!pv->known) {
		line("privs", WARN, "Effective capabilities", "unknown");
		return;
	}
	line("privs", BIT_SET(pv->cap_effective, CAP_SYS_ADMIN_BIT) ? PASS : INFO,
	     "CAP_SYS_ADMIN", "%s (MADV_HWPOISON needs it; UFFDIO_POISON does not)",
	     BIT_SET(pv->cap_effective, CAP_SYS_ADMIN_BIT) ? "held" : "not held");
	line("privs", INFO, "CAP_IPC_LOCK", "%s",
	     BIT_SET(pv->cap_effective, CAP_IPC_LOCK_BIT) ? "held" : "not held");
}

static void print_text(const struct vmras_probe *p)
{
	text_kernel(p);
	text_kvm(p);
	text_uffd(p);
	text_hugepages(p);
	text_privileges(p);
	for (int s = 0; s < VMRAS_STRATEGY_COUNT; s++) {
		const struct vmras_verdict *v = &p->verdicts[s];
		enum level lv = v->state == VMRAS_AVAILABLE ? PASS
				: v->state == VMRAS_NOT_APPLICABLE ? INFO : WARN;

		line("strategy", lv, vmras_strategy_title(s), "%s: %s",
		     vmras_verdict_state_name(v->state), v->reason);
	}
	for (unsigned int i = 0; i < p->nproblems; i++)
		line("problem", FAIL, p->problems[i].path, "%s: %s",
		     p->problems[i].detail, strerror(-p->problems[i].err));
	if (p->problems_dropped)
		line("problem", FAIL, "more problems", "%u not listed",
		     p->problems_dropped);
}

/* ---- JSON ---------------------------------------------------------- */

static json_object *jhex(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	return json_object_new_string(buf);
}

static json_object *jnames(uint64_t v, const char *(*name)(unsigned int))
{
	json_object *a = json_object_new_array();
	char buf[16];

	for (unsigned int b = 0; b < 64; b++) {
		const char *s;

		if (!BIT_SET(v, b))
			continue;
		s = name(b);
		if (!s) {
			snprintf(buf, sizeof(buf), "bit%u", b);
			s = buf;
		}
		json_object_array_add(a, json_object_new_string(s));
	}
	return a;
}

/* An int fact that is -errno on failure: the value, or null. */
static json_object *jint_or_null(int v)
{
	return v < 0 ? NULL : json_object_new_int(v);
}

static json_object *jerr(int err)
{
	return err ? json_object_new_string(strerror(-err)) : NULL;
}

#define ADD(o, k, v) json_object_object_add((o), (k), (v))

static json_object *json_kernel(const struct vmras_probe *p)
{
	const struct vmras_probe_kernel *k = &p->kernel;
	json_object *o = json_object_new_object(), *mf = json_object_new_object();

	ADD(o, "release", k->release[0] ? json_object_new_string(k->release) : NULL);
	ADD(o, "machine", json_object_new_string(k->machine));
	ADD(mf, "present", json_object_new_boolean(k->memory_failure));
	ADD(mf, "early_kill", jint_or_null(k->early_kill));
	ADD(mf, "recovery", jint_or_null(k->recovery));
	ADD(o, "memory_failure", mf);
	ADD(o, "mce_kill_policy", k->mce_kill_policy >= 0
			? json_object_new_string(mce_kill_name(k->mce_kill_policy)) : NULL);
	ADD(o, "madv_hwpoison_usable", json_object_new_boolean(
		p->verdicts[VMRAS_STRATEGY_MADV_HWPOISON].state == VMRAS_AVAILABLE));
	ADD(o, "hardware_corrupted_kib", k->hw_corrupted_known
			? json_object_new_int64((int64_t)k->hw_corrupted_kib) : NULL);
	return o;
}

static json_object *json_kvm(const struct vmras_probe *p)
{
	const struct vmras_probe_kvm *k = &p->kvm;
	json_object *o = json_object_new_object(), *mce, *gm, *arm;

	ADD(o, "probed", json_object_new_boolean(k->probed));
	ADD(o, "present", json_object_new_boolean(k->probed && !k->open_err));
	ADD(o, "error", jerr(k->open_err));
	if (!k->probed || k->open_err)
		return o;
	ADD(o, "api_version", json_object_new_int(k->api_version));

	mce = json_object_new_object();
	ADD(mce, "banks", json_object_new_int(k->mce_banks > 0 ? k->mce_banks : 0));
	ADD(mce, "cap_supported", k->mce_cap_err ? NULL : jhex(k->mce_cap_supported));
	ADD(mce, "cap_bits", k->mce_cap_err ? NULL
			: jnames(k->mce_cap_supported & ~MCG_BANKCNT_MASK,
				 vmras_mcg_cap_bit_name));
	ADD(mce, "ctl_p", json_object_new_boolean(!k->mce_cap_err && (k->mce_cap_supported & MCG_CTL_P)));
	ADD(mce, "ser_p", json_object_new_boolean(!k->mce_cap_err && (k->mce_cap_supported & MCG_SER_P)));
	ADD(mce, "lmce_p", json_object_new_boolean(!k->mce_cap_err && (k->mce_cap_supported & MCG_LMCE_P)));
	ADD(mce, "cmci_p", json_object_new_boolean(!k->mce_cap_err && (k->mce_cap_supported & MCG_CMCI_P)));
	ADD(o, "mce", mce);

	ADD(o, "memory_fault_info", json_object_new_boolean(k->memory_fault_info > 0));
	ADD(o, "user_memory2", json_object_new_boolean(k->user_memory2 > 0));
	gm = json_object_new_object();
	ADD(gm, "supported", json_object_new_boolean(k->guest_memfd > 0));
	ADD(gm, "flags", jnames(k->guest_memfd_flags, gmem_flag_name));
	ADD(o, "guest_memfd", gm);
	ADD(o, "vm_types", k->vm_types_err ? NULL : jnames(k->vm_types, vmras_kvm_vm_type_name));
	ADD(o, "ram_access_exits_as_mmio",
	    k->ram_access_as_mmio < 0 ? NULL : json_object_new_boolean(k->ram_access_as_mmio));

	arm = json_object_new_object();
	ADD(arm, "applicable", json_object_new_boolean(k->arm64));
	ADD(arm, "inject_serror_esr", k->arm64 ? json_object_new_boolean(k->arm_inject_serror_esr > 0) : NULL);
	ADD(arm, "inject_ext_dabt", k->arm64 ? json_object_new_boolean(k->arm_inject_ext_dabt > 0) : NULL);
	ADD(arm, "sea_to_user", k->arm64 ? json_object_new_boolean(k->arm_sea_to_user > 0) : NULL);
	ADD(o, "arm64", arm);
	return o;
}

static json_object *json_uffd(const struct vmras_probe *p)
{
	const struct vmras_probe_uffd *u = &p->uffd;
	json_object *o = json_object_new_object(), *sc, *dev;

	ADD(o, "probed", json_object_new_boolean(u->probed));
	ADD(o, "unprivileged_userfaultfd", jint_or_null(u->unprivileged));
	if (!u->probed)
		return o;
	sc = json_object_new_object();
	ADD(sc, "available", json_object_new_boolean(!u->syscall_err));
	ADD(sc, "user_mode_only", json_object_new_boolean(u->user_mode_only));
	ADD(sc, "error", jerr(u->syscall_err));
	ADD(o, "syscall", sc);
	dev = json_object_new_object();
	ADD(dev, "present", json_object_new_boolean(u->dev_present));
	ADD(dev, "available", json_object_new_boolean(!u->dev_err));
	ADD(dev, "error", jerr(u->dev_err));
	ADD(o, "dev", dev);
	ADD(o, "api_error", jerr(u->api_err));
	ADD(o, "features", jnames(u->features, vmras_uffd_feature_name));
	ADD(o, "features_raw", jhex(u->features));
	ADD(o, "ioctls", jnames(u->ioctls, vmras_uffd_ioctl_name));
	return o;
}

static json_object *json_hugepages(const struct vmras_probe *p)
{
	const struct vmras_probe_hugepages *hp = &p->hugepages;
	json_object *o = json_object_new_object(), *sizes, *mounts, *thp;

	ADD(o, "default_size", json_object_new_int64((int64_t)hp->default_size));
	sizes = json_object_new_array();
	for (unsigned int i = 0; i < hp->nsizes; i++) {
		const struct vmras_probe_hugepage_size *h = &hp->sizes[i];
		json_object *s = json_object_new_object();

		ADD(s, "size", json_object_new_int64((int64_t)h->size));
		ADD(s, "total", json_object_new_int64((int64_t)h->total));
		ADD(s, "free", json_object_new_int64((int64_t)h->free));
		ADD(s, "reserved", json_object_new_int64((int64_t)h->reserved));
		ADD(s, "surplus", json_object_new_int64((int64_t)h->surplus));
		json_object_array_add(sizes, s);
	}
	ADD(o, "sizes", sizes);
	mounts = json_object_new_array();
	for (unsigned int i = 0; i < hp->nmounts; i++) {
		json_object *m = json_object_new_object();

		ADD(m, "path", json_object_new_string(hp->mounts[i].path));
		ADD(m, "page_size", json_object_new_int64((int64_t)hp->mounts[i].page_size));
		json_object_array_add(mounts, m);
	}
	ADD(o, "hugetlbfs_mounts", mounts);
	thp = json_object_new_object();
	ADD(thp, "enabled", hp->thp_enabled[0] ? json_object_new_string(hp->thp_enabled) : NULL);
	ADD(thp, "shmem_enabled", hp->thp_shmem_enabled[0]
			? json_object_new_string(hp->thp_shmem_enabled) : NULL);
	ADD(o, "thp", thp);
	return o;
}

static json_object *json_probe(const struct vmras_probe *p, const char *root)
{
	json_object *o = json_object_new_object(), *pv, *st, *pb;

	ADD(o, "vmras_version", json_object_new_string(VMRAS_VERSION));
	ADD(o, "root", json_object_new_string(root));
	ADD(o, "kernel", json_kernel(p));
	ADD(o, "kvm", json_kvm(p));
	ADD(o, "userfaultfd", json_uffd(p));
	ADD(o, "hugepages", json_hugepages(p));

	pv = json_object_new_object();
	ADD(pv, "known", json_object_new_boolean(p->privileges.known));
	if (p->privileges.known) {
		ADD(pv, "cap_effective", jhex(p->privileges.cap_effective));
		ADD(pv, "cap_sys_admin", json_object_new_boolean(
			BIT_SET(p->privileges.cap_effective, CAP_SYS_ADMIN_BIT)));
		ADD(pv, "cap_ipc_lock", json_object_new_boolean(
			BIT_SET(p->privileges.cap_effective, CAP_IPC_LOCK_BIT)));
	}
	ADD(o, "privileges", pv);

	st = json_object_new_object();
	for (int s = 0; s < VMRAS_STRATEGY_COUNT; s++) {
		const struct vmras_verdict *v = &p->verdicts[s];
		json_object *e = json_object_new_object();

		ADD(e, "title", json_object_new_string(vmras_strategy_title(s)));
		ADD(e, "state", json_object_new_string(vmras_verdict_state_name(v->state)));
		ADD(e, "available", json_object_new_boolean(v->state == VMRAS_AVAILABLE));
		ADD(e, "reason", json_object_new_string(v->reason));
		ADD(st, vmras_strategy_name(s), e);
	}
	ADD(o, "strategies", st);

	pb = json_object_new_array();
	for (unsigned int i = 0; i < p->nproblems; i++) {
		json_object *e = json_object_new_object();

		ADD(e, "path", json_object_new_string(p->problems[i].path));
		ADD(e, "detail", json_object_new_string(p->problems[i].detail));
		ADD(e, "error", json_object_new_string(strerror(-p->problems[i].err)));
		json_object_array_add(pb, e);
	}
	ADD(o, "problems", pb);
	ADD(o, "problems_dropped", json_object_new_int((int)p->problems_dropped));
	return o;
}

/* ---- command ------------------------------------------------------- */

static void probe_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s probe [--json] [--root DIR] [--no-devices]\n"
		"  --json        one JSON object (keys: docs/probe.md)\n"
		"  --root DIR    read /proc and /sys under DIR (a recorded tree)\n"
		"  --no-devices  do not open /dev/kvm or userfaultfd\n"
		"Exit status: 0 probing worked (whatever it found); 1 a file could\n"
		"not be read or parsed (listed as problems); 2 usage or setup error.\n",
		prog);
}

int probe_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "root", required_argument, NULL, 'r' },
		{ "no-devices", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vmras_probe_opts opts = { 0 };
	struct vmras_probe p;
	bool json = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jr:nh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'r': opts.root = optarg; break;
		case 'n': opts.flags |= VMRAS_PROBE_NO_DEVICES; break;
		case 'h': probe_usage(stdout); return 0;
		default: probe_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		tool_error("probe", "unexpected argument '%s'", argv[optind]);
		return 2;
	}

	r = vmras_probe_host(&p, &opts);
	if (r) {
		tool_error("probe", "cannot open root '%s': %s",
			   opts.root ? opts.root : "/", strerror(-r));
		return 2;
	}
	if (json) {
		json_object *o = json_probe(&p, opts.root ? opts.root : "/");

		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		print_text(&p);
	}
	if (fflush(stdout)) {
		tool_error("probe", "writing output: %s", strerror(errno));
		return 2;
	}
	if (p.nproblems) {
		tool_error("probe", "%u file(s) could not be read or parsed (see problems)",
			   p.nproblems + p.problems_dropped);
		return 1;
	}
	return 0;
}
