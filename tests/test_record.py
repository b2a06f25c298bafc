#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The durable record (issue 14), against real VMs and real tools:
- a guest on 2 MiB pages takes an AO and an AR: `vmras errors --json` gives
  each bad 4 KiB page with its whole history (split, reported, contained,
  notified), `--summary` the bytes lost and what QEMU would have lost, the
  table and the filters agree, QMP query-memory-error-stats the same
  numbers as `vmras metrics`;
- Debian's promtool accepts `vmras metrics`; a real Prometheus server
  scrapes `vmras exporter` and answers a query with the right value; the
  exporter answers 404/405/400 to what it does not serve;
- two VMMs record bursts into one database at once: nothing lost, no
  write error, no "locked" on stderr;
- SIGKILL at random moments of a burst (and of huge page splits): the
  database passes integrity_check and holds every event the event log
  (written only after the record) shows;
- a corrupt, locked, read-only or newer-schema database: one line, the
  guest runs to its end, the stats say recording is off."""
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import tap
import vmtest
from vmtest import VM

vmtest.VMRAS = sys.argv[1]
QUICK = os.environ.get("VMRAS_TEST_QUICK") == "1"
# Under the sanitizers (CI sets VMRAS_TEST_QUICK=1) fewer kills and a
# smaller burst; the plain build runs the 20 and 1,000.
KILLS = 3 if QUICK else 20
BURST = 200 if QUICK else 1000
PAGE = 4096
AO_GPA, AR_GPA = 0x603000, 0xa05000   # vCPU 0's and vCPU 1's slices of 32 MiB, two huge pages


def vmras(*args, timeout=60):
    p = subprocess.run([vmtest.VMRAS, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_rows(path, sql, *args):
    with sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10) as c:
        return c.execute(sql, args).fetchall()


def test_history(work):
    """AO and AR on hugetlb: each page's history, the summary, the metrics."""
    db = os.path.join(work, "one.db")
    with vmtest.hugepages(2048, 20) as why:
        if why:
            tap.skip("history: an AO and an AR on 2 MiB pages", why)
            return None
        code, s, err = vmtest.run("--backend", "hugetlb-2m", "--vcpus", "2", "--mem", "32M",
                                  "--passes", "3", "--inject", "ao:%#x" % AO_GPA,
                                  "--inject", "ar:%#x" % AR_GPA,
                                  "--inject", "ao:%#x@2" % AO_GPA, "--record", db,
                                  "--name", "history")
    if not tap.ok(code == 0 and s and s["result"] == "pass" and s["guest"]["pages-corrupted"] == 0,
                  "history: the guest runs to its end, checks pass, 0 corrupted", err[-300:]):
        return None
    code, out, err = vmras("errors", "--record", db, "--json")
    if not tap.eq(code, 0, "history: vmras errors --json exits 0", err):
        return None
    j = json.loads(out)
    tap.eq(sorted((e["kind"], e["gpa"], e["lost"], e["page-size"], e["action"])
                  for e in j["errors"]),
           [("ao", AO_GPA, 0, 2 << 20, "ignore"), ("ao", AO_GPA, PAGE, 2 << 20, "inject"),
            ("ar", AR_GPA, PAGE, 2 << 20, "inject")],
           "history: two errors, each 4 KiB lost on a 2 MiB page, the guest told; the repeat "
           "costs nothing")
    ranges = {r["gpa"]: r for r in j["ranges"]}
    tap.eq(sorted(ranges), [AO_GPA, AR_GPA], "history: the two bad 4 KiB pages are listed")
    for gpa in (AO_GPA, AR_GPA):
        r = ranges.get(gpa, {"history": [], "size": 0})
        changes = [h["change"] for h in r["history"]]
        tap.eq(r["size"], PAGE, "history: %#x is one 4 KiB page" % gpa)
        tap.ok(all(c in changes for c in ("split", "reported", "contained", "notified")),
               "history: %#x: its huge page split, then reported, contained, notified" % gpa,
               repr(changes))
        tap.ok(changes.index("split") < changes.index("notified") if "split" in changes and
               "notified" in changes else False,
               "history: %#x: split before the guest was told" % gpa, repr(changes))
    code, out, err = vmras("errors", "--record", db, "--summary", "--json")
    summ = json.loads(out) if code == 0 else {}
    tap.eq(summ.get("vms"), [{"vm": "history", "errors": 3, "bytes-lost": 2 * PAGE,
                              "qemu-bytes-lost": 2 * (2 << 20), "splits": 2}],
           "summary: 3 outcomes, 8 KiB lost where QEMU would have lost 4 MiB, 2 splits", err)
    code, out, err = vmras("errors", "--record", db, "--kind", "ar")
    tap.ok(code == 0 and "%#x" % AR_GPA in out and "%#x" % AO_GPA not in out and
           out.strip().endswith("1 error"), "errors --kind ar: the table shows the AR alone",
           out + err)
    code, out, err = vmras("errors", "--record", db, "--json", "--since", "2000-01-01",
                           "--until", "2000-01-02")
    tap.ok(code == 0 and json.loads(out)["errors"] == [], "errors --since/--until: a day "
           "without errors lists none", err)
    code, out, err = vmras("errors", "--record", db, "--since", "yesterday")
    tap.ok(code == 2 and len(err.strip().splitlines()) == 1, "errors --since yesterday: one line,"
           " exit 2", err)
    return db


def test_reader_without_write_access(db):
    """After the writer is gone, a user who cannot write the directory reads."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        tap.skip("a reader without write access", "needs root and setpriv to become nobody")
        return
    os.chmod(os.path.dirname(db), 0o755)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        vmtest.VMRAS, "errors", "--record", db, "--summary"],
                       capture_output=True, text=True, timeout=60)
    tap.ok(p.returncode == 0 and "history" in p.stdout, "a reader without write access to the "
           "record's directory (nobody) reads it after the VMM exited", p.stdout + p.stderr)


def test_order(work):
    """With the record, a report still comes before the reset or stop it asks for."""
    bad = []
    for i, policy in enumerate(("reset", "fatal") * (1 if QUICK else 3)):
        vm = VM("--paused", "--vcpus", "1", "--mem", "16M", "--policy", "ao=" + policy,
                "--record", os.path.join(work, "order.db"))
        try:
            q = vm.qmp()
            q.cmd("inject-memory-error", gpa=0x600000 + i * PAGE, type="ao")
            seen = []
            try:
                q.wait_event(lambda e: seen.append(e["event"]) or
                             e["event"] in ("RESET", "SHUTDOWN"), timeout=30)
            except (OSError, EOFError, RuntimeError, TimeoutError) as e:
                seen.append("(%s)" % e.__class__.__name__)
            if "MEMORY_FAILURE" not in seen or ("RESET" in seen and
                                                seen.index("MEMORY_FAILURE") > seen.index("RESET")):
                bad.append("%s: %s" % (policy, seen))
        finally:
            vm.kill()
    tap.ok(not bad, "policy reset/fatal with the record: MEMORY_FAILURE comes first, every time",
           "; ".join(bad))


def test_metrics(db):
    code, text, err = vmras("metrics", "--record", db)
    if not tap.eq(code, 0, "metrics: exit 0", err):
        return
    want = ['vmras_memory_errors_total{vm="history",kind="ao",source="sigbus",action="inject"} 1',
            'vmras_memory_errors_total{vm="history",kind="ao",source="sigbus",action="ignore"} 1',
            'vmras_memory_errors_total{vm="history",kind="ar",source="sigbus",action="inject"} 1',
            'vmras_memory_lost_bytes_total{vm="history"} 8192',
            'vmras_memory_qemu_lost_bytes_total{vm="history"} 4194304',
            'vmras_huge_page_splits_total{vm="history"} 2',
            'vmras_record_write_errors_total{vm="history"} 0']
    tap.ok(all(w in text.splitlines() for w in want), "metrics: the run's errors, bytes, "
           "splits and no write errors", text)
    promtool = shutil.which("promtool")
    if not promtool:
        tap.skip("metrics: promtool check metrics", "no promtool (Debian's prometheus package)")
    else:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        tap.ok(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
               "metrics: promtool check metrics accepts them", p.stdout + p.stderr)
    scrape(db)


def http(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                return data.decode(errors="replace")
            data += b


def scrape(db):
    """The exporter under a real Prometheus server."""
    port = free_port()
    ex = subprocess.Popen([vmtest.VMRAS, "exporter", "--listen", "127.0.0.1:%d" % port,
                           "--record", db], stderr=subprocess.PIPE, text=True)
    work = tempfile.mkdtemp(prefix="vmras-prom-")
    prom = None
    try:
        end = time.time() + 20
        while True:
            try:
                body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                break
            except OSError:
                if time.time() > end or ex.poll() is not None:
                    tap.ok(False, "exporter: listens", ex.stderr.read() if ex.poll() else "")
                    return
                time.sleep(0.1)
        tap.ok(body.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in body and
               'vmras_memory_lost_bytes_total{vm="history"} 8192' in body,
               "exporter: GET /metrics is 200, the exposition format, the numbers", body[:300])
        tap.ok(http(port, b"GET /nothing HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 404") and
               http(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 405") and
               http(port, b"GARBAGE\r\n\r\n").startswith("HTTP/1.1 400"),
               "exporter: 404 for another path, 405 for POST, 400 for garbage")
        server = shutil.which("prometheus")
        if not server or QUICK:
            tap.skip("exporter: a Prometheus server scrapes it", "no prometheus binary"
                     if not server else "under the sanitizers: the plain build's run checks "
                     "Prometheus's side")
            return
        pport = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vmras\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
        prom = subprocess.Popen([server, "--config.file=" + os.path.join(work, "prometheus.yml"),
                                 "--storage.tsdb.path=" + os.path.join(work, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % pport],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        query = ("http://127.0.0.1:%d/api/v1/query?query=" % pport +
                 "sum(vmras_memory_errors_total%7Bvm%3D%22history%22%7D)")
        got, end = None, time.time() + 90
        while time.time() < end and got is None:
            time.sleep(1)
            try:
                r = json.load(urllib.request.urlopen(query, timeout=5))
                if r["data"]["result"]:
                    got = r["data"]["result"][0]["value"][1]
            except (OSError, ValueError, KeyError):
                pass
        tap.eq(got, "3", "prometheus: scraped the exporter; sum(vmras_memory_errors_total"
               "{vm=\"history\"}) is 3")
    finally:
        for p in (prom, ex):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        tap.eq(ex.returncode, 0, "exporter: SIGTERM ends it, exit 0")
        shutil.rmtree(work, ignore_errors=True)


def burst(q, base, n, stop=None):
    """n AO errors on consecutive pages from base; stops early on stop or a
    dead VMM. Returns how many were accepted."""
    done = 0
    for i in range(n):
        if stop and stop.is_set():
            break
        try:
            r = q.cmd("inject-memory-error", gpa=base + i * PAGE, type="ao")
        except (OSError, ValueError, RuntimeError, EOFError):
            break
        if r != {"return": {}}:
            break
        done += 1
    return done


BURST_ARGS = ("--paused", "--no-shutdown", "--vcpus", "2", "--mem", "32M",
              "--policy", "ao=ignore")


def test_two_writers(work):
    db = os.path.join(work, "shared.db")
    n = 100 if QUICK else BURST // 2
    vms = [VM(*BURST_ARGS, "--record", db, "--name", "writer%d" % i) for i in range(2)]
    try:
        qs = [vm.qmp() for vm in vms]
        counts = [0, 0]

        def go(i):
            counts[i] = burst(qs[i], 0x1000000, n)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        # A reader while both write: WAL readers do not wait for writers.
        reads = []
        while any(t.is_alive() for t in ts):
            reads.append(vmras("errors", "--record", db, "--summary")[0])
        for t in ts:
            t.join()
        tap.ok(reads and all(c == 0 for c in reads), "two writers: vmras errors --summary reads "
               "the database while they write (%d reads)" % len(reads), repr(reads[:20]))
        tap.eq(counts, [n, n], "two writers: each VMM took %d errors at once" % n)
        stats = [q.cmd("query-memory-error-stats")["return"] for q in qs]
        for q in qs:
            q.cmd("quit")
            q.close()
        for vm in vms:
            vm.wait(timeout=60)
        for i, vm in enumerate(vms):
            rows = db_rows(db, "SELECT count(*) FROM events e JOIN vms v ON v.id = e.vm_id "
                           "WHERE v.name = ?", "writer%d" % i)
            tap.eq(rows[0][0], n, "two writers: every one of writer%d's %d outcomes is "
                   "recorded" % (i, n))
            tap.ok(stats[i]["recording"] and stats[i]["record-write-errors"] == 0 and
                   stats[i]["record-dropped"] == 0 and stats[i]["errors-total"] == n,
                   "two writers: writer%d's stats: recording, %d errors, 0 write errors, "
                   "0 dropped" % (i, n), repr(stats[i]))
            tap.ok("locked" not in vm.stderr() and "recording off" not in vm.stderr(),
                   "two writers: writer%d said nothing about the database" % i, vm.stderr())
        code, text, err = vmras("metrics", "--record", db)
        for i in range(2):
            total = sum(int(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                        if l.startswith('vmras_memory_errors_total{vm="writer%d"' % i))
            lost = [l for l in text.splitlines()
                    if l.startswith('vmras_memory_lost_bytes_total{vm="writer%d"}' % i)]
            tap.ok(code == 0 and total == stats[i]["errors-total"] and
                   lost == ['vmras_memory_lost_bytes_total{vm="writer%d"} %d' %
                            (i, stats[i]["bytes-lost"])],
                   "two writers: metrics and QMP query-memory-error-stats agree for writer%d "
                   "(%d errors, %d bytes lost)" % (i, total, stats[i]["bytes-lost"]), text + err)
    finally:
        for vm in vms:
            vm.kill()


def logged_lines(log):
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def kill_during(work, i, backend):
    """A burst (on 2 MiB pages: splits), SIGKILL at a random moment."""
    db = os.path.join(work, "kill%d.db" % i)
    log = os.path.join(work, "kill%d.log" % i)
    args = BURST_ARGS if backend == "anon" else BURST_ARGS + ("--backend", backend)
    vm = VM(*args, "--record", db, "--event-log", log)
    stop = threading.Event()
    try:
        q = vm.qmp()
        # On huge pages each error splits a page of its own: 2 MiB apart.
        step = PAGE if backend == "anon" else 2 << 20
        t = threading.Thread(target=lambda: [burst(q, 0x1000000 + k * step, 1)
                                             for k in range(BURST if step == PAGE else 8)
                                             if not stop.is_set()])
        t.start()
        # Mid-burst: once a random number of outcomes has been reported.
        n = BURST if step == PAGE else 8
        target, end = random.randint(1, n - 1), time.time() + 60
        while t.is_alive() and time.time() < end and logged_lines(log) < target:
            time.sleep(0.002)
        vm.proc.kill()
        vm.proc.wait()
        stop.set()
        t.join(timeout=30)
    finally:
        vm.kill()
    logged = set()
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                if line.endswith("\n"):
                    logged.add(json.loads(line)["gpa"])
    try:
        ok = db_rows(db, "PRAGMA integrity_check") == [("ok",)]
        recorded = {r[0] for r in db_rows(db, "SELECT gpa FROM events")}
    except sqlite3.Error as e:
        return False, 0, str(e)
    missing = logged - recorded
    return ok and not missing, len(logged), "integrity %s, %d logged, %d missing" % (
        ok, len(logged), len(missing))


def test_kills(work):
    fails, seen = [], 0
    for i in range(KILLS):
        good, n, why = kill_during(work, i, "anon")
        seen += n
        if not good:
            fails.append("anon %d: %s" % (i, why))
    tap.ok(not fails, "SIGKILL during a %d-error burst, %d times: integrity_check ok, every "
           "logged event recorded (%d logged in all)" % (BURST, KILLS, seen), "; ".join(fails))

    def splits():
        fails, seen = [], 0
        for i in range(KILLS):
            good, n, why = kill_during(work, 100 + i, "hugetlb-2m")
            seen += n
            if not good:
                fails.append("hugetlb %d: %s" % (i, why))
        tap.ok(not fails, "SIGKILL during huge page splits, %d times: integrity_check ok, every "
               "logged event recorded (%d logged in all)" % (KILLS, seen), "; ".join(fails))
    vmtest.with_hugepages(2048, 20, "SIGKILL during splits", splits)()


def bad_db_case(name, db, want, log):
    """The VMM runs on with recording off and says why in one line."""
    code, s, err = vmtest.run("--vcpus", "2", "--mem", "32M", "--passes", "2",
                              "--inject", "ao:%#x" % AO_GPA, "--record", db,
                              "--event-log", log, timeout=300)
    lines = [l for l in err.splitlines() if "record" in l]
    tap.ok(code == 0 and s and s["result"] == "pass" and s["guest"]["pages-corrupted"] == 0,
           "%s database: the guest runs to its end, checks pass, 0 corrupted" % name, err[-300:])
    tap.ok(len(lines) == 1 and "recording off" in lines[0] and want in lines[0],
           "%s database: one line says recording is off and why" % name, err[-400:])
    with open(log) as f:
        tap.eq(len(f.readlines()), 1, "%s database: the error is still reported" % name)


def test_bad_databases(work):
    corrupt = os.path.join(work, "corrupt.db")
    with open(corrupt, "wb") as f:
        f.write(os.urandom(8192))
    bad_db_case("corrupt", corrupt, "not a database", os.path.join(work, "corrupt.log"))
    code, _, err = vmras("errors", "--record", corrupt)
    tap.ok(code == 2 and len(err.strip().splitlines()) == 1,
           "corrupt database: vmras errors says so in one line, exit 2", err)

    newer = os.path.join(work, "newer.db")
    with sqlite3.connect(newer) as c:
        c.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.execute("INSERT INTO meta VALUES('schema_version', '99')")
    bad_db_case("newer-schema", newer, "newer", os.path.join(work, "newer-schema.log"))
    tap.eq(db_rows(newer, "SELECT value FROM meta"), [("99",)],
           "newer-schema database: left as it was")

    locked = os.path.join(work, "locked.db")
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("CREATE TABLE x(y)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        bad_db_case("locked", locked, "locked", os.path.join(work, "locked.log"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    ro = os.path.join(work, "ro")
    os.mkdir(ro)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", ro],
                      capture_output=True).returncode:
        tap.skip("read-only database", "cannot mount a tmpfs (not root?)")
        return
    try:
        path = os.path.join(ro, "ro.db")
        c = sqlite3.connect(path)
        c.execute("CREATE TABLE x(y)")
        c.commit()
        c.close()
        subprocess.run(["mount", "-o", "remount,ro", ro], check=True)
        bad_db_case("read-only", path, "readonly", os.path.join(work, "read-only.log"))
    finally:
        subprocess.run(["umount", ro], capture_output=True)


def main():
    work = tempfile.mkdtemp(prefix="vmras-record-")
    os.chmod(work, 0o755)
    try:
        got = []
        tap.run(lambda: got.append(test_history(work)))
        if got and got[0]:
            tap.run(test_metrics, got[0])
            tap.run(test_reader_without_write_access, got[0])
        tap.run(test_order, work)
        tap.run(test_two_writers, work)
        tap.run(test_kills, work)
        tap.run(test_bad_databases, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tap.done()


if __name__ == "__main__":
    sys.exit(main())
