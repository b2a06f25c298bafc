#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Lazy snapshot restore against eager restore of the same files, same run
(issue 11).

    bench/lazy_restore.py VMRAS [--quick]

For a 64 MiB and a 1 GiB guest whose every data page holds data (the VMM
fills them before the guest boots: --sample), stopped and saved with QMP
`migrate file:`: best of 3 of

  time to first instruction  `vmras run --incoming file:PATH --lazy` from
                             its start until its vCPUs may run
                             (query-migrate's incoming-time-us): the goal is
                             1 GiB at most 1.5x 64 MiB (flat in the size);
  whole lazy restore         until every page is here (incoming-time-us +
                             lazy.load-time-us);
  eager restore              `vmras run --incoming file:PATH` until its
                             vCPUs may run (incoming-time-us): the whole lazy
                             restore of 1 GiB at most 1.3x it.

The snapshot files are in the page cache (they were just written): a host
restoring what it saved. --quick: 64 MiB and 256 MiB, one run each. Exit 0
with the figures (a ratio past its goal is a figure, not a failure); on an
error one line on stderr and exit 1. Every VM is quit or killed.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import vmtest  # noqa: E402
from vmtest import VM  # noqa: E402

COMMON = ("--vcpus", "2", "--passes", "100000", "--seed", "3", "--sample", "64",
          "--no-record")


def save(mem, path):
    src = VM("--mem", mem, "--paused", *COMMON)
    try:
        q = src.qmp()
        if q.cmd("migrate", uri="file:" + path) != {"return": {}}:
            raise RuntimeError("migrate to a file refused")
        d = q.wait_event(lambda e: e["event"] == "MIGRATION" and
                         e["data"]["status"] in ("completed", "failed"), timeout=600)["data"]
        if d["status"] != "completed":
            raise RuntimeError("snapshot of %s failed: %r" % (mem, d))
        q.cmd("quit")
        src.wait(timeout=60)
    finally:
        src.kill()


def restore(mem, path, lazy):
    """(ms until the vCPUs may run, ms until every page is here)."""
    args = ["--mem", mem, "--incoming", "file:" + path, *COMMON]
    if lazy:
        args.append("--lazy")
    dst = VM(*args)
    try:
        q = dst.qmp()
        end = time.time() + 600
        while time.time() < end:
            m = q.cmd("query-migrate")["return"]
            if "incoming-time-us" in m and (not lazy or "load-time-us" in m.get("lazy", {})):
                first = m["incoming-time-us"] / 1000
                whole = first + m["lazy"]["load-time-us"] / 1000 if lazy else first
                q.cmd("quit")
                return first, whole
            time.sleep(0.01)
        raise RuntimeError("restore of %s did not finish in 600 s" % mem)
    finally:
        dst.kill()


def main():
    if len(sys.argv) < 2:
        print("usage: lazy_restore.py VMRAS [--quick]", file=sys.stderr)
        return 2
    vmtest.VMRAS = sys.argv[1]
    quick = "--quick" in sys.argv
    sizes = ("64M", "256M") if quick else ("64M", "1G")
    reps = 1 if quick else 3
    tmp = tempfile.mkdtemp(prefix="vmras-lazy-restore-")
    try:
        res = {}
        for mem in sizes:
            path = os.path.join(tmp, mem + ".snap")
            save(mem, path)
            lazy = [restore(mem, path, True) for _ in range(reps)]
            eager = [restore(mem, path, False) for _ in range(reps)]
            res[mem] = (min(f for f, _ in lazy), min(w for _, w in lazy),
                        min(f for f, _ in eager))
            print("%s: lazy: first instruction after %.1f ms, every page after %.1f ms; "
                  "eager: %.1f ms" % (mem, *res[mem]), flush=True)
            os.unlink(path)
        small, big = sizes
        print("time to first instruction, %s against %s: %.2f (goal <= 1.5)"
              % (big, small, res[big][0] / max(res[small][0], 1)))
        print("whole lazy restore against eager, %s: %.2f (goal <= 1.3)"
              % (big, res[big][1] / max(res[big][2], 1)))
        return 0
    except Exception as e:  # noqa: BLE001 - one line, exit 1
        print("lazy_restore: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
