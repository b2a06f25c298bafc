#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""`vmras run` on every backend, and the guest's check is not vacuous."""
import os
import sys
import tempfile

import tap
import vmtest
from vmtest import VM, guest_report

vmtest.VMRAS = sys.argv[1]


def check_clean(summary, name, vcpus, passes):
    g = summary["guest"]
    tap.eq(summary["result"], "pass", name + ": result pass")
    tap.ok(all(v["done"] and v["passes"] == passes for v in g["vcpus"]) and
           len(g["vcpus"]) == vcpus, name + ": every vCPU finished %d passes" % passes)
    tap.ok(all(v["verified"] == v["pages"] * passes and v["pages"] > 0 for v in g["vcpus"]),
           name + ": every vCPU verified every page in every pass",
           [(v["pages"], v["verified"]) for v in g["vcpus"]])
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted")


def test_backends():
    ramfile = os.path.join(tempfile.mkdtemp(prefix="vmras-test-"), "ram")
    for backend in ["anon", "shmem", "file:" + ramfile, "hugetlb-2m"]:
        name = backend.split(":")[0]
        # 32 MiB on 2 MiB pages: 16, reserved here when root and missing.
        with vmtest.hugepages(2048, 16 if backend == "hugetlb-2m" else 0) as why:
            if why:
                tap.skip(name, why)
                continue
            code, s, err = vmtest.run("--vcpus", "2", "--mem", "32M", "--passes", "2",
                                      "--backend", backend)
        if not tap.eq(code, 0, name + ": exit 0") or s is None:
            tap.diag(err)
            continue
        tap.eq(s["backend"], name, name + ": backend reported")
        check_clean(s, name, 2, 2)
        tap.diag("%s: %d pages verified" % (name, s["guest"]["pages-verified"]))
    if os.path.exists(ramfile):
        os.unlink(ramfile)


def test_flip_one_byte():
    """One flipped byte: the guest names exactly that page and offset."""
    vm = VM("--vcpus", "2", "--mem", "16M", "--passes", "3", "--paused")
    try:
        q = vm.qmp()
        q.cmd("cont")
        started = q.wait_event(guest_report("started", vcpu=1))
        page = started["data"]["slice-end"] - 4096
        offset = 0x123
        q.wait_event(guest_report("pass-done", vcpu=1, **{"pass": 1}))
        tap.ok("return" in q.cmd("stop"), "flip: stop")
        old = q.cmd("x-read-guest-memory", gpa=page + offset, size=1)["return"]["data"]
        new = "%02x" % (int(old, 16) ^ 0x40)
        tap.ok("return" in q.cmd("x-write-guest-memory", gpa=page + offset, data=new),
               "flip: wrote byte 0x%s -> 0x%s at GPA 0x%x" % (old, new, page + offset))
        tap.ok("return" in q.cmd("cont"), "flip: cont")
        ev = q.wait_event(guest_report("corrupted"))
        tap.eq((ev["data"]["vcpu"], ev["data"]["gpa"], ev["data"]["offset"]),
               (1, page, offset), "flip: guest reports that page and offset at once")
        code, s, err = vm.wait()
    finally:
        vm.kill()
    tap.ok(code == 1, "flip: run exits non-zero (1)", "exit %s\n%s" % (code, err))
    if s is None:
        tap.ok(False, "flip: summary printed", err)
        return
    g = s["guest"]
    tap.eq(s["result"], "fail", "flip: result fail")
    tap.eq([(c["gpa"], c["offset"]) for c in g["corrupted"]], [(page, offset)],
           "flip: exactly one corrupted page, with the right offset")
    tap.eq(g["pages-corrupted"], 1, "flip: count 1")
    tap.ok(all(v["done"] for v in g["vcpus"]), "flip: the guest still finished")


def test_usage_errors():
    for args, what in [
        (["--backend", "floppy"], "unknown backend"),
        (["--backend", "hugetlb-2m", "--mem", "3M"], "not a multiple"),
        (["--mem", "lots"], "not a size"),
        (["--vcpus", "0"], "vCPU count"),
        (["--vcpus", "33"], "--vcpus must be"),
        (["--mem", "2M"], "guest RAM must be"),
        (["--guest", "/nonexistent/guest.bin"], "read guest image /nonexistent/guest.bin"),
    ]:
        code, s, err = vmtest.run(*args)
        lines = err.strip().splitlines()
        tap.ok(code == 2 and len(lines) == 1 and what in lines[0] and
               lines[0].startswith("vmras run: "),
               "bad input %s: exit 2, one line naming it" % " ".join(args), err)


tap.run(test_backends)
tap.run(test_flip_one_byte)
tap.run(test_usage_errors)
tap.done()
