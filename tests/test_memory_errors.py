#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Memory errors end to end: a real KVM guest gets the right machine check,
retires only the bad page, and verifies that nothing else changed."""
import json
import os
import select
import sys
import tempfile

import tap
import vmtest
from vmtest import VM, guest_report

vmtest.VMRAS = sys.argv[1]
QUICK = os.environ.get("VMRAS_TEST_QUICK") == "1"
# The values asserted here are Intel's (SRAO 0xC0, SRAR 0x134 with AR);
# test_vendor.py covers AMD's. This host's own CPU may be either.
vmtest.RUN_ARGS = ("--cpu-vendor", "intel")
BASE = ("--vcpus", "2", "--mem", "32M", "--passes", "3")
MCI_AR = 1 << 55
PAGE = 4096
DATA_START = vmtest.layout("GL_DATA_START")  # first page the guest verifies


def event_log():
    return os.path.join(tempfile.mkdtemp(prefix="vmras-test-"), "events.jsonl")


def read_events(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def real_mces(g):
    """Machine checks that name an address (not broadcast bystanders)."""
    return [m for m in g["machine-check-log"] if m["status"] & (1 << 58)]


def check_retired_only(g, page, name):
    tap.eq([(r["gpa"], r["size"]) for r in g["retired"]], [(page, PAGE)],
           name + ": the guest retired exactly that 4 KiB page")
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted pages")
    # Every other page was verified in every pass.
    for v in g["vcpus"]:
        tap.eq(v["verified"] + v["skipped"], v["pages"] * v["passes"],
               name + ": vCPU %d verified every page it did not retire" % v["vcpu"])


def test_ao():
    log = event_log()
    gpa = 0x600123  # inside vCPU 0's slice; the kernel reports the exact address
    page = gpa & ~(PAGE - 1)
    code, s, err = vmtest.run(*BASE, "--inject", "ao:%#x" % gpa, "--event-log", log)
    if not tap.ok(code == 0 and s, "AO: exit 0", "exit %s\n%s" % (code, err)):
        return
    g = s["guest"]
    mces = real_mces(g)
    tap.eq(len(mces), 1, "AO: the guest got one machine check")
    if mces:
        m = mces[0]
        tap.eq(m["addr"], page, "AO: MCi_ADDR is the page")
        tap.eq(m["misc"] & 0x3f, 12, "AO: MCi_MISC LSB 12")
        tap.eq(m["status"] & MCI_AR, 0, "AO: SRAO (AR clear)")
        tap.eq(m["status"] & 0xffff, 0xc0, "AO: MCA code 0xC0")
        tap.eq(m["mcg-status"], 0x5, "AO: MCG_STATUS RIPV|MCIP")
    check_retired_only(g, page, "AO")
    ev = read_events(log)
    tap.eq([(e["recipient"], e["action"], e["flags"]["action-required"], e["gpa"], e["size"])
            for e in ev], [("guest", "inject", False, gpa, PAGE)],
           "AO: one MEMORY_FAILURE: recipient guest, action inject, not action-required, gpa, size")
    tap.eq(s["bytes-lost"], PAGE, "AO: 4096 bytes of guest memory lost")


def test_ar():
    log = event_log()
    gpa = 0x1300000  # inside vCPU 1's slice
    code, s, err = vmtest.run(*BASE, "--inject", "ar:%#x" % gpa, "--event-log", log)
    if not tap.ok(code == 0 and s, "AR: exit 0", "exit %s\n%s" % (code, err)):
        return
    g = s["guest"]
    mces = real_mces(g)
    tap.ok(len(mces) == 1 and mces[0]["vcpu"] == 1,
           "AR: the vCPU that touches the page (1) got the machine check", mces)
    if mces:
        m = mces[0]
        tap.eq((m["addr"], m["misc"] & 0x3f), (gpa, 12), "AR: MCi_ADDR the page, LSB 12")
        tap.ok(m["status"] & MCI_AR and m["status"] & 0xffff == 0x134,
               "AR: SRAR (AR set, MCA code 0x134)")
        tap.eq(m["mcg-status"], 0x7, "AR: MCG_STATUS RIPV|EIPV|MCIP")
    check_retired_only(g, gpa, "AR")
    ev = read_events(log)
    tap.eq([(e["recipient"], e["action"], e["flags"]["action-required"], e["vcpu"])
            for e in ev], [("guest", "inject", True, 1)],
           "AR: one MEMORY_FAILURE, action-required, vCPU 1")


def test_other_backings():
    """Containment on shared memory (hole punched) and on a file (replaced)."""
    ramfile = os.path.join(tempfile.mkdtemp(prefix="vmras-test-"), "ram")
    for backend, kind, gpa in [("shmem", "ar", 0x1300000), ("file:" + ramfile, "ao", 0x600000)]:
        name = backend.split(":")[0] + " " + kind.upper()
        code, s, err = vmtest.run(*BASE, "--backend", backend, "--inject", "%s:%#x" % (kind, gpa))
        if not tap.ok(code == 0 and s, name + ": exit 0", "exit %s\n%s" % (code, err)):
            continue
        check_retired_only(s["guest"], gpa, name)
        tap.eq(s["bytes-lost"], PAGE, name + ": 4096 bytes lost")
    if os.path.exists(ramfile):
        os.unlink(ramfile)


HUGE = 2 << 20
# Huge pages a 64 MiB hugetlb-2m guest needs, and one for the fresh huge
# page that replaces a split one at reset.
HUGE_64M = 64 // 2 + 1


with_hugepages = vmtest.with_hugepages


def test_hugetlb_split():
    """An error inside a 2 MiB huge page costs 4 KiB: the guest is told about
    that page only and verifies the 511 others in every later pass."""
    for kind, gpa in [("ao", 0x603000), ("ar", 0x1302000)]:
        name = "hugetlb-2m %s" % kind.upper()
        code, s, err = vmtest.run("--vcpus", "2", "--mem", "64M", "--passes", "3",
                                  "--backend", "hugetlb-2m", "--inject", "%s:%#x" % (kind, gpa))
        if not tap.ok(code == 0 and s, name + ": exit 0", "exit %s\n%s" % (code, err)):
            continue
        g = s["guest"]
        mces = real_mces(g)
        tap.ok(len(mces) == 1 and mces[0]["addr"] == gpa and mces[0]["misc"] & 0x3f == 12,
               name + ": one machine check naming the 4 KiB page (LSB 12)", mces)
        check_retired_only(g, gpa, name)
        tap.eq(s["bytes-lost"], PAGE, name + ": 4096 bytes of guest memory lost")
        c = s["memory-errors"]["counters"]
        tap.ok(c["huge-pages-split"] == 1 and c["subpages-salvaged"] == 511,
               name + ": one huge page split, 511 subpages salvaged (pause %.1f us)"
               % (c["split-pause-max-ns"] / 1e3), c)


def test_hugetlb_1g():
    """1 GiB pages: 4 KiB lost. The guest samples (the bad page's neighbours and
    the huge page's first and last subpages always); the VMM checks every
    page from the host side."""
    gpa = 0x50003000  # in the second 1 GiB page: data only
    code, s, err = vmtest.run("--vcpus", "2", "--mem", "2G", "--backend", "hugetlb-1g",
                              "--passes", "2", "--sample", "4096", "--inject", "ao:%#x" % gpa)
    if not tap.ok(code == 0 and s, "hugetlb-1g AO: exit 0", "exit %s\n%s" % (code, err)):
        return
    g = s["guest"]
    mces = real_mces(g)
    tap.ok(len(mces) == 1 and mces[0]["addr"] == gpa and mces[0]["misc"] & 0x3f == 12,
           "hugetlb-1g AO: one machine check naming the 4 KiB page (LSB 12)", mces)
    tap.eq([(r["gpa"], r["size"]) for r in g["retired"]], [(gpa, PAGE)],
           "hugetlb-1g AO: the guest retired only that page")
    tap.eq(g["pages-corrupted"], 0, "hugetlb-1g AO: the guest's sample: 0 corrupted")
    hc = s["host-check"]
    tap.ok(hc["corrupted"] == 0 and hc["unreadable"] == 0 and
           hc["pages"] == ((2 << 30) - DATA_START) // PAGE - 1,
           "hugetlb-1g AO: host side, every other data page intact (%d pages)" % hc["pages"], hc)
    tap.eq(s["bytes-lost"], PAGE, "hugetlb-1g AO: 4096 bytes lost, not 1 GiB")
    c = s["memory-errors"]["counters"]
    tap.diag("1 GiB split: vCPU pause %.1f us, %d subpages salvaged"
             % (c["split-pause-max-ns"] / 1e3, c["subpages-salvaged"]))


def test_hugetlb_many():
    """Two errors in one huge page and errors in two, AO and AR mixed, the
    later ones arriving while the first split is still filling."""
    same = [0x600000 + 5 * PAGE, 0x600000 + 300 * PAGE]
    other = 0x1300000 + 7 * PAGE
    vm = VM("--vcpus", "2", "--mem", "64M", "--backend", "hugetlb-2m", "--passes", "100000",
            "--paused")
    try:
        q = vm.qmp()
        q.cmd("cont")
        q.wait_event(guest_report("pass-done", vcpu=1))
        r = [q.cmd("inject-memory-error", gpa=same[0], type="ao"),
             q.cmd("inject-memory-error", gpa=same[1], type="ar", vcpu=0),
             q.cmd("inject-memory-error", gpa=other, type="ar", vcpu=1)]
        tap.ok(all("return" in x for x in r), "three errors injected back to back", r)
        got = set()
        for _ in range(3):
            got.add(q.wait_event(guest_report("retired"), timeout=120)["data"]["gpa"])
        tap.eq(got, set(same + [other]), "the guest retired exactly the three 4 KiB pages")
        for _ in range(2):
            q.wait_event(guest_report("pass-done", vcpu=0))
            q.wait_event(guest_report("pass-done", vcpu=1))
        g = q.cmd("query-guest")["return"]
        me = q.cmd("query-memory-errors")["return"]
        tap.eq(g["pages-corrupted"], 0, "0 corrupted in the passes after")
        tap.eq(sorted((e["gpa"], e["size"]) for e in me["errors"]),
               sorted((a, PAGE) for a in same + [other]), "4 KiB lost per bad page")
        tap.eq(me["counters"]["huge-pages-split"], 2, "two huge pages split")
        remaps = [e["data"] for e in q.events if e["event"] == "VMRAS_MEMORY_REMAPPED"]
        tap.eq(sorted((r["gpa"], r["size"]) for r in remaps), [(0x600000, HUGE), (0x1200000, HUGE)],
               "the VMM was told of both remaps (for processes sharing guest memory)")

        # Reset: the split ranges go back to fresh huge pages.
        q.cmd("system_reset")
        q.wait_event(lambda e: e["event"] == "RESET")
        tap.eq(q.cmd("query-memory-errors")["return"]["total"], 0, "reset: nothing poisoned")
        back = q.wait_event(lambda e: e["event"] == "VMRAS_MEMORY_REMAPPED")
        tap.ok(back["data"]["size"] == HUGE, "reset: remapped back to huge pages", back)
        for _ in range(2):
            q.wait_event(guest_report("pass-done", vcpu=0))
            q.wait_event(guest_report("pass-done", vcpu=1))
        g = q.cmd("query-guest")["return"]
        tap.ok(g["pages-corrupted"] == 0 and all(v["skipped"] == 0 and
                                                 v["verified"] == v["pages"] * v["passes"]
                                                 for v in g["vcpus"]),
               "reset: the guest verifies all its memory again", g["vcpus"])
        q.cmd("quit")
        code, s, err = vm.wait(timeout=120)
        tap.ok(code == 0, "exit 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


def test_natural_ar_and_reset():
    """Poison only; the guest's own read is the AR (an MMIO exit here)."""
    vm = VM("--vcpus", "2", "--mem", "16M", "--passes", "100000", "--paused")
    try:
        q = vm.qmp()
        q.cmd("cont")
        st = q.wait_event(guest_report("started", vcpu=1))
        page = st["data"]["slice-start"] + 10 * PAGE
        q.wait_event(guest_report("pass-done", vcpu=1))
        tap.eq(q.cmd("inject-memory-error", gpa=page, type="ar", signal=False),
               {"return": {}}, "natural AR: page poisoned")
        ev = q.wait_event(lambda e: e["event"] == "MEMORY_FAILURE")["data"]
        # How KVM gives the touch back depends on the host (HOST.md).
        sources = vmtest.guest_access_sources()
        tap.ok(ev["source"] in sources, "natural AR: the touch came back as %s (expected %s here)"
               % (ev["source"], " or ".join(sources)))
        tap.eq((ev["recipient"], ev["action"], ev["flags"]["action-required"],
                ev["vcpu"], ev["gpa"] & ~(PAGE - 1)),
               ("guest", "inject", True, 1, page),
               "natural AR: the guest's own read became an SRAR for vCPU 1")
        r = q.wait_event(guest_report("retired", vcpu=1))
        tap.eq(r["data"]["gpa"], page, "natural AR: the guest retired the page")
        q.wait_event(guest_report("pass-done", vcpu=1))
        q.wait_event(guest_report("pass-done", vcpu=1))
        g = q.cmd("query-guest")["return"]
        tap.eq(g["pages-corrupted"], 0, "natural AR: 0 corrupted, passes later")
        r = q.cmd("x-read-guest-memory", gpa=page + 8, size=8)
        tap.ok("hardware error" in r.get("error", {}).get("desc", ""),
               "the VMM reading the page gets -EHWPOISON through the safe copy", r)
        tap.eq(q.cmd("query-status")["return"]["status"], "running",
               "and the VMM keeps running")
        me = q.cmd("query-memory-errors")["return"]
        tap.ok(me["total"] == 1 and me["errors"][0]["contained"] and
               me["errors"][0]["guest-notified"], "query-memory-errors: contained, notified")

        # A reset gives the guest all of its memory back.
        q.cmd("system_reset")
        q.wait_event(lambda e: e["event"] == "RESET")
        tap.eq(q.cmd("query-memory-errors")["return"]["total"], 0,
               "reset: no poisoned range left")
        tap.eq(q.cmd("x-read-guest-memory", gpa=page, size=8).get("return", {}).get("data") is not None,
               True, "reset: the page is readable again")
        for _ in range(2):
            q.wait_event(guest_report("pass-done", vcpu=1))
        g = q.cmd("query-guest")["return"]
        v1 = g["vcpus"][1]
        tap.ok(g["boot-count"] == 2 and v1["skipped"] == 0 and g["pages-corrupted"] == 0 and
               v1["verified"] == v1["pages"] * v1["passes"],
               "reset: the rebooted guest verifies every page, the old bad one too", v1)
        q.cmd("quit")
        code, s, err = vm.wait(timeout=60)
        tap.ok(code == 0, "natural AR: exit 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


def test_burst():
    """50 AO errors at once: 50 machine checks, one after another."""
    vm = VM("--vcpus", "2", "--mem", "16M", "--passes", "100000", "--paused")
    try:
        q = vm.qmp()
        q.cmd("cont")
        q.wait_event(guest_report("pass-done", vcpu=0))
        # All in vCPU 0's slice: AOs go to vCPU 0, which cannot touch a page
        # while it handles the machine check naming it. (A page another vCPU
        # touches between delivery and handling gets an SRAR too, as on
        # hardware; that is tested by the AR cases.)
        pages = [0x400000 + i * 9 * PAGE for i in range(50)]
        bad = [p for p in pages
               if "return" not in q.cmd("inject-memory-error", gpa=p, type="ao")]
        tap.eq(bad, [], "burst: 50 AO errors injected")
        got = set()
        for _ in range(50):
            e = q.wait_event(guest_report("retired"), timeout=120)
            got.add(e["data"]["gpa"])
        tap.eq(got, set(pages), "burst: the guest retired all 50 pages")
        g = q.cmd("query-guest")["return"]
        mces = real_mces(g)
        # One machine check per page; a second (SRAR) when the guest was
        # reading the very page as its SRAO arrived, as on hardware.
        tap.ok(sorted(set(m["addr"] for m in mces)) == sorted(pages) and
               len(mces) >= 50 and
               len(mces) - len(set(m["addr"] for m in mces)) <= 3,
               "burst: every one of the 50 pages named by a machine check (%d in all)"
               % len(mces), sorted(m["addr"] for m in mces))
        me = q.cmd("query-memory-errors")["return"]
        c = me["counters"]
        tap.ok(c["mce-delivered"] >= 50 and c["dropped"] == 0 and c["mce-undeliverable"] == 0,
               "burst: all delivered, none dropped or undeliverable (%d deferred while "
               "the guest was busy)" % c["mce-deferred"], c)
        q.wait_event(guest_report("pass-done", vcpu=0))
        q.wait_event(guest_report("pass-done", vcpu=0))
        tap.eq(q.cmd("query-guest")["return"]["pages-corrupted"], 0, "burst: 0 corrupted")
        q.cmd("quit")
        code, s, err = vm.wait(timeout=60)
        tap.ok(code == 0, "burst: exit 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


def test_undeliverable():
    """The guest left CR4.MCE clear: KVM would triple-fault it. Policy decides."""
    log = event_log()
    code, s, err = vmtest.run(*BASE, "--guest-no-mce", "--inject", "ar:0x1300000",
                              "--event-log", log)
    ev = read_events(log)
    tap.ok(any(e["action"] == "reset" and "CR4.MCE" in e["detail"] for e in ev),
           "no CR4.MCE + AR: MEMORY_FAILURE action reset, saying why", ev)
    tap.ok(code == 0 and s and s["guest"]["boot-count"] == 2 and s["completed"] and
           s["guest"]["pages-corrupted"] == 0,
           "default policy reset: the guest ran again and finished clean",
           "exit %s\n%s" % (code, err))

    code, s, err = vmtest.run(*BASE, "--guest-no-mce", "--inject", "ar:0x1300000",
                              "--policy", "undeliverable=fatal")
    lines = [l for l in err.splitlines() if "policy fatal" in l]
    tap.ok(code == 1 and len(lines) == 1 and "CR4.MCE" in lines[0],
           "policy fatal: stops with one clear line, exit 1", "exit %s\n%s" % (code, err))
    tap.ok(s and s["reason"].startswith("fatal memory error"), "policy fatal: summary says why")


def test_bad_input():
    vm = VM("--vcpus", "2", "--mem", "8M", "--passes", "100000")
    try:
        q = vm.qmp()
        for args, why in [
            ({"gpa": 1 << 40, "type": "ao"}, "GPA outside RAM"),
            ({"gpa": 0x500000, "type": "xx"}, "unknown type"),
            ({"gpa": 0x500000, "type": "ao", "size": 1 << 21}, "size not the page size"),
            ({"gpa": 0x500000, "type": "ar", "vcpu": 9}, "no such vCPU"),
            ({"gpa": 0x500000, "type": "ao", "signal": "yes"}, "signal not a boolean"),
            ({"type": "ao"}, "missing gpa"),
        ]:
            r = q.cmd("inject-memory-error", **args)
            tap.eq(r.get("error", {}).get("class"), "GenericError", "inject, %s: error" % why)
        tap.eq(q.cmd("query-memory-errors")["return"]["total"], 0, "bad input changed nothing")
        tap.eq(q.cmd("query-status")["return"]["status"], "running", "and the VM runs on")
        q.cmd("quit")
        code, s, err = vm.wait(timeout=60)
        tap.ok(code == 0, "bad input: exit 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


def test_kvm_raises_sigbus():
    """On a host with hardware virtualization and CONFIG_MEMORY_FAILURE, KVM
    itself raises BUS_MCEERR_AR (or a memory-fault exit) for the vCPU."""
    if not os.path.exists("/proc/sys/vm/memory_failure_recovery"):
        tap.skip("KVM raises the AR itself",
                 "kernel without CONFIG_MEMORY_FAILURE: KVM never sends BUS_MCEERR_AR here, "
                 "and guest code runs in KVM's instruction emulator, so a guest touching a "
                 "poisoned page arrives as an MMIO exit (tested by the natural-AR case)")
        return
    vm = VM("--vcpus", "2", "--mem", "16M", "--passes", "100000")
    try:
        q = vm.qmp()
        st = q.wait_event(guest_report("started", vcpu=1))
        page = st["data"]["slice-start"] + 3 * PAGE
        q.cmd("inject-memory-error", gpa=page, type="ar", signal=False)
        ev = q.wait_event(lambda e: e["event"] == "MEMORY_FAILURE")["data"]
        sources = vmtest.guest_access_sources()
        tap.ok(ev["source"] in sources, "the guest's touch came back as %s (expected %s here)"
               % (ev["source"], " or ".join(sources)))
        q.cmd("quit")
        code, s, err = vm.wait(timeout=60)
        tap.ok(code == 0, "KVM raises the AR: exit 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


def test_cli():
    """vmras inject and vmras events against a running VM."""
    import subprocess
    vm = VM("--vcpus", "2", "--mem", "16M", "--passes", "100000")
    try:
        q = vm.qmp()
        q.wait_event(guest_report("pass-done", vcpu=0))
        ev = subprocess.Popen([vmtest.VMRAS, "events", "--control", vm.sock, "--json",
                               "--timeout", "20"], stdout=subprocess.PIPE, text=True)
        # Its first event (a guest report, one per pass) says it is connected:
        # an error injected before that would not reach it.
        ready, _, _ = select.select([ev.stdout], [], [], 60)
        first = ev.stdout.readline() if ready else ""
        tap.ok(first.strip() != "", "vmras events connected and streaming")
        r = subprocess.run([vmtest.VMRAS, "inject", "--control", vm.sock, "--gpa", "0x500000",
                            "--type", "ao"], capture_output=True, text=True, timeout=60)
        tap.ok(r.returncode == 0 and "MEMORY_FAILURE action-optional at GPA 0x500000" in r.stdout
               and "guest -> inject" in r.stdout, "vmras inject prints what happened", r)
        r = subprocess.run([vmtest.VMRAS, "inject", "--control", vm.sock, "--gpa", "0x90000000",
                            "--type", "ao"], capture_output=True, text=True, timeout=60)
        tap.ok(r.returncode == 1 and r.stderr.count("\n") == 1 and "outside guest RAM" in r.stderr,
               "vmras inject outside RAM: one line, exit 1", r)
        r = subprocess.run([vmtest.VMRAS, "inject", "--control", vm.sock + ".nope", "--gpa", "1",
                            "--type", "ao"], capture_output=True, text=True, timeout=60)
        tap.ok(r.returncode == 1 and "connect" in r.stderr, "vmras inject, no socket: says so", r)
        q.wait_event(guest_report("retired"))
        q.cmd("quit")
        out, _ = ev.communicate(timeout=60)
        names = [json.loads(l)["event"] for l in (first + out).splitlines() if l.strip()]
        tap.ok("MEMORY_FAILURE" in names and "SHUTDOWN" in names,
               "vmras events --json streamed the events", names[-5:])
        tap.eq(ev.returncode, 0, "vmras events: exit 0 when the VM shut down")
        code, s, err = vm.wait(timeout=60)
        tap.ok(code == 0, "vmras inject and events: the VM exits 0", "exit %s\n%s" % (code, err))
    finally:
        vm.kill()


tap.run(test_ao)
tap.run(test_ar)
tap.run(test_other_backings)
tap.run(with_hugepages(2048, HUGE_64M, "hugetlb-2m split", test_hugetlb_split))
tap.run(with_hugepages(2048, HUGE_64M, "hugetlb-2m several errors", test_hugetlb_many))
# Under the sanitizers (VMRAS_TEST_QUICK) the 2 GiB guest's split, the same
# split code as hugetlb-2m's on 512 times the memory, runs in the plain build
# only: CI must end within 30 minutes.
if QUICK:
    tap.skip("hugetlb-1g split", "VMRAS_TEST_QUICK: the plain build runs it")
else:
    tap.run(with_hugepages(1048576, 2, "hugetlb-1g split", test_hugetlb_1g))
tap.run(test_natural_ar_and_reset)
tap.run(test_burst)
tap.run(test_undeliverable)
tap.run(test_bad_input)
tap.run(test_cli)
tap.run(test_kvm_raises_sigbus)
tap.done()
