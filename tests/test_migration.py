#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration and snapshots with poison (issue 10): a guest that lost
4 KiB pages to an AO and an AR (one inside a 2 MiB huge page) moves while
it runs its passes, over a unix socket, TCP and a file; on the destination
it goes on from the pass it was in with 0 corrupted, the registry holds
exactly the source's bad pages, poisoned, and a reset gives them back.
Failures (cancel, a destination that dies, a corrupt stream, a different
memory size) leave the source guest running to a clean finish."""
import json
import os
import socket
import sys
import threading
import time

import tap
import vmtest
from vmtest import VM, guest_report

vmtest.VMRAS = sys.argv[1]
PAGE = 4096
MEM = "64M"
# 64 MiB: vCPU 0 owns 0x400000-0x2200000, vCPU 1 0x2200000-0x4000000.
ERRORS = [(0x1a45000, "ao", None), (0x3123000, "ar", 1)]
COMMON = ("--vcpus", "2", "--mem", MEM, "--passes", "100000", "--seed", "7")


def both_passes(q, timeout=120):
    """Wait for a pass-done of each vCPU; their pass numbers."""
    return [q.wait_event(guest_report("pass-done", vcpu=v), timeout=timeout)["data"]["pass"]
            for v in (0, 1)]


def poison(q):
    for gpa, kind, vcpu in ERRORS:
        args = {"gpa": gpa, "type": kind}
        if vcpu is not None:
            args["vcpu"] = vcpu
        r = q.cmd("inject-memory-error", **args)
        assert r == {"return": {}}, r
        q.wait_event(guest_report("retired", gpa=gpa), timeout=120)


def bad_pages(q):
    me = q.cmd("query-memory-errors")["return"]
    return sorted((e["gpa"], e["size"]) for e in me["errors"])


def reads_poisoned(q, gpa):
    r = q.cmd("x-read-guest-memory", gpa=gpa, size=8)
    return "error" in r and "hardware error" in json.dumps(r["error"])


def wait_migration(q, timeout=300):
    return q.wait_event(lambda e: e["event"] == "MIGRATION" and
                        e["data"]["status"] in ("completed", "failed", "cancelled"),
                        timeout=timeout)["data"]


def wait_path(path, proc, timeout=30):
    end = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > end:
            raise RuntimeError("destination did not listen on " + path)
        time.sleep(0.02)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check_destination(name, dst, passes_before, expect_bad):
    """The moved guest runs on: later passes verified, its bad pages poisoned."""
    q = dst.qmp()
    after = both_passes(q)
    after = both_passes(q)
    g = q.cmd("query-guest")["return"]
    tap.ok(min(after) > min(passes_before),
           name + ": the guest goes on from where it was (passes %s -> %s)"
           % (passes_before, after))
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted on the destination")
    tap.eq(bad_pages(q), expect_bad, name + ": the destination's registry holds the "
           "source's bad 4 KiB pages")
    tap.ok(all(reads_poisoned(q, gpa) for gpa, _ in expect_bad),
           name + ": a host-side read of each gives -EHWPOISON")
    tap.ok(all(s["retired"] >= 1 for s in g["vcpus"]) or sum(s["retired"] for s in g["vcpus"]) == len(ERRORS),
           name + ": the guest's retired pages came along", g["retired"])
    r = q.cmd("system_reset")
    tap.eq(r, {"return": {}}, name + ": system_reset on the destination")
    tap.eq(bad_pages(q), [], name + ": after the reset all memory is back")
    tap.ok(not reads_poisoned(q, expect_bad[0][0]), name + ": the bad page reads again")
    q.cmd("quit")
    code, _, err = dst.wait(timeout=60)
    tap.eq(code, 0, name + ": destination exits 0", err)


def live(name, backend, uri_of):
    src = dst = None
    try:
        src = VM("--backend", backend, "--paused", *COMMON)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        poison(q)
        before = both_passes(q)
        expect = bad_pages(q)
        tap.eq(expect, sorted((g, PAGE) for g, _, _ in ERRORS),
               name + ": the source lost exactly 2 x 4 KiB")
        uri, listen_path = uri_of(src.dir)
        dst = VM("--backend", backend, "--incoming", uri, *COMMON)
        if listen_path:
            wait_path(listen_path, dst.proc)
        else:
            time.sleep(0.5)
        r = q.cmd("migrate", uri=uri)
        tap.eq(r, {"return": {}}, name + ": migrate accepted")
        d = wait_migration(q)
        m = q.cmd("query-migrate")["return"]
        tap.eq(d["status"], "completed", name + ": migration completed", (d, m))
        tap.ok(m["ram"]["poisoned-pages"] >= len(ERRORS),
               name + ": the bad pages went as poisoned, not as data", m)
        tap.diag("%s: %s" % (name, json.dumps(m)))
        tap.ok("error" in q.cmd("cont"), name + ": the source does not run the guest again")
        q.cmd("quit")
        src.wait(timeout=60)
        check_destination(name, dst, before, expect)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name + ": " + repr(e),
               (src.stderr() if src else "") + (dst.stderr() if dst else ""))
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def test_unix_anon():
    live("unix, anon", "anon", lambda d: ("unix:" + os.path.join(d, "mig.sock"),
                                          os.path.join(d, "mig.sock")))


def test_tcp_hugetlb():
    port = free_port()
    live("tcp, hugetlb-2m", "hugetlb-2m", lambda d: ("tcp:127.0.0.1:%d" % port, None))


def test_snapshot():
    name = "snapshot"
    src = dst = None
    try:
        src = VM("--backend", "anon", "--paused", *COMMON)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        poison(q)
        before = both_passes(q)
        expect = bad_pages(q)
        path = os.path.join(src.dir, "snap")
        tap.eq(q.cmd("migrate", uri="file:" + path), {"return": {}}, name + ": migrate to a file")
        d = wait_migration(q)
        tap.eq(d["status"], "completed", name + ": snapshot written", d)
        q.cmd("quit")
        src.wait(timeout=60)
        size = os.path.getsize(path)
        tap.ok(size > 64 << 20, name + ": the file holds every page (%d bytes)" % size)
        dst = VM("--backend", "anon", "--incoming", "file:" + path, *COMMON)
        check_destination(name, dst, before, expect)
        # A corrupt snapshot: one byte of page data changed.
        with open(path, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x40]))
        code, _, err = vmtest.run("--backend", "anon", "--incoming", "file:" + path, *COMMON,
                                  timeout=120)
        tap.ok(code != 0 and "checksum" in err and len(err.strip().splitlines()) == 1,
               name + ": a corrupt snapshot is refused with one line", err)
        # A snapshot of another memory size.
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b)
        code, _, err = vmtest.run("--backend", "anon", "--incoming", "file:" + path,
                                  "--vcpus", "2", "--mem", "32M", "--passes", "100000",
                                  "--seed", "7", timeout=120)
        tap.ok(code != 0 and "64 MiB" in err and "32 MiB" in err,
               name + ": a snapshot of a 64 MiB guest is refused by a 32 MiB VM", err)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name + ": " + repr(e),
               (src.stderr() if src else "") + (dst.stderr() if dst else ""))
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def failing_peer(path, mode, got):
    """A destination that accepts and then says nothing (mode 'silent') or
    reads a little and dies ('die')."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)

    def serve():
        c, _ = ls.accept()
        if mode == "die":
            got.append(len(c.recv(1 << 20)))
            c.close()
        else:
            got.append(c)
        ls.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_failures():
    """Cancel, and a destination that dies mid-stream: the source runs on."""
    src = None
    try:
        src = VM("--backend", "anon", "--paused", "--vcpus", "2", "--mem", "16M",
                 "--passes", "6", "--seed", "7")
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        for mode in ("silent", "die"):
            name = "destination %s" % ("never reads" if mode == "silent" else "dies mid-stream")
            path = os.path.join(src.dir, mode + ".sock")
            got = []
            t = failing_peer(path, mode, got)
            tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}}, name + ": migrate")
            if mode == "silent":
                time.sleep(1)
                q.cmd("migrate_cancel")
            d = wait_migration(q, timeout=120)
            want = "cancelled" if mode == "silent" else "failed"
            tap.eq(d["status"], want, name + ": migration " + want, d)
            st = q.cmd("query-status")["return"]
            tap.eq(st["status"], "running", name + ": the source guest runs on")
            t.join(5)
            for c in got:
                if isinstance(c, socket.socket):
                    c.close()
        r = q.cmd("migrate", uri="bogus:x")
        tap.ok("error" in r, "a bad migration URI is refused", r)
        code, s, err = src.wait(timeout=300)
        tap.ok(code == 0 and s and s["result"] == "pass",
               "after both failures the source guest finishes clean", err)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "failures: " + repr(e), src.stderr() if src else "")
    finally:
        if src:
            src.kill()


def main():
    for t in (test_unix_anon,
              vmtest.with_hugepages(2048, 2 * 32 + 4, "tcp, hugetlb-2m", test_tcp_hugetlb),
              test_snapshot, test_failures):
        tap.run(t)
    tap.done()


if __name__ == "__main__":
    main()
