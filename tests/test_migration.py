#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration and snapshots with poison (issue 10): a guest that lost
4 KiB pages to an AO and an AR (one inside a 2 MiB huge page) moves while
it runs its passes, over a unix socket, TCP between two network namespaces
and a file; on the destination it goes on from the pass it was in with 0
corrupted, the registry holds exactly the source's bad pages, poisoned, and
a reset gives them back. Errors that strike while pages are being sent go
as poisoned; machine checks still queued on the source are delivered on
the destination. Failures (cancel, a destination that dies or is killed or
refuses, a corrupt or truncated stream, a different memory size) leave the
source guest running on with 0 corrupted, and say why in one line."""
import json
import os
import socket
import sys
import tempfile
import threading
import time

import netns
import tap
import vmtest
from vmtest import Case, bad_pages, guest_report, wait_path

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


def poison(q, errors=ERRORS, wait=True):
    vmtest.poison(q, errors, wait)


def reads_poisoned(q, gpa):
    r = q.cmd("x-read-guest-memory", gpa=gpa, size=8)
    return "error" in r and "hardware error" in json.dumps(r["error"])


def wait_transferred(q, nbytes, timeout=120):
    """Wait until the migration has sent nbytes (it must still be running)."""
    end = time.time() + timeout
    while time.time() < end:
        m = q.cmd("query-migrate")["return"]
        if m["status"] not in ("setup", "active"):
            raise RuntimeError("migration ended early: %r" % m)
        if m["ram"]["transferred"] >= nbytes:
            return m
        time.sleep(0.05)
    raise RuntimeError("migration sent less than %d bytes in %d s" % (nbytes, timeout))


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    return len(lines) == 1


def wait_migration(q, timeout=300):
    return q.wait_event(lambda e: e["event"] == "MIGRATION" and
                        e["data"]["status"] in ("completed", "failed", "cancelled"),
                        timeout=timeout)["data"]


def check_destination(name, dst, passes_before, expect_bad, expect_retired=None):
    """The moved guest runs on: later passes verified, its bad pages poisoned."""
    q = dst.qmp()
    if q.cmd("query-status")["return"]["status"] == "paused":
        q.cmd("cont")
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
    retired = sorted(r["gpa"] for r in g["retired"])
    tap.eq(retired, sorted(expect_retired or [gpa for gpa, _ in expect_bad]),
           name + ": the guest's retired pages came along")
    r = q.cmd("system_reset")
    tap.eq(r, {"return": {}}, name + ": system_reset on the destination")
    tap.eq(bad_pages(q), [], name + ": after the reset all memory is back")
    tap.ok(not reads_poisoned(q, expect_bad[0][0]), name + ": the bad page reads again")
    q.cmd("quit")
    code, _, err = dst.wait(timeout=60)
    tap.eq(code, 0, name + ": destination exits 0", err)


def finish_source(name, q, src):
    st = q.cmd("query-status")["return"]["status"]
    tap.ok(st == "postmigrate" and "error" in q.cmd("cont"),
           name + ": the source is in postmigrate and does not run the guest again", st)
    q.cmd("quit")
    src.wait(timeout=60)


def live(name, backend, uri_of, hosts=None):
    """Move a running, poisoned guest; uri_of(dir) -> (uri, unix path or None)."""
    with Case(name) as case:
        src = case.vm("--backend", backend, "--paused", *COMMON,
                      prefix=hosts.src.prefix if hosts else ())
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        poison(q)
        before = both_passes(q)
        expect = bad_pages(q)
        tap.eq(expect, sorted((g, PAGE) for g, _, _ in ERRORS),
               name + ": the source lost exactly 2 x 4 KiB")
        uri, listen_path = uri_of(src.dir)
        dst = case.vm("--backend", backend, "--incoming", uri, *COMMON,
                      prefix=hosts.dst.prefix if hosts else ())
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
        finish_source(name, q, src)
        check_destination(name, dst, before, expect)


def test_unix_anon():
    live("unix, anon", "anon", lambda d: ("unix:" + os.path.join(d, "mig.sock"),
                                          os.path.join(d, "mig.sock")))


def test_tcp_two_hosts():
    """Two hosts: source and destination in their own network namespaces."""
    why = netns.unavailable()
    if why:
        tap.skip("tcp between two namespaces, hugetlb-2m", why)
        return
    with netns.TwoHosts() as h:
        port = 4444
        live("tcp between two namespaces, hugetlb-2m", "hugetlb-2m",
             lambda d: ("tcp:%s:%d" % (h.dst.addr, port), None), hosts=h)


def test_errors_while_sending():
    """An AO and an AR (in 2 MiB huge pages) while pages are being sent."""
    name = "errors while sending"
    # 16 MiB: vCPU 0 owns 0x400000-0xa00000, vCPU 1 0xa00000-0x1000000.
    during = [(0x54d000, "ao", None), (0xd07000, "ar", 1)]
    with Case(name) as case:
        src = case.vm("--backend", "hugetlb-2m", "--paused", *FAIL_ARGS)
        q = src.qmp()
        q.cmd("cont")
        before = both_passes(q)
        path = os.path.join(src.dir, "mig.sock")
        dst = case.vm("--backend", "hugetlb-2m", "--incoming", "unix:" + path, *FAIL_ARGS)
        wait_path(path, dst.proc)
        # 2 MiB/s: the first round, which sends every page, takes 8 s; the
        # errors strike in it, one after its page went and one before.
        tap.eq(q.cmd("migrate-set-parameters", **{"max-bandwidth": 2 << 20,
                                                  "downtime-limit": 0}),
               {"return": {}}, name + ": max-bandwidth 2 MiB/s")
        tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}}, name + ": migrate")
        wait_transferred(q, 6 << 20)
        poison(q, during)
        m = q.cmd("query-migrate")["return"]
        tap.ok(m["status"] == "active" and m["ram"]["transferred"] < 12 << 20,
               name + ": both were contained while the first round ran", m)
        q.cmd("migrate-set-parameters", **{"downtime-limit": 300})
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 0})
        d = wait_migration(q)
        m = q.cmd("query-migrate")["return"]
        tap.eq(d["status"], "completed", name + ": migration completed", (d, m))
        tap.ok(m["ram"]["poisoned-pages"] >= 1, name + ": bad pages went as poisoned", m)
        tap.diag("%s: %s" % (name, json.dumps(m)))
        finish_source(name, q, src)
        check_destination(name, dst, before, sorted((g, PAGE) for g, _, _ in during))


def test_queued_machine_checks():
    """What is pending on a stopped source happens on the destination: the
    machine check for an AO the library queued and has not delivered, and
    the AR of an access the stand-in made vCPU 1 about to do (the page is
    bad; the guest's touch on the destination raises it there)."""
    name = "queued machine checks"
    ao, ar = (0x707000, "ao", None), (0xc45000, "ar", 1)
    with Case(name) as case:
        src = case.vm("--backend", "anon", "--paused", *FAIL_ARGS)
        q = src.qmp()
        q.cmd("cont")
        before = both_passes(q)
        q.cmd("stop")
        poison(q, [ao, ar], wait=False)
        time.sleep(0.5)
        g = q.cmd("query-guest")["return"]
        tap.eq(g["retired"], [], name + ": the stopped source guest was told nothing yet")
        me = q.cmd("query-memory-errors")["return"]["errors"]
        tap.ok(len(me) == 1 and me[0]["gpa"] == ao[0] and not me[0]["guest-notified"],
               name + ": the source contained the AO and queued its machine check", me)
        path = os.path.join(src.dir, "mig.sock")
        dst = case.vm("--backend", "anon", "--incoming", "unix:" + path, *FAIL_ARGS)
        wait_path(path, dst.proc)
        tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}}, name + ": migrate")
        d = wait_migration(q)
        m = q.cmd("query-migrate")["return"]
        tap.eq(d["status"], "completed", name + ": migration completed", m)
        tap.eq(m["ram"]["poisoned-pages"], 2, name + ": both bad pages went as poisoned")
        finish_source(name, q, src)
        qd = dst.qmp()
        tap.eq(qd.cmd("query-status")["return"]["status"], "paused",
               name + ": the destination keeps the operator's stop")
        tap.eq(bad_pages(qd), sorted((g, PAGE) for g, _, _ in (ao, ar)),
               name + ": the destination holds both pages poisoned before it runs")
        tap.eq(qd.cmd("cont"), {"return": {}}, name + ": cont on the destination")
        for gpa, kind, _ in (ao, ar):
            ev = qd.wait_event(guest_report("retired", gpa=gpa), timeout=120)
            tap.ok(True, name + ": the guest is told of 0x%x (%s) on the destination, "
                   "by vCPU %s" % (gpa, kind, ev["data"].get("vcpu")))
        qd.close()
        check_destination(name, dst, before, sorted((g, PAGE) for g, _, _ in (ao, ar)))


def test_snapshot():
    name = "snapshot"
    with Case(name) as case:
        src = case.vm("--backend", "anon", "--paused", *COMMON)
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
        tap.eq(q.cmd("query-status")["return"]["status"], "paused",
               name + ": the source is stopped after the snapshot")
        tap.eq(q.cmd("cont"), {"return": {}}, name + ": and runs on after cont")
        both_passes(q)
        tap.eq(q.cmd("query-guest")["return"]["pages-corrupted"], 0,
               name + ": the source guest runs on clean")
        q.cmd("quit")
        src.wait(timeout=60)
        size = os.path.getsize(path)
        tap.ok(size > 64 << 20, name + ": the file holds every page (%d bytes)" % size)
        dst = case.vm("--backend", "anon", "--incoming", "file:" + path, *COMMON)
        check_destination(name, dst, before, expect)
        with open(path, "rb") as f:
            good = f.read()
        # A corrupt snapshot: one byte of page data changed.
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x40
        with open(path, "wb") as f:
            f.write(bad)
        code, _, err = vmtest.run("--backend", "anon", "--incoming", "file:" + path, *COMMON,
                                  timeout=120)
        tap.ok(code != 0 and "checksum" in err and "offset" in err and one_line(err),
               name + ": a corrupt snapshot is refused with one line naming the section "
               "and offset", err)
        # A truncated snapshot.
        with open(path, "wb") as f:
            f.write(good[:len(good) // 3])
        code, _, err = vmtest.run("--backend", "anon", "--incoming", "file:" + path, *COMMON,
                                  timeout=120)
        tap.ok(code != 0 and "truncated" in err and "offset" in err and one_line(err),
               name + ": a truncated snapshot is refused with one line", err)
        # A snapshot of another memory size.
        with open(path, "wb") as f:
            f.write(good)
        code, _, err = vmtest.run("--backend", "anon", "--incoming", "file:" + path,
                                  "--vcpus", "2", "--mem", "32M", "--passes", "100000",
                                  "--seed", "7", timeout=120)
        tap.ok(code != 0 and "64 MiB" in err and "32 MiB" in err and one_line(err),
               name + ": a snapshot of a 64 MiB guest is refused by a 32 MiB VM", err)


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


FAIL_ARGS = ("--vcpus", "2", "--mem", "16M", "--passes", "100000", "--seed", "7")


def source_runs_on(name, q):
    st = q.cmd("query-status")["return"]
    tap.eq(st["status"], "running", name + ": the source guest runs on")


def test_failures():
    """Cancel, a destination that dies, is killed or refuses: the source runs on."""
    with Case("failures") as case:
        src = case.vm("--backend", "anon", "--paused", *FAIL_ARGS)
        q = src.qmp()
        q.cmd("cont")
        before = both_passes(q)
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
            source_runs_on(name, q)
            t.join(5)
            for c in got:
                if isinstance(c, socket.socket):
                    c.close()
        # Real destinations, slowed to 4 MiB/s so that they are mid-stream.
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})
        for mode in ("killed", "cancelled", "refuses"):
            name = "a real destination " + {"killed": "killed mid-stream",
                                            "cancelled": "cancelled mid-stream",
                                            "refuses": "of another size"}[mode]
            path = os.path.join(src.dir, mode + ".sock")
            args = FAIL_ARGS if mode != "refuses" else \
                ("--vcpus", "2", "--mem", "32M", "--passes", "100000", "--seed", "7")
            dst = case.vm("--backend", "anon", "--incoming", "unix:" + path, *args,
                          control=False)
            try:
                wait_path(path, dst.proc)
                tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}},
                       name + ": migrate")
                if mode != "refuses":
                    wait_transferred(q, 4 << 20)
                if mode == "killed":
                    dst.kill()
                elif mode == "cancelled":
                    q.cmd("migrate_cancel")
                d = wait_migration(q, timeout=120)
                m = q.cmd("query-migrate")["return"]
                want = "cancelled" if mode == "cancelled" else "failed"
                tap.eq(d["status"], want, name + ": migration " + want, m)
                if mode == "refuses":
                    tap.ok("16 MiB" in m.get("error-desc", "") and
                           "32 MiB" in m.get("error-desc", ""),
                           name + ": query-migrate says why: " + m.get("error-desc", ""))
                source_runs_on(name, q)
                if mode != "killed":
                    code, _, err = dst.wait(timeout=60)
                    tap.ok(code != 0 and one_line(err),
                           name + ": the destination exits non-zero with one line: "
                           + err.strip(), err)
            finally:
                dst.kill()
        r = q.cmd("migrate", uri="bogus:x")
        tap.ok("error" in r, "a bad migration URI is refused", r)
        after = both_passes(q)
        g = q.cmd("query-guest")["return"]
        tap.ok(min(after) > min(before) and g["pages-corrupted"] == 0,
               "after all the failures the source guest runs on with 0 corrupted "
               "(passes %s -> %s)" % (before, after), g)
        q.cmd("quit")
        code, s, err = src.wait(timeout=60)
        tap.eq(code, 0, "the source exits 0", err)


def test_races():
    """A reset and a quit while pages are being sent."""
    name = "system_reset while migrating"
    errors = [(0x500000, "ao", None), (0xb00000, "ar", 1)]
    with Case(name) as case:
        src = case.vm("--backend", "anon", "--paused", *FAIL_ARGS)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        poison(q, errors)
        path = os.path.join(src.dir, "mig.sock")
        dst = case.vm("--backend", "anon", "--incoming", "unix:" + path, *FAIL_ARGS)
        wait_path(path, dst.proc)
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})
        tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}}, name + ": migrate")
        m = wait_transferred(q, 12 << 20)
        tap.eq(m["ram"]["poisoned-pages"], 2, name + ": both bad pages went as poisoned "
               "before the reset")
        tap.eq(q.cmd("system_reset"), {"return": {}}, name + ": system_reset mid-stream")
        tap.eq(bad_pages(q), [], name + ": the source's memory is back")
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 0})
        d = wait_migration(q)
        m = q.cmd("query-migrate")["return"]
        tap.eq(d["status"], "completed", name + ": migration completed", m)
        finish_source(name, q, src)
        qd = dst.qmp()
        tap.eq(bad_pages(qd), [], name + ": the destination has no bad page either")
        tap.ok(not any(reads_poisoned(qd, g) for g, _, _ in errors),
               name + ": the pages sent as poisoned before the reset read again")
        passes = both_passes(qd)
        passes = both_passes(qd)
        g = qd.cmd("query-guest")["return"]
        tap.ok(g["pages-corrupted"] == 0 and not g["retired"],
               name + ": the rebooted guest runs on the destination with 0 corrupted, "
               "nothing retired (passes %s)" % passes, g)
        qd.cmd("quit")
        code, _, err = dst.wait(timeout=60)
        tap.eq(code, 0, name + ": destination exits 0", err)


    name = "quit while migrating"
    with Case(name) as case:
        src = case.vm("--backend", "anon", "--paused", *FAIL_ARGS)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q)
        path = os.path.join(src.dir, "mig.sock")
        dst = case.vm("--backend", "anon", "--incoming", "unix:" + path, *FAIL_ARGS, control=False)
        wait_path(path, dst.proc)
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})
        tap.eq(q.cmd("migrate", uri="unix:" + path), {"return": {}}, name + ": migrate")
        wait_transferred(q, 4 << 20)
        q.cmd("quit")
        code, _, err = src.wait(timeout=60)
        tap.eq(code, 0, name + ": the source quits at once, exit 0", err)
        code, _, err = dst.wait(timeout=60)
        tap.ok(code != 0 and one_line(err) and "before its end" in err,
               name + ": the destination refuses the cut stream with one line: "
               + err.strip(), err)


class HoldingProxy:
    """Between source and destination (unix): forwards the stream, holds
    the destination's answers until release() (or cut())."""

    def __init__(self, lpath, dpath):
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(lpath)
        self.ls.listen(1)
        self.dpath = dpath
        self.held = b""
        self.answered = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.s, _ = self.ls.accept()
        self.d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.d.connect(self.dpath)
        threading.Thread(target=self._forward, daemon=True).start()
        while True:
            try:
                b = self.d.recv(65536)
            except OSError:
                break
            if not b:
                break
            self.held += b
            self.answered.set()

    def _forward(self):
        while True:
            try:
                b = self.s.recv(65536)
                if not b:
                    break
                self.d.sendall(b)
            except OSError:
                break
        try:
            self.d.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        for x in (self.s, self.d, self.ls):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()


def test_handover():
    """The guest never runs in two places: a destination that has said
    "ready" runs only on the source's "go"; a cancel or a cut before it
    leaves the guest running on the source alone."""
    for mode in ("cancel", "cut"):
        name = "after the destination's ready, a " + mode
        with Case(name) as case:
            src = case.vm("--backend", "anon", "--paused", *FAIL_ARGS)
            q = src.qmp()
            q.cmd("cont")
            both_passes(q)
            dpath = os.path.join(src.dir, "dst.sock")
            ppath = os.path.join(src.dir, "proxy.sock")
            dst = case.vm("--backend", "anon", "--incoming", "unix:" + dpath, *FAIL_ARGS)
            wait_path(dpath, dst.proc)
            p = HoldingProxy(ppath, dpath)
            tap.eq(q.cmd("migrate", uri="unix:" + ppath), {"return": {}}, name + ": migrate")
            tap.ok(p.answered.wait(120), name + ": the destination said ready (held back)")
            if mode == "cancel":
                q.cmd("migrate_cancel")
            else:
                p.cut()
            d = wait_migration(q, timeout=120)
            want = "cancelled" if mode == "cancel" else "failed"
            tap.eq(d["status"], want, name + ": migration " + want, d)
            if mode == "cancel":
                p.cut()
            source_runs_on(name, q)
            code, _, err = dst.wait(timeout=60)
            tap.ok(code != 0 and one_line(err) and "did not hand the guest over" in err,
                   name + ": the destination exits without running it: " + err.strip(), err)
            before = both_passes(q)
            after = both_passes(q)
            tap.ok(after > before, name + ": the source guest runs on")
            q.cmd("quit")
            src.wait(timeout=60)

    name = "a destination still waiting"
    with Case(name) as case:
        path = os.path.join(tempfile.mkdtemp(prefix="vmras-test-"), "mig.sock")
        dst = case.vm("--backend", "anon", "--incoming", "unix:" + path, *FAIL_ARGS)
        wait_path(path, dst.proc)
        qd = dst.qmp()
        tap.eq(qd.cmd("query-status")["return"]["status"], "inmigrate",
               name + ": query-status says inmigrate")
        for cmd, args in (("cont", {}), ("system_reset", {}),
                          ("inject-memory-error", {"gpa": 0x500000, "type": "ao"}),
                          ("migrate", {"uri": "unix:" + path + ".out"})):
            r = qd.cmd(cmd, **args)
            tap.ok("error" in r, name + ": %s is refused while the guest arrives" % cmd, r)
        qd.cmd("quit")
        code, _, err = dst.wait(timeout=30)
        tap.ok(code != 0 and one_line(err) and "arriving" in err,
               name + ": quit ends it at once, non-zero, one line: " + err.strip(), err)



# Under the sanitizers (CI sets VMRAS_TEST_QUICK=1) the threads' cases run
# on 16 MiB guests: errors while sending, failures, races and the handover;
# the 64 MiB moves, transports and file formats are the plain build's.
QUICK = os.environ.get("VMRAS_TEST_QUICK") == "1"


def main():
    if QUICK:
        for t in (vmtest.with_hugepages(2048, 2 * 8 + 4, "errors while sending, hugetlb-2m",
                                        test_errors_while_sending),
                  test_failures, test_races, test_handover):
            tap.run(t)
        tap.done()
    for t in (test_unix_anon,
              vmtest.with_hugepages(2048, 2 * 32 + 4, "tcp between two namespaces, hugetlb-2m",
                                    test_tcp_two_hosts),
              vmtest.with_hugepages(2048, 2 * 8 + 4, "errors while sending, hugetlb-2m",
                                    test_errors_while_sending),
              test_queued_machine_checks, test_snapshot, test_failures, test_races,
              test_handover):
        tap.run(t)
    tap.done()


if __name__ == "__main__":
    main()
