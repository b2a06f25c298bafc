#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Post-copy live migration with poison (issue 11): a 2-vCPU 64 MiB guest
that lost 4 KiB pages (one inside a 2 MiB huge page) switches to
post-copy early, most of its RAM not yet sent, between two network
namespaces over TCP (anon and hugetlb-2m). On the destination it runs on
while its pages arrive: every page verified in every later pass (0
corrupted), the bad pages poisoned there (never data, never zeros), a
bad page inside a huge page costs 4 KiB. A connection cut during
post-copy (16 MiB guests) pauses both sides (nothing made up: the guest
waits for what it lacks); migrate-recover plus migrate resume carry on
to the end; migrate-pause pauses too, and a quit then ends both sides."""
import json
import os
import socket
import sys
import threading
import time

import netns
import tap
import vmtest
from vmtest import Case, bad_pages, guest_report, wait_path

vmtest.VMRAS = sys.argv[1]
PAGE = 4096

class Guest:
    """A test guest's size and the pages it loses (one per vCPU's range)."""

    def __init__(self, mib, errors):
        self.mib = mib
        self.pages = (mib << 20) // PAGE
        self.errors = errors
        self.args = ("--vcpus", "2", "--mem", "%dM" % mib, "--passes", "100000",
                     "--seed", "7")
        self.switch_after = (mib << 20) // 10  # pre-copy sends a tenth, then the switch


# 64 MiB: vCPU 0 owns 0x400000-0x2200000, vCPU 1 0x2200000-0x4000000: the moves.
BIG = Guest(64, [(0x1a45000, "ao", None), (0x3123000, "ar", 1)])
# 16 MiB: vCPU 0 0x400000-0xa00000, vCPU 1 0xa00000-0x1000000: pauses and recovery.
SMALL = Guest(16, [(0x600000, "ao", None), (0xc23000, "ar", 1)])
# Slow pre-copy, so that the switch comes with most of RAM not yet sent.
PRECOPY_BANDWIDTH = 8 << 20


def both_passes(q, timeout=120):
    return [q.wait_event(guest_report("pass-done", vcpu=v), timeout=timeout)["data"]["pass"]
            for v in (0, 1)]


def reads_poisoned(q, gpa):
    r = q.cmd("x-read-guest-memory", gpa=gpa, size=8)
    return "error" in r and "hardware error" in json.dumps(r["error"])


def wait_status(q, statuses, timeout=120):
    return q.wait_event(lambda e: e["event"] == "MIGRATION" and
                        e["data"]["status"] in statuses, timeout=timeout)["data"]


def wait_transferred(q, nbytes, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        m = q.cmd("query-migrate")["return"]
        if m.get("status") not in ("setup", "active"):
            raise RuntimeError("migration left pre-copy early: %r" % m)
        if m["ram"]["transferred"] >= nbytes:
            return m
        time.sleep(0.02)
    raise RuntimeError("pre-copy sent less than %d bytes in %d s" % (nbytes, timeout))


def poisoned_source(case, name, backend, guest, prefix=()):
    src = case.vm("--backend", backend, "--paused", *guest.args, prefix=prefix)
    q = src.qmp()
    q.cmd("cont")
    both_passes(q)
    vmtest.poison(q, guest.errors, True)
    before = both_passes(q)
    tap.eq(bad_pages(q), sorted((g, PAGE) for g, _, _ in guest.errors),
           name + ": the source lost exactly 2 x 4 KiB")
    return src, q, before


def start_postcopy(name, q, uri, guest):
    """Pre-copy at a crawl, then the switch with most of RAM not sent."""
    tap.eq(q.cmd("migrate-set-capabilities",
                 capabilities=[{"capability": "postcopy-ram", "state": True}]),
           {"return": {}}, name + ": postcopy-ram enabled")
    tap.eq(q.cmd("query-migrate-capabilities")["return"],
           [{"capability": "postcopy-ram", "state": True}],
           name + ": query-migrate-capabilities says so")
    q.cmd("migrate-set-parameters", **{"max-bandwidth": PRECOPY_BANDWIDTH})
    tap.eq(q.cmd("migrate", uri=uri), {"return": {}}, name + ": migrate accepted")
    m = wait_transferred(q, guest.switch_after)
    tap.eq(q.cmd("migrate-start-postcopy"), {"return": {}}, name + ": migrate-start-postcopy")
    d = wait_status(q, ("postcopy-active", "failed", "cancelled"))
    tap.eq(d["status"], "postcopy-active", name + ": the source says postcopy-active", d)
    return m


def check_destination(name, qd, before, guest):
    """Runs while pages arrive; later passes verify; bad pages poisoned."""
    after = both_passes(qd)
    m = qd.cmd("query-migrate")["return"]
    lazy = m.get("lazy", {})
    tap.ok(lazy.get("pages-total", 0) == guest.pages and lazy.get("faulted", 0) > 0,
           name + ": the destination ran before its RAM was here (%d pages faulted in)"
           % lazy.get("faulted", 0), m)
    after = both_passes(qd)
    tap.ok(min(after) > min(before), name + ": the guest goes on (passes %s -> %s)"
           % (before, after))
    d = wait_status(qd, ("completed", "postcopy-paused"), timeout=180) \
        if qd.cmd("query-migrate")["return"].get("status") != "completed" \
        else {"status": "completed"}
    tap.eq(d["status"], "completed", name + ": every page arrived (destination completed)", d)
    after = both_passes(qd)
    g = qd.cmd("query-guest")["return"]
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted on the destination")
    m = qd.cmd("query-migrate")["return"]
    tap.ok(m["lazy"]["complete"] and m["lazy"]["pages-present"] == guest.pages,
           name + ": all %d pages here" % guest.pages, m["lazy"])
    tap.eq(bad_pages(qd), sorted((g_, PAGE) for g_, _, _ in guest.errors),
           name + ": the destination lost exactly the source's 2 x 4 KiB, no more")
    tap.ok(all(reads_poisoned(qd, gpa) for gpa, _, _ in guest.errors),
           name + ": each reads as poisoned there, not as data or zeros")
    tap.diag("%s: destination %s" % (name, json.dumps(m)))
    return m


def finish(name, q, src, qd, dst):
    d = wait_status(q, ("completed", "failed"), timeout=180) \
        if q.cmd("query-migrate")["return"]["status"] != "completed" else {"status": "completed"}
    m = q.cmd("query-migrate")["return"]
    tap.eq(d["status"], "completed", name + ": the source completed", m)
    tap.ok(m["ram"]["postcopy-requests"] > 0, name + ": it served %d page requests"
           % m["ram"]["postcopy-requests"], m)
    tap.diag("%s: source %s" % (name, json.dumps(m)))
    q.cmd("quit")
    src.wait(timeout=60)
    qd.cmd("quit")
    code, _, err = dst.wait(timeout=60)
    tap.eq(code, 0, name + ": destination exits 0", err)


def live(name, backend, hosts=None):
    with Case(name) as case:
        pre = hosts.src.prefix if hosts else ()
        src, q, before = poisoned_source(case, name, backend, BIG, pre)
        if hosts:
            uri = "tcp:%s:%d" % (hosts.dst.addr, 4445)
        else:
            uri = "unix:" + os.path.join(src.dir, "pc.sock")
        dst = case.vm("--backend", backend, "--incoming", uri, *BIG.args,
                      prefix=hosts.dst.prefix if hosts else ())
        if hosts:
            time.sleep(0.5)
        else:
            wait_path(uri[5:], dst.proc)
        at_switch = start_postcopy(name, q, uri, BIG)
        tap.ok(at_switch["ram"]["transferred"] < 32 << 20,
               name + ": the switch came with most of RAM not sent (%d MiB of 64 sent)"
               % (at_switch["ram"]["transferred"] >> 20))
        qd = dst.qmp()
        check_destination(name, qd, before, BIG)
        finish(name, q, src, qd, dst)


def tcp_two_hosts(backend):
    name = "post-copy over tcp between two namespaces, " + backend
    why = netns.unavailable()
    if why:
        tap.skip(name, why)
        return
    with netns.TwoHosts() as h:
        live(name, backend, hosts=h)


def test_tcp_anon():
    tcp_two_hosts("anon")


def test_tcp_hugetlb():
    tcp_two_hosts("hugetlb-2m")


class CuttingProxy:
    """Between source and destination (unix): forwards both ways until cut()."""

    def __init__(self, lpath, dpath):
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(lpath)
        self.ls.listen(1)
        self.dpath = dpath
        self.socks = []
        threading.Thread(target=self._run, daemon=True).start()

    def _pump(self, a, b):
        while True:
            try:
                x = a.recv(1 << 16)
                if not x:
                    break
                b.sendall(x)
            except OSError:
                break
        # One side closed: the other hears of it, as over a direct connection.
        self.cut()

    def _run(self):
        s, _ = self.ls.accept()
        d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        d.connect(self.dpath)
        self.socks = [s, d, self.ls]
        threading.Thread(target=self._pump, args=(s, d), daemon=True).start()
        threading.Thread(target=self._pump, args=(d, s), daemon=True).start()

    def cut(self):
        for x in self.socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def cut_during_postcopy(case, name, backend, how="cut"):
    """Post-copy through a proxy that is cut at once (or a migrate-pause on
    the destination): both sides paused."""
    src, q, before = poisoned_source(case, name, backend, SMALL)
    dpath = os.path.join(src.dir, "dst.sock")
    ppath = os.path.join(src.dir, "proxy.sock")
    dst = case.vm("--backend", backend, "--incoming", "unix:" + dpath, *SMALL.args)
    wait_path(dpath, dst.proc)
    p = CuttingProxy(ppath, dpath)
    qd = dst.qmp()
    # The rest at a crawl: the cut comes while most pages are missing.
    q.cmd("migrate-set-parameters", **{"max-postcopy-bandwidth": 2 << 20})
    start_postcopy(name, q, "unix:" + ppath, SMALL)
    wait_status(qd, ("postcopy-active",))
    time.sleep(0.3)
    if how == "cut":
        p.cut()
    else:
        tap.eq(qd.cmd("migrate-pause"), {"return": {}}, name + ": migrate-pause")
    ds = wait_status(q, ("postcopy-paused", "completed", "failed"))
    tap.eq(ds["status"], "postcopy-paused", name + ": the source pauses", ds)
    dd = wait_status(qd, ("postcopy-paused", "completed"))
    tap.eq(dd["status"], "postcopy-paused", name + ": the destination pauses", dd)
    m1 = qd.cmd("query-migrate")["return"]
    tap.ok(not m1["lazy"]["complete"], name + ": pages were still missing at the cut "
           "(%d of %d here)" % (m1["lazy"]["pages-present"], SMALL.pages), m1["lazy"])
    time.sleep(1)
    m2 = qd.cmd("query-migrate")["return"]
    tap.eq(m2["lazy"]["pages-present"], m1["lazy"]["pages-present"],
           name + ": while paused no page appears from nowhere")
    tap.ok("error" in qd.cmd("system_reset"), name + ": a reset waits for the memory")
    return src, q, dst, qd, before


def test_cut_and_recover():
    """The connection dies during post-copy: both sides pause, the guest
    waits for its missing pages (none made up), the recovery completes."""
    name = "post-copy cut and recovered, anon"
    with Case(name) as case:
        src, q, dst, qd, before = cut_during_postcopy(case, name, "anon")
        # A recovery nobody connects to can be given up.
        tap.eq(qd.cmd("migrate-recover", uri="unix:" + os.path.join(src.dir, "nobody.sock")),
               {"return": {}}, name + ": migrate-recover on a URI no source will use")
        wait_status(qd, ("postcopy-recover",))
        tap.eq(qd.cmd("migrate-pause"), {"return": {}},
               name + ": migrate-pause gives the waiting recovery up")
        end = time.time() + 30
        while time.time() < end and \
                qd.cmd("query-migrate")["return"]["status"] != "postcopy-paused":
            time.sleep(0.05)
        tap.eq(qd.cmd("query-migrate")["return"]["status"], "postcopy-paused",
               name + ": the destination is paused again")
        rpath = os.path.join(src.dir, "recover.sock")
        q.cmd("migrate-set-parameters", **{"max-postcopy-bandwidth": 0})
        tap.eq(qd.cmd("migrate-recover", uri="unix:" + rpath), {"return": {}},
               name + ": migrate-recover on the destination")
        wait_path(rpath, dst.proc)
        tap.eq(q.cmd("migrate", uri="unix:" + rpath, resume=True), {"return": {}},
               name + ": migrate resume on the source")
        check_destination(name, qd, before, SMALL)
        finish(name, q, src, qd, dst)


def test_quit_while_paused():
    """migrate-pause on the destination pauses both sides; neither hangs on
    a quit then (the destination's vCPUs wait for pages that never come)."""
    name = "post-copy paused by migrate-pause, then quit"
    with Case(name) as case:
        src, q, dst, qd, _ = cut_during_postcopy(case, name, "anon", how="pause")
        qd.cmd("quit")
        code, _, err = dst.wait(timeout=60)
        tap.eq(code, 0, name + ": the destination quits, exit 0", err)
        q.cmd("quit")
        code, _, err = src.wait(timeout=60)
        tap.eq(code, 0, name + ": the source quits, exit 0", err)


# Under the sanitizers (CI sets VMRAS_TEST_QUICK=1) the threads' cases run:
# the cut, the recovery and the quit; the moves between two namespaces are
# the plain build's.
QUICK = os.environ.get("VMRAS_TEST_QUICK") == "1"


def main():
    tests = [test_cut_and_recover, test_quit_while_paused]
    if not QUICK:
        tests += [test_tcp_anon,
                  vmtest.with_hugepages(2048, 2 * 32 + 4, "post-copy over tcp between two "
                                        "namespaces, hugetlb-2m", test_tcp_hugetlb)]
    for t in tests:
        tap.run(t)
    tap.done()


if __name__ == "__main__":
    main()
