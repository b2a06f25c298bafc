#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Least privilege: the library's own tests and a guest with a memory error
in a huge page, run (1) as root without CAP_SYS_ADMIN and (2) as an
ordinary user who may only open /dev/kvm (and /dev/userfaultfd, or not),
with vm.unprivileged_userfaultfd left as it is. What worked must be what
`vmras probe` predicted: splitting a huge page needs a userfaultfd that
serves KVM's faults; without one the huge page is lost whole, and the
record says why."""
import contextlib
import json
import os
import stat
import subprocess
import sys

import tap
import vmtest

if __name__ == "__main__":
    vmtest.VMRAS = sys.argv[1]
LIB_TESTS = sys.argv[2:]  # the library's C tests (TAP programs)
HUGE = 2 << 20
GPA = 0x1a45000  # inside the guest's data, in a huge page of a 32 MiB guest

NO_SYS_ADMIN = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=-all", "--bounding-set=-all", "--"]


@contextlib.contextmanager
def others_may_open(*paths):
    """o+rw on device nodes for the block's duration; their modes restored."""
    saved = {p: os.stat(p).st_mode for p in paths}
    try:
        for p in paths:
            os.chmod(p, stat.S_IMODE(saved[p]) | 0o006)
        yield
    finally:
        for p, mode in saved.items():
            os.chmod(p, stat.S_IMODE(mode))


def probe(prefix):
    p = subprocess.run(prefix + [vmtest.VMRAS, "probe", "--json"], capture_output=True,
                       text=True, timeout=120)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


def guest_with_error(prefix):
    p = subprocess.run(prefix + [vmtest.VMRAS, "run", "--backend", "hugetlb-2m", "--vcpus", "1",
                                 "--mem", "32M", "--passes", "2", "--cpu-vendor", "intel",
                                 "--inject", "ao:%#x" % GPA, "--summary", "json",
                                 "--no-record"],
                       capture_output=True, text=True, timeout=300)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    try:
        return p.returncode, json.loads(lines[-1]), p.stderr
    except (ValueError, IndexError):
        return p.returncode, None, p.stderr


def check(name, prefix):
    """The probe's verdict on splitting, then what a guest's error cost."""
    pr = probe(prefix)
    if not tap.ok(pr is not None, name + ": vmras probe --json works"):
        return
    split = pr["strategies"]["split_hugepages"]
    tap.diag("%s: split_hugepages %s (%s)" % (name, split["state"], split["reason"]))
    tap.eq(pr["strategies"]["uffd_poison"]["state"], "available",
           name + ": the probe says bad pages can be contained (UFFDIO_POISON)")
    code, s, err = guest_with_error(prefix)
    if not tap.ok(code == 0 and s is not None, name + ": the guest runs to the end, exit 0",
                  "exit %s: %s" % (code, err.strip()[-400:])):
        return
    lost = s["bytes-lost"]
    want = 4096 if split["available"] else HUGE
    tap.eq(lost, want, name + ": %d bytes lost, as the probe's verdict predicts (split %s)"
           % (want, "available" if split["available"] else "unavailable"))
    tap.eq(s["guest"]["pages-corrupted"], 0, name + ": 0 corrupted pages")


def lib_tests(name, prefix):
    for t in LIB_TESTS:
        p = subprocess.run(prefix + [t], capture_output=True, text=True, timeout=600)
        bad = [l for l in p.stdout.splitlines() if l.startswith("not ok")]
        tap.ok(p.returncode == 0 and not bad,
               "%s: %s passes" % (name, os.path.basename(t)),
               "exit %d\n%s\n%s" % (p.returncode, "\n".join(bad[:10]), p.stderr[-400:]))


def main():
    if os.geteuid() != 0:
        tap.skip("least privilege", "needs root to drop privileges and to lend device access")
        return tap.done()
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode:
        tap.skip("least privilege", "setpriv (util-linux) not installed")
        return tap.done()
    with vmtest.hugepages(2048, 32) as why:
        if why:
            tap.skip("least privilege", why)
            return tap.done()
        # (1) root without CAP_SYS_ADMIN.
        lib_tests("no CAP_SYS_ADMIN", NO_SYS_ADMIN)
        check("no CAP_SYS_ADMIN", NO_SYS_ADMIN)
        # (2) an ordinary user with /dev/kvm and /dev/userfaultfd.
        if os.path.exists("/dev/userfaultfd"):
            with others_may_open("/dev/kvm", "/dev/userfaultfd"):
                lib_tests("user with /dev/kvm and /dev/userfaultfd", NOBODY)
                check("user with /dev/kvm and /dev/userfaultfd", NOBODY)
        else:
            tap.skip("user with /dev/userfaultfd", "this kernel has no /dev/userfaultfd")
        # (3) and without /dev/userfaultfd: user-mode-only, no split.
        with others_may_open("/dev/kvm"):
            check("user with /dev/kvm only", NOBODY)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
