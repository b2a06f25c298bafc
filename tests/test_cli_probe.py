#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""`vmras probe` as an operator runs it: text, --json, --root, errors."""
import json
import os
import re
import subprocess
import sys

import tap

VMRAS = sys.argv[1]
SRC = os.environ.get("VMRAS_SOURCE_ROOT",
                     os.path.join(os.path.dirname(__file__), ".."))
DATA = os.path.join(SRC, "tests", "data", "probe")


TOP_KEYS = ["vmras_version", "root", "kernel", "kvm", "userfaultfd", "hugepages",
            "privileges", "strategies", "problems", "problems_dropped"]


def run(*args):
    return subprocess.run([VMRAS, *args], capture_output=True, text=True,
                          timeout=60)


def flatten(obj, prefix=""):
    """JSON key paths: a.b.c, arrays as a[]."""
    paths = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = prefix + "." + k if prefix else k
            if prefix == "strategies":
                p = "strategies.NAME"
            paths.add(p)
            paths |= flatten(v, p)
    elif isinstance(obj, list):
        for v in obj:
            paths |= flatten(v, prefix + "[]")
    return paths


def test_live_json():
    r = run("probe", "--json")
    tap.eq(r.returncode, 0, "probe --json exits 0 on this host")
    try:
        j = json.loads(r.stdout)
    except ValueError as e:
        tap.ok(False, "probe --json prints valid JSON", e)
        return None
    tap.eq(sorted(k for k in TOP_KEYS if k not in j), [],
           "probe --json: one object with every section")
    tap.ok(isinstance(j["vmras_version"], str) and j["vmras_version"] != "",
           "probe --json: vmras_version named", j["vmras_version"])
    tap.eq(j["root"], "/", "probe --json: the live host's root")
    # Exit 0 means every file that exists was read and parsed.
    tap.eq((j["problems"], j["problems_dropped"]), ([], 0), "probe --json: no problems")

    mf = os.path.exists("/proc/sys/vm/memory_failure_recovery")
    tap.eq(j["kernel"]["memory_failure"]["present"], mf,
           "memory-failure support reported %s, as /proc/sys/vm shows"
           % ("present" if mf else "absent"))
    tap.eq(j["kernel"]["release"], os.uname().release, "kernel release")

    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        kvm = j["kvm"]
        tap.ok(kvm["present"], "KVM present")
        tap.ok(kvm["mce"]["banks"] >= 10, "KVM MCE banks reported (%d)" % kvm["mce"]["banks"])
        tap.ok(kvm["mce"]["ser_p"] and "SER_P" in kvm["mce"]["cap_bits"],
               "SER_P reported")
        tap.eq(kvm["arm64"]["applicable"], os.uname().machine == "aarch64",
               "arm64 caps applicable only on arm64")
        tap.diag("KVM: %d MCE banks, caps %s" % (kvm["mce"]["banks"], kvm["mce"]["cap_bits"]))
    else:
        tap.skip("KVM facts", "/dev/kvm cannot be opened here")

    uffd = j["userfaultfd"]
    tap.ok(uffd["syscall"]["available"] or uffd["dev"]["available"],
           "userfaultfd available")
    tap.ok("POISON" in uffd["features"], "userfaultfd POISON offered")
    tap.eq(j["strategies"]["uffd_poison"]["available"], "POISON" in uffd["features"],
           "uffd_poison verdict follows the feature")

    sizes = {s["size"] for s in j["hugepages"]["sizes"]}
    want = set()
    for d in os.listdir("/sys/kernel/mm/hugepages"):
        want.add(int(d[len("hugepages-"):-2]) * 1024)
    tap.eq(sizes, want, "huge page sizes as in /sys/kernel/mm/hugepages")
    tap.diag("huge page sizes: %s" % sorted(sizes))
    return j


def test_keys_documented(j):
    doc = open(os.path.join(SRC, "docs", "probe.md")).read()
    documented = set(re.findall(r"`([a-z0-9_.\[\]A-Z]+)`", doc))
    missing = sorted(p for p in flatten(j) if p not in documented)
    tap.eq(missing, [], "every JSON key is documented in docs/probe.md")
    names = sorted(j["strategies"].keys())
    tap.eq([n for n in names if "`%s`" % n not in doc], [],
           "every strategy name is documented")


def test_text():
    r = run("probe")
    tap.eq(r.returncode, 0, "probe (text) exits 0")
    lines = r.stdout.splitlines()
    bad = [l for l in lines if not re.search(r": (PASS|WARN|FAIL|INFO)( \(.*\))?$", l)]
    tap.eq(bad, [], "every text line ends in PASS/WARN/FAIL/INFO (why)")
    tap.ok(any("split huge pages to 4K" in l for l in lines),
           "text lists the strategy verdicts")


def test_root_trees():
    r = run("probe", "--json", "--no-devices", "--root", os.path.join(DATA, "mf-host"))
    tap.eq(r.returncode, 0, "--root mf-host exits 0")
    j = json.loads(r.stdout)
    tap.eq(j["kernel"]["memory_failure"],
           {"present": True, "early_kill": 0, "recovery": 1},
           "--root mf-host: memory_failure sysctls")
    tap.eq(j["kernel"]["hardware_corrupted_kib"], 12, "--root mf-host: HardwareCorrupted")
    tap.eq([s["size"] for s in j["hugepages"]["sizes"]], [2 << 20, 1 << 30],
           "--root mf-host: 2 MiB and 1 GiB sizes")
    tap.eq(j["kvm"]["probed"], False, "--no-devices: KVM not probed")

    r = run("probe", "--json", "--no-devices", "--root", os.path.join(DATA, "nomf-host"))
    j = json.loads(r.stdout)
    tap.eq(j["kernel"]["memory_failure"]["present"], False,
           "--root nomf-host: memory failure absent")
    tap.eq(j["kernel"]["hardware_corrupted_kib"], None,
           "--root nomf-host: HardwareCorrupted null")

    r = run("probe", "--json", "--no-devices", "--root", os.path.join(DATA, "malformed"))
    tap.eq(r.returncode, 1, "--root malformed exits 1")
    try:
        j = json.loads(r.stdout)
    except ValueError as e:
        tap.ok(False, "--root malformed still prints valid JSON", e)
        j = None
    if j is not None:
        tap.eq(sorted(k for k in TOP_KEYS if k not in j), [],
               "--root malformed: every section still there")
        got = {p["path"]: (p["detail"], p["error"]) for p in j["problems"]}
        tap.eq(len(j["problems"]), 10, "--root malformed lists 10 problems")
        tap.eq(j["problems_dropped"], 0, "--root malformed: none dropped")
        for path, detail, error in [
            ("/proc/sys/vm/memory_failure_early_kill", "not a decimal integer", "Invalid argument"),
            ("/proc/meminfo", "malformed HardwareCorrupted line", "Invalid argument"),
            ("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
             "not an unsigned decimal integer", "Invalid argument"),
            ("/sys/kernel/mm/hugepages/hugepages-bogus",
             "not a hugepages-<size>kB directory", "Invalid argument"),
            ("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "cannot read", "Is a directory"),
            ("/proc/self/status", "no valid CapEff line", "Invalid argument"),
        ]:
            tap.eq(got.get(path), (detail, error), "--root malformed: %s: %s" % (path, detail))
        # A bad file costs its own value only: its neighbours are still read.
        tap.eq(j["kernel"]["memory_failure"], {"present": True, "early_kill": None, "recovery": 1},
               "--root malformed: bad early_kill is null, recovery still read")
        tap.eq(j["kernel"]["release"], "6.1.0", "--root malformed: kernel release still read")
        tap.eq(j["kernel"]["hardware_corrupted_kib"], None,
               "--root malformed: bad HardwareCorrupted is null")
        tap.eq([s["size"] for s in j["hugepages"]["sizes"]], [2 << 20],
               "--root malformed: the 2 MiB size kept, the bogus directory left out")
    err = r.stderr.strip().splitlines()
    tap.ok(len(err) == 1 and "could not be read or parsed" in err[0],
           "--root malformed: one clear line on stderr", r.stderr)

    r = run("probe", "--root", "/nonexistent/vmras")
    tap.eq(r.returncode, 2, "missing root exits 2")
    tap.ok(r.stderr.strip() == "vmras probe: cannot open root '/nonexistent/vmras': "
           "No such file or directory", "missing root: one line naming what and why",
           r.stderr)


def test_usage():
    r = run("probe", "--bogus")
    tap.eq(r.returncode, 2, "unknown option exits 2")
    r = run("frobnicate")
    tap.eq(r.returncode, 2, "unknown command exits 2")
    tap.ok("unknown command 'frobnicate'" in r.stderr, "unknown command named")
    r = run("--help")
    tap.ok(r.returncode == 0 and "probe" in r.stdout, "--help lists commands")


j = test_live_json()
if j is not None:
    test_keys_documented(j)
test_text()
test_root_trees()
test_usage()
tap.done()
