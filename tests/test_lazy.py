#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Lazy snapshot restore (issue 11): `vmras run --incoming file:PATH --lazy`
starts the vCPUs before guest RAM is loaded; each page arrives when it is
first touched (a userfaultfd fault, served from the file) and the rest in
the background (here turned on over QMP only after a pass, so that the
guest demonstrably ran on what it faulted in). The guest, which lost 4 KiB
pages to an AO and an AR on the source (one inside a 2 MiB huge page), goes
on verifying every page with 0 corrupted; its bad pages are poisoned again (4 KiB inside a huge page), never
data or zeros; a snapshot page that fails its checksum reaches the guest
as poisoned (a machine check), never as data."""
import json
import os
import struct
import sys
import tempfile
import time

import tap
import vmtest
from vmtest import VM, bad_pages, guest_report

vmtest.VMRAS = sys.argv[1]
PAGE = 4096
COMMON = ("--vcpus", "2", "--mem", "64M", "--passes", "100000", "--seed", "7")
# 64 MiB: vCPU 0 owns 0x400000-0x2200000, vCPU 1 0x2200000-0x4000000.
ERRORS = [(0x1a45000, "ao", None), (0x3123000, "ar", 1)]


def both_passes(q, timeout=180):
    return [q.wait_event(guest_report("pass-done", vcpu=v), timeout=timeout)["data"]["pass"]
            for v in (0, 1)]


def reads_poisoned(q, gpa):
    r = q.cmd("x-read-guest-memory", gpa=gpa, size=8)
    return "error" in r and "hardware error" in json.dumps(r["error"])


def one_line(err):
    return len([l for l in err.splitlines() if l.strip()]) == 1


def snapshot(backend, errors, tag):
    """A guest that lost pages, snapshotted to a file: (path, passes, bad pages)."""
    src = VM("--backend", backend, "--paused", *COMMON)
    try:
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        vmtest.poison(q, errors, True)
        before = both_passes(q)
        expect = bad_pages(q)
        path = os.path.join(tempfile.mkdtemp(prefix="vmras-lazy-"), "snap")
        r = q.cmd("migrate", uri="file:" + path)
        if r != {"return": {}}:
            raise RuntimeError("migrate to a file: %r" % r)
        d = q.wait_event(lambda e: e["event"] == "MIGRATION" and
                         e["data"]["status"] in ("completed", "failed"), timeout=300)["data"]
        if d["status"] != "completed":
            raise RuntimeError("snapshot failed: %r" % d)
        q.cmd("quit")
        src.wait(timeout=60)
        return path, before, expect
    finally:
        src.kill()


def lazy_stats(q):
    return q.cmd("query-migrate")["return"].get("lazy")


def check_lazy_destination(name, backend, dst, before, expect):
    q = dst.qmp()
    first = lazy_stats(q)
    tap.ok(first is not None and first["pages-total"] == (64 << 20) // PAGE,
           name + ": query-migrate reports lazy memory", first)
    after = both_passes(q)  # the pass each vCPU was in, finished here
    tap.ok(min(after) > min(before),
           name + ": the guest goes on from where it was (passes %s -> %s)" % (before, after))
    st = lazy_stats(q)
    full = q.cmd("query-migrate")["return"]
    # Started with --lazy-no-prefetch: all that is here came because a
    # thread waited for it, so the guest ran on what it faulted in, before
    # its memory was loaded (64 MiB on 2 MiB pages: a pass may have touched
    # every huge page, so there it may all be here by now).
    tap.ok(st["faulted"] > 0 and st["prefetched"] == 0 and sum(full["postcopy-latency-dist"]) > 0
           and (backend == "hugetlb-2m" or not st["complete"]),
           name + ": the guest ran on what it faulted in "
           "(%d of %d pages here)" % (st["pages-present"], st["pages-total"]), st)
    tap.eq(q.cmd("x-lazy-prefetch", enable=True), {"return": {}},
           name + ": x-lazy-prefetch turns the background load on")
    end = time.time() + 120
    while not st["complete"] and time.time() < end:
        time.sleep(0.2)
        st = lazy_stats(q)
    tap.ok(st["complete"] and st["pages-present"] == st["pages-total"],
           name + ": every page arrived (faulted %d, prefetched %d)"
           % (st["faulted"], st["prefetched"]), st)
    tap.eq(st["poisoned-pages"], len(expect),
           name + ": the bad 4 KiB pages arrived as poisoned, nothing more", st)
    full = q.cmd("query-migrate")["return"]
    tap.ok(all(k in full for k in ("postcopy-blocktime", "postcopy-vcpu-blocktime",
                                   "postcopy-latency", "postcopy-latency-dist"))
           and len(full["postcopy-vcpu-blocktime"]) == 2
           and sum(full["postcopy-latency-dist"]) > 0,
           name + ": QEMU's postcopy statistics are there", full)
    both_passes(q)
    g = q.cmd("query-guest")["return"]
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted on the destination")
    tap.eq(bad_pages(q), expect, name + ": the registry holds the source's bad 4 KiB pages")
    tap.ok(all(reads_poisoned(q, gpa) for gpa, _ in expect),
           name + ": a host-side read of each gives -EHWPOISON")
    tap.eq(sorted(r["gpa"] for r in g["retired"]), sorted(gpa for gpa, _ in expect),
           name + ": the guest's retired pages came along")
    tap.eq(q.cmd("system_reset"), {"return": {}}, name + ": system_reset on the destination")
    tap.eq(bad_pages(q), [], name + ": after the reset all memory is back")
    both_passes(q)
    tap.eq(q.cmd("query-guest")["return"]["pages-corrupted"], 0,
           name + ": the guest runs clean after the reset")
    q.cmd("quit")


SNAPSHOTS = []


def restore_lazily(name, backend, path, check):
    """Restore path lazily and check(dst); an exception fails the case with its stderr."""
    dst = VM("--backend", backend, "--incoming", "file:" + path, "--lazy-no-prefetch", *COMMON)
    try:
        check(dst)
    except Exception as e:
        tap.ok(False, name + ": " + repr(e), dst.stderr())
    finally:
        dst.kill()


def test_lazy_anon():
    name = "lazy restore, anon"
    path, before, expect = snapshot("anon", ERRORS, "anon")
    restore_lazily(name, "anon", path,
                   lambda dst: check_lazy_destination(name, "anon", dst, before, expect))
    SNAPSHOTS.append(path)


def test_lazy_hugetlb():
    name = "lazy restore, hugetlb-2m"
    path, before, expect = snapshot("hugetlb-2m", ERRORS, "hugetlb")
    tap.eq([size for _, size in expect], [PAGE] * len(ERRORS),
           name + ": the source lost 4 KiB pages inside its huge pages")
    restore_lazily(name, "hugetlb-2m", path,
                   lambda dst: check_lazy_destination(name, "hugetlb-2m", dst, before, expect))
    os.unlink(path)


def image_layout(path):
    """(data_offset, kinds) of the file's ram-image section."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    off = 16
    while True:
        typ, _, length = struct.unpack_from("<IIQ", data, off)
        if typ == 3:
            npages, data_off = struct.unpack_from("<QQ", data, off + 24)
            kinds = data[off + 48:off + 48 + npages]
            return data_off, kinds
        off += 24 + length + 4


def test_lazy_corrupt(path):
    name = "lazy restore, a page that fails its checksum"
    data_off, kinds = image_layout(path)
    # A data page in vCPU 1's area: the guest reads it in every pass.
    page = next(p for p in range(0x2400000 // PAGE, len(kinds)) if kinds[p] == 0)
    with open(path, "r+b") as f:
        f.seek(data_off + page * PAGE + 100)
        b = f.read(1)
        f.seek(data_off + page * PAGE + 100)
        f.write(bytes([b[0] ^ 0x20]))

    def check(dst):
        q = dst.qmp()
        both_passes(q)
        both_passes(q)
        g = q.cmd("query-guest")["return"]
        tap.eq(g["pages-corrupted"], 0,
               name + ": the guest never read the corrupt data (0 corrupted)")
        tap.ok(page * PAGE in [r["gpa"] for r in g["retired"]],
               name + ": it got a machine check for that page and retired it",
               g["retired"])
        tap.ok(reads_poisoned(q, page * PAGE), name + ": the page is poisoned on the host")
        tap.eq(lazy_stats(q)["bad-image-pages"], 1, name + ": counted as a bad image page")
        q.cmd("quit")
        dst.wait(timeout=60)
        tap.ok("fails its checksum" in dst.stderr(), name + ": and said so on stderr",
               dst.stderr())

    restore_lazily(name, "anon", path, check)
    os.unlink(path)


def test_refused():
    name = "lazy restore refused"
    code, _, err = vmtest.run("--lazy", *COMMON, timeout=60)
    tap.ok(code == 2 and "--lazy needs --incoming file:" in err and one_line(err),
           name + ": --lazy without a snapshot", err)
    code, _, err = vmtest.run("--lazy", "--incoming", "tcp::4455", *COMMON, timeout=60)
    tap.ok(code == 2 and "--lazy needs --incoming file:" in err and one_line(err),
           name + ": --lazy with a live migration (post-copy is the migrate command's)", err)


def main():
    tap.run(test_lazy_anon)
    # Under the sanitizers (VMRAS_TEST_QUICK), the anon case runs the same
    # library and VMM code as the others, which the plain build runs.
    if os.environ.get("VMRAS_TEST_QUICK"):
        tap.run(test_refused)
        tap.done()
    if SNAPSHOTS:
        tap.run(test_lazy_corrupt, SNAPSHOTS[0])
    tap.run(vmtest.with_hugepages(2048, 2 * 32 + 4, "lazy restore, hugetlb-2m",
                                  test_lazy_hugetlb))
    tap.run(test_refused)
    tap.done()


if __name__ == "__main__":
    main()
