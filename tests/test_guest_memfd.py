#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""guest_memfd guest RAM end to end (docs/memory-errors.md, "guest_memfd"):
a real KVM guest on guest_memfd memory runs clean, takes an AO and an AR
for one 4 KiB page each, survives a guest that cannot take machine checks,
and after system_reset gets fresh memory for the bad pages. The AR stands
in for the kernel's: KVM_RUN -EHWPOISON with KVM_EXIT_MEMORY_FAULT (source
kvm-memory-fault, flags 0: a shared access), and a page the guest touches
after containment comes back through KVM_RUN for real (ram-mmio here)."""
import json
import os
import sys
import tempfile

import tap
import vmtest
from vmtest import VM, guest_report

vmtest.VMRAS = sys.argv[1]
vmtest.RUN_ARGS = ("--cpu-vendor", "intel")
QUICK = os.environ.get("VMRAS_TEST_QUICK") == "1"
PAGE = 4096
BACKEND = ("--backend", "guest-memfd")


def host_reason():
    """Why this host cannot run guest_memfd RAM, or None."""
    gm = vmtest.probe().get("kvm", {}).get("guest_memfd", {})
    if not gm.get("supported"):
        return "KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD, Linux 6.8)"
    if not {"MMAP", "INIT_SHARED"} <= set(gm.get("flags", [])):
        return "guest_memfd cannot be mapped shared (no MMAP|INIT_SHARED: Linux 6.18)"
    return None


def events(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def test_run():
    """The acceptance run: guest_memfd RAM verified over three passes."""
    mem = "16M" if QUICK else "64M"
    code, s, err = vmtest.run("--vcpus", "2", "--mem", mem, "--passes", "3", *BACKEND)
    tap.ok(code == 0 and s and s["completed"] and s["backend"] == "guest-memfd" and
           s["guest"]["pages-corrupted"] == 0 and s["guest"]["status"] == "passed",
           "run on %s of guest_memfd, 2 vCPUs, 3 passes: passed, 0 corrupted" % mem,
           "exit %s\n%s" % (code, err))


def test_ao_ar():
    log = os.path.join(tempfile.mkdtemp(prefix="vmras-test-"), "events.jsonl")
    ao, ar = 0x600000, 0x1300000
    code, s, err = vmtest.run("--vcpus", "2", "--mem", "32M", "--passes", "3", *BACKEND,
                              "--inject", "ao:%#x" % ao, "--inject", "ar:%#x" % ar,
                              "--event-log", log)
    if not tap.ok(code == 0 and s, "AO + AR: exit 0", "exit %s\n%s" % (code, err)):
        return
    g = s["guest"]
    tap.eq(sorted((r["gpa"], r["size"]) for r in g["retired"]), [(ao, PAGE), (ar, PAGE)],
           "AO + AR: the guest retired exactly the two 4 KiB pages")
    tap.eq(g["pages-corrupted"], 0, "AO + AR: 0 corrupted")
    mces = [m for m in g["machine-check-log"] if m["status"] & (1 << 58)]
    tap.ok(any(m["addr"] == ar and m["vcpu"] == 1 and m["status"] & (1 << 55) for m in mces),
           "AR: vCPU 1 got the SRAR for its page", mces)
    ev = events(log)
    tap.eq([(e["source"], e["kind"], e["gpa"], e["size"], e["private"], e["action"], e["vcpu"])
            for e in ev if e["kind"] == "ar"],
           [("kvm-memory-fault", "ar", ar, PAGE, False, "inject", 1)],
           "AR: one MEMORY_FAILURE from kvm-memory-fault, 4 KiB, shared (private false), "
           "to the guest, vCPU 1 (QEMU: 'kvm run failed', the VM dies)")
    tap.eq([(e["source"], e["gpa"], e["action"], e["contained"]) for e in ev if e["kind"] == "ao"],
           [("sigbus", ao, "inject", True)], "AO: one MEMORY_FAILURE, contained, to the guest")
    tap.eq(s["bytes-lost"], 2 * PAGE, "AO + AR: 8 KiB lost")


def test_touch_after_containment():
    """Poison only (no signal): the guest's own access must fail through KVM_RUN."""
    gpa = 0x1500000  # vCPU 1's slice
    with vmtest.Case("touch") as case:
        vm = case.vm("--vcpus", "2", "--mem", "32M", "--passes", "100000", *BACKEND)
        q = vm.qmp()
        r = q.cmd("inject-memory-error", gpa=gpa, type="ar", signal=False)
        tap.eq(r, {"return": {}}, "touch: the page poisoned, nobody told")
        e = q.wait_event(lambda e: e["event"] == "MEMORY_FAILURE" and
                         e["data"]["gpa"] is not None and
                         e["data"]["gpa"] & ~(PAGE - 1) == gpa and
                         e["data"]["flags"]["action-required"], timeout=120)
        d = e["data"]
        tap.ok(d["source"] in vmtest.guest_access_sources() and d["private"] is False and
               d["recipient"] == "guest" and d["vcpu"] == 1,
               "touch: the guest's access came back through KVM_RUN as an AR of vCPU 1 "
               "(%s, private false)" % d["source"], d)
        q.wait_event(guest_report("retired", gpa=gpa), timeout=120)
        g = q.cmd("query-guest")["return"]
        tap.eq(g["pages-corrupted"], 0, "touch: retired, 0 corrupted")
        q.cmd("quit")
        code, _, err = vm.wait(timeout=60)
        tap.ok(code == 0, "touch: exit 0", "exit %s\n%s" % (code, err))


def test_no_mce():
    """A guest that cannot take a machine check: the policy, no loop."""
    code, s, err = vmtest.run("--vcpus", "2", "--mem", "32M", "--passes", "3", *BACKEND,
                              "--guest-no-mce", "--inject", "ar:0x1300000")
    tap.ok(code == 0 and s and s["guest"]["boot-count"] == 2 and s["completed"] and
           s["guest"]["pages-corrupted"] == 0,
           "no CR4.MCE: reset by the undeliverable policy, the guest ran again clean",
           "exit %s\n%s" % (code, err))


def all_gmem(pid, base, size):
    """Every mapping of [base, base + size) is the guest_memfd's."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo < base + size and hi > base and "kvm-gmem" not in line:
                return False
    return True


def test_reset():
    """system_reset: the bad folios are punched and the guest verifies all again."""
    errors = [(0x600000, "ao", None), (0x1300000, "ar", 1)]
    with vmtest.Case("reset") as case:
        vm = case.vm("--vcpus", "2", "--mem", "32M", "--passes", "100000", *BACKEND)
        q = vm.qmp()
        vmtest.poison(q, errors)
        tap.eq(vmtest.bad_pages(q), sorted((g, PAGE) for g, _, _ in errors),
               "reset: two pages bad before")
        e0 = q.cmd("query-memory-errors")["return"]["errors"][0]
        base = e0["hva"] - e0["gpa"]
        tap.ok(not all_gmem(vm.proc.pid, base, 32 << 20),
               "reset: before it, anonymous stand-ins cover the bad pages")
        q.cmd("system_reset")
        q.wait_event(lambda e: e["event"] == "RESET")
        tap.eq(vmtest.bad_pages(q), [], "reset: none bad after")
        data = [q.cmd("x-read-guest-memory", gpa=g, size=8).get("return", {}).get("data")
                for g, _, _ in errors]
        tap.ok(all(d is not None for d in data), "reset: both pages readable again", data)
        for _ in range(2):
            q.wait_event(guest_report("pass-done", vcpu=0), timeout=120)
            q.wait_event(guest_report("pass-done", vcpu=1), timeout=120)
        g = q.cmd("query-guest")["return"]
        tap.ok(g["boot-count"] == 2 and g["pages-corrupted"] == 0 and
               all(v["skipped"] == 0 and v["verified"] == v["pages"] * v["passes"]
                   for v in g["vcpus"]),
               "reset: the rebooted guest verified every page, the two included, 0 corrupted",
               g["vcpus"])
        tap.ok(all_gmem(vm.proc.pid, base, 32 << 20),
               "reset: all guest RAM is mapped from the guest_memfd again")
        q.cmd("quit")
        code, _, err = vm.wait(timeout=60)
        tap.ok(code == 0, "reset: exit 0", "exit %s\n%s" % (code, err))


def test_migration_refused():
    with vmtest.Case("migrate") as case:
        vm = case.vm("--vcpus", "1", "--mem", "8M", "--passes", "100000", *BACKEND)
        q = vm.qmp()
        r = q.cmd("migrate", uri="file:" + os.path.join(vm.dir, "snap"))
        tap.ok("error" in r and "guest_memfd" in r["error"]["desc"],
               "migrate: refused, saying why (no dirty log for guest_memfd)", r)
        tap.eq(q.cmd("query-status")["return"]["status"], "running", "migrate: the VM runs on")
        q.cmd("quit")
        vm.wait(timeout=60)


def test_private():
    types = vmtest.probe().get("kvm", {}).get("vm_types", [])
    if "SW_PROTECTED_VM" not in types:
        tap.skip("private guest_memfd RAM (KVM_X86_SW_PROTECTED_VM)",
                 "this host does not offer the VM type (KVM_CAP_VM_TYPES: %s)" %
                 (",".join(types) or "none"))
    else:
        tap.skip("private guest_memfd RAM (KVM_X86_SW_PROTECTED_VM)",
                 "the reference VMM does not create that VM type yet")


why = host_reason()
if why:
    tap.skip("guest_memfd RAM", why)
else:
    for t in (test_run, test_ao_ar, test_touch_after_containment, test_no_mce, test_reset,
              test_migration_refused, test_private):
        tap.run(t)
tap.done()
