#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The whole end-to-end suite with less privilege: every test program meson
runs (the C tests with real vCPUs, the VMM's, `vmras`'s), run again
  (1) as root without CAP_SYS_ADMIN, and
  (2) as an ordinary user (nobody) who may open /dev/kvm and
      /dev/userfaultfd and nothing else of root's, with
      vm.unprivileged_userfaultfd as the host has it (0 here),
each after `vmras probe` says what it expects there. Prints, per mode and
program, what passed, what failed (with the TAP diagnostics) and every
skip with its reason; the verdicts before them say what the probe
predicted. Run as root from scripts/least-privilege.

    tests/least_privilege.py BUILDDIR [--mode no-sys-admin|nobody] [NAME...]
                                            (NAME: core, vmm_control, ...)

Exit 0 when nothing failed in either mode."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from test_privileges import NO_SYS_ADMIN, NOBODY, others_may_open

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"   # root's python may live where nobody cannot reach
# What needs root by its nature, left out here (it says so and skips anyway):
# privileges (it drops them itself), symbols (no guest, no privilege),
# linux_mce (QEMU's own guest).
LEFT_OUT = ("privileges", "symbols", "linux_mce")


def programs(builddir):
    """(name, argv) of every test meson runs, from its own list."""
    p = subprocess.run(["meson", "introspect", "--tests", builddir], capture_output=True,
                       text=True, check=True)
    out = []
    for t in json.loads(p.stdout):
        if t["name"] in LEFT_OUT or t["protocol"] != "tap":
            continue
        cmd = list(t["cmd"])
        if os.path.basename(cmd[0]).startswith("python"):
            cmd[0] = PY
        out.append((t["name"], cmd, dict(t.get("env") or {})))
    return out


def verdicts(prefix, vmras):
    p = subprocess.run(prefix + [vmras, "probe", "--json"], capture_output=True, text=True,
                       timeout=120)
    try:
        pr = json.loads(p.stdout)
    except ValueError:
        return ["vmras probe failed: " + p.stderr.strip()[-200:]]
    return ["%s: %s (%s)" % (k, v["state"], v["reason"]) for k, v in pr["strategies"].items()]


def run_one(prefix, cmd, env, cwd):
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": cwd, "TMPDIR": cwd, **env}
    start = time.time()
    try:
        p = subprocess.run(prefix + cmd, capture_output=True, text=True, timeout=2400,
                           cwd=cwd, env=e)
        out, code = p.stdout, p.returncode
        err = p.stderr
    except subprocess.TimeoutExpired as x:
        out, code, err = (x.stdout or b"").decode(errors="replace"), "timeout", ""
    lines = out.splitlines()
    passed = [l for l in lines if re.match(r"ok \d+", l) and "# SKIP" not in l]
    skipped = [l.split("# SKIP", 1)[1].strip() for l in lines if "# SKIP" in l]
    failed = []
    for i, l in enumerate(lines):
        if l.startswith("not ok"):
            d = [x for x in lines[i + 1:i + 6] if x.startswith("#")]
            failed.append(l + ("\n      " + "\n      ".join(d) if d else ""))
    if code not in (0, "timeout") and not failed:
        failed.append("exit %s: %s" % (code, err.strip()[-300:]))
    if code == "timeout":
        failed.append("timed out")
    return len(passed), failed, skipped, time.time() - start


def main():
    if os.geteuid() != 0:
        print("least_privilege: run as root (it drops privileges itself)", file=sys.stderr)
        return 2
    builddir = os.path.abspath(sys.argv[1])
    args = sys.argv[2:]
    mode = None
    if args[:1] == ["--mode"] and len(args) > 1:
        mode, args = args[1], args[2:]
    only = set(args)
    vmras = os.path.join(builddir, "tools", "vmras", "vmras")
    progs = [p for p in programs(builddir) if not only or p[0] in only]
    modes = [("no CAP_SYS_ADMIN", NO_SYS_ADMIN, (), "no-sys-admin"),
             ("nobody with /dev/kvm and /dev/userfaultfd", NOBODY,
              ("/dev/kvm", "/dev/userfaultfd"), "nobody")]
    modes = [m[:3] for m in modes if mode in (None, m[3])]
    if not modes:
        print("least_privilege: --mode no-sys-admin or nobody", file=sys.stderr)
        return 2
    with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
        print("vm.unprivileged_userfaultfd = %s" % f.read().strip())
    bad = 0
    for name, prefix, devices in modes:
        cwd = tempfile.mkdtemp(prefix="vmras-lp-")
        os.chmod(cwd, 0o777)
        with others_may_open(*[d for d in devices if os.path.exists(d)]):
            print("== %s: the probe's verdicts" % name)
            for v in verdicts(prefix, vmras):
                print("   " + v)
            for test, cmd, env in progs:
                n, failed, skipped, took = run_one(prefix, cmd, env, cwd)
                bad += len(failed)
                print("%s: %s: %d passed, %d failed, %d skipped (%.0f s)"
                      % (name, test, n, len(failed), len(skipped), took), flush=True)
                for f in failed:
                    print("   FAILED " + f)
                for s in sorted(set(skipped)):
                    print("   skipped (%dx): %s" % (skipped.count(s), s))
        shutil.rmtree(cwd, ignore_errors=True)
    print("least privilege: %d failures" % bad)
    return 1 if bad else 0


sys.exit(main())
