#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""`vmras migrate` and the demo's migration act: a running 2-vCPU 32 MiB
guest with a poisoned page moves through the command over a unix socket
(exit 0, one summary line, progress lines on a non-tty stderr, the
destination's registry holds the page); a destination that refuses, a bad
control socket and bad options each exit non-zero with one line; Ctrl-C
cancels and exits 130 with the guest running on at the source; --detach
returns once the migration is accepted; `vmras demo` moves its poisoned
guest to a new process and says what it lost there."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import tap
import vmtest
from vmtest import VM, bad_pages, guest_report, wait_path

vmtest.VMRAS = sys.argv[1]
PAGE = 4096
BAD = 0x600000  # in vCPU 0's slice of a 32 MiB guest
COMMON = ("--vcpus", "2", "--mem", "32M", "--passes", "100000", "--seed", "3")


def migrate(*args, timeout=120):
    """`vmras migrate ARGS`: (exit code, stdout, stderr)."""
    p = subprocess.run([vmtest.VMRAS, "migrate", *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def lines(text):
    return [l for l in text.splitlines() if l.strip()]


def running_source(*args):
    """A source VM whose guest runs, and a QMP connection to it."""
    src = VM("--paused", *COMMON, *args)
    q = src.qmp()
    q.cmd("cont")
    q.wait_event(guest_report("pass-done", vcpu=0), timeout=120)
    return src, q


def test_migrate():
    name = "migrate over unix"
    src = dst = None
    try:
        src, q = running_source()
        r = q.cmd("inject-memory-error", gpa=BAD, type="ao")
        tap.eq(r, {"return": {}}, name + ": page 0x%x poisoned on the source" % BAD)
        q.wait_event(guest_report("retired", gpa=BAD), timeout=120)
        path = os.path.join(src.dir, "mig.sock")
        dst = VM("--incoming", "unix:" + path, *COMMON)
        wait_path(path, dst.proc)
        # 12 MiB/s: 32 MiB take about 3 s, so a non-tty stderr gets progress lines.
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + path,
                                 "--max-bandwidth", "12M", "--downtime-limit", "200")
        tap.diag("stdout: " + out.strip())
        tap.eq(code, 0, name + ": exit 0", err)
        m = re.match(r"vmras migrate: completed in (\d+) ms \(downtime (\d+) ms.*\): (\d+) pages "
                     r"sent \(\d+ data, \d+ zero, (\d+) poisoned\)", out)
        tap.ok(len(lines(out)) == 1 and m, name + ": one summary line (time, downtime, pages, "
               "poisoned)", out)
        tap.ok(m and int(m.group(3)) >= 32 << 20 >> 12 and int(m.group(4)) >= 1,
               name + ": every page sent, the bad one as poisoned", out)
        progress = [l for l in lines(err) if re.match(r"vmras migrate: (setup|active|device) +"
                                                      r"\d+%  [\d.]+ MiB  [\d.]+ MiB/s  dirty "
                                                      r"syncs \d+  poisoned \d+$", l)]
        tap.ok(progress and len(progress) == len(lines(err)),
               name + ": stderr (not a tty) has progress lines, one a second or so", err)
        # One a second: no more lines than the migration took seconds (plus the first and last).
        secs = int(m.group(1)) / 1000 if m else 0
        tap.ok(len(progress) <= secs + 2,
               name + ": not more than about one a second (%d lines in %.1f s)"
               % (len(progress), secs), err)
        p = q.cmd("query-migrate-parameters")
        tap.ok(p.get("return", {}).get("max-bandwidth") == 12 << 20 and
               p["return"].get("downtime-limit") == 200,
               name + ": --max-bandwidth and --downtime-limit were set", p)
        st = q.cmd("query-status")["return"]["status"]
        tap.ok(st != "running", name + ": the source no longer runs the guest (%s)" % st)
        qd = dst.qmp()
        tap.eq(bad_pages(qd), [(BAD, PAGE)],
               name + ": the destination's query-memory-errors lists the page")
        qd.wait_event(guest_report("pass-done"), timeout=120)
        tap.eq(qd.cmd("query-guest")["return"]["pages-corrupted"], 0,
               name + ": the guest runs on at the destination, 0 corrupted")
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + path)
        tap.ok(code == 1 and len(lines(err)) == 1 and "moved" in err and not out,
               name + ": a second migrate of the moved guest: exit 1, one line: " + err.strip(),
               (code, out, err))
        qd.cmd("quit")
        q.cmd("quit")
        tap.eq(dst.wait(timeout=60)[0], 0, name + ": the destination exits 0")
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name + ": " + repr(e),
               (src.stderr() if src else "") + (dst.stderr() if dst else ""))
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def test_failures():
    src = dst = None
    try:
        src, q = running_source()
        name = "a destination of another size"
        path = os.path.join(src.dir, "refuses.sock")
        dst = VM("--incoming", "unix:" + path, "--vcpus", "2", "--mem", "64M", "--passes",
                 "100000", "--seed", "3", control=False)
        wait_path(path, dst.proc)
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + path)
        tap.ok(code not in (0, 2) and len(lines(err)) == 1 and not out and
               err.startswith("vmras migrate: migration failed: ") and "32 MiB" in err and
               "64 MiB" in err, name + ": exit %d, one line: %s" % (code, err.strip()),
               (code, out, err))
        tap.eq(q.cmd("query-status")["return"]["status"], "running",
               name + ": the source guest runs on")
        dst.wait(timeout=60)

        name = "a bad --control path"
        bad = os.path.join(src.dir, "no-such.sock")
        code, out, err = migrate("--control", bad, "--to", "unix:" + path)
        tap.ok(code != 0 and len(lines(err)) == 1 and bad in err and
               "No such file" in err and not out,
               name + ": exit %d, one line: %s" % (code, err.strip()), (code, out, err))

        name = "a bad URI"
        code, out, err = migrate("--control", src.sock, "--to", "bogus:x")
        tap.ok(code == 1 and len(lines(err)) == 1 and "bogus:x" in err,
               name + ": exit 1, one line: " + err.strip(), (code, out, err))

        name = "nobody listening"
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + bad)
        tap.ok(code == 1 and len(lines(err)) == 1 and
               err.startswith("vmras migrate: migration failed: "),
               name + ": exit 1, one line: " + err.strip(), (code, out, err))

        for args, what in ((("--to", "unix:" + path), "no --control"),
                           (("--control", src.sock), "no --to"),
                           (("--control", src.sock, "--to", "unix:" + path,
                             "--max-bandwidth", "lots"), "a bad --max-bandwidth"),
                           (("--control", src.sock, "--to", "unix:" + path,
                             "--downtime-limit", "-1"), "a bad --downtime-limit")):
            code, out, err = migrate(*args)
            tap.ok(code == 2 and len(lines(err)) == 1,
                   what + ": usage error, exit 2, one line: " + err.strip(), (code, out, err))
        name = "a downtime-limit the VM refuses"
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + path,
                                 "--downtime-limit", "99999999")
        tap.ok(code == 1 and len(lines(err)) == 1 and "migrate-set-parameters" in err,
               name + ": exit 1, one line: " + err.strip(), (code, out, err))
        tap.eq(q.cmd("query-guest")["return"]["pages-corrupted"], 0,
               "after the failures the source guest runs on with 0 corrupted")
        q.cmd("quit")
        tap.eq(src.wait(timeout=60)[0], 0, "the source exits 0")
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "failures: " + repr(e),
               (src.stderr() if src else "") + (dst.stderr() if dst else ""))
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def silent_peer(path):
    """A destination that accepts and never reads: the migration hangs."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)
    held = []

    def serve():
        c, _ = ls.accept()
        held.append(c)
        ls.close()
    threading.Thread(target=serve, daemon=True).start()
    return held


def wait_status(q, statuses, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        m = q.cmd("query-migrate")["return"]
        if m.get("status") in statuses:
            return m
        time.sleep(0.05)
    raise RuntimeError("migration not %s within %d s: %r" % (statuses, timeout, m))


def test_interrupt_and_detach():
    src = None
    held = []
    try:
        src, q = running_source()
        name = "Ctrl-C"
        path = os.path.join(src.dir, "silent.sock")
        held = silent_peer(path)
        p = subprocess.Popen([vmtest.VMRAS, "migrate", "--control", src.sock,
                              "--to", "unix:" + path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        wait_status(q, ("active",))
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        tap.eq(p.returncode, 130, name + ": exit 130", err)
        tap.ok("cancelled" in lines(err)[-1] if lines(err) else False,
               name + ": says it cancelled: " + (lines(err) or [""])[-1], err)
        m = q.cmd("query-migrate")["return"]
        tap.eq(m["status"], "cancelled", name + ": the VM's migration was cancelled", m)
        tap.eq(q.cmd("query-status")["return"]["status"], "running",
               name + ": the source guest runs on")
        for c in held:
            c.close()

        name = "--detach"
        path = os.path.join(src.dir, "silent2.sock")
        held = silent_peer(path)
        t0 = time.time()
        code, out, err = migrate("--control", src.sock, "--to", "unix:" + path, "--detach")
        tap.ok(code == 0 and not out and not err and time.time() - t0 < 10,
               name + ": exit 0 at once, nothing printed", (code, out, err))
        m = q.cmd("query-migrate")["return"]
        tap.ok(m["status"] in ("setup", "active"), name + ": the migration goes on (%s)"
               % m["status"], m)
        q.cmd("migrate_cancel")
        wait_status(q, ("cancelled",))
        q.cmd("quit")
        src.wait(timeout=60)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "interrupt and detach: " + repr(e), src.stderr() if src else "")
    finally:
        for c in held:
            c.close()
        if src:
            src.kill()


def test_demo():
    name = "demo"
    # The guest's 32 MiB and as much for the process it moves to; without
    # them the demo runs on anonymous memory (and says so).
    with vmtest.hugepages(2048, 2 * 16 + 4) as why:
        if why:
            tap.diag("demo on anonymous memory: " + why)
        p = subprocess.run([vmtest.VMRAS, "demo"], capture_output=True, text=True, timeout=600)
    out = p.stdout
    tap.eq(p.returncode, 0, name + ": exit 0", out + p.stderr)
    tap.eq(p.stderr, "", name + ": nothing on stderr")
    moved = re.search(r"^  moved:   to a new process \(pid (\d+)\) while running: [\d.]+ MiB in "
                      r"\d+ ms, stopped \d+ ms; (\d+) pages sent as poisoned$", out, re.M)
    tap.ok(moved and int(moved.group(2)) >= 2, name + ": the move, its pages sent as poisoned",
           out)
    tap.ok(re.search(r"^  there:   lost GPA 0x600000 and GPA 0x1300000, 4 KiB each: 8 KiB of "
                     r"32 MiB \(", out, re.M),
           name + ": the destination lost just the two 4 KiB pages", out)
    checked = re.search(r"^  there:   the guest went on: (\d+) more page verifications, "
                        r"0 corrupted", out, re.M)
    tap.ok(checked and int(checked.group(1)) > 0,
           name + ": the guest went on checking there, 0 corrupted", out)
    tap.ok("Can't migrate this vm with hardware poisoned memory" in out,
           name + ": QEMU's refusal is quoted", out)
    tap.ok(re.search(r"^  result:  PASS", out, re.M), name + ": result PASS", out)
    tap.ok(re.search(r"^  host:  .*from sigbus", out, re.M) and
           not re.search(r"^  host:  .*mc-safe-copy", out, re.M),
           name + ": act 1's host lines are its own errors, not the move's reads", out)
    if moved:
        pid = int(moved.group(1))
        try:
            os.kill(pid, 0)
            gone = False
        except ProcessLookupError:
            gone = True
        tap.ok(gone, name + ": the destination process is gone")


def main():
    tests = [test_migrate, test_failures, test_interrupt_and_detach, test_demo]
    # Under the sanitizers (CI's VMRAS_TEST_QUICK=1) the demo, which drives
    # the same migration code in one more way, is the plain build's.
    if os.environ.get("VMRAS_TEST_QUICK") == "1":
        tests.remove(test_demo)
    for t in tests:
        tap.run(t)
    tap.done()


if __name__ == "__main__":
    main()
