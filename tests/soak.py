#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The soak: two guests (anon and hugetlb-2m memory) run for MINUTES while a
driver throws random AO and AR memory errors at them (ARs on every vCPU,
inside huge pages and outside), resets them, opens QMP clients that vanish
mid-command, starts migrations it cancels and moves each guest to a new VMM
process and back. Every CHECK seconds it checks:

  - the guest: 0 corrupted pages, and every error injected since its last
    reset retired by the guest within NAMED_S seconds;
  - the counters: nothing dropped, lost, refused or undeliverable;
  - the VMM process: open fds, threads, RSS and mappings, measured each
    time a reset has rebooted the guest (nothing poisoned, every split
    huge page whole again: the same state each time). A process warms up
    for WARM_S seconds; after that its fds and threads may not grow at
    all from one reset to the next, its RSS by RSS_SLACK_KIB and its
    mappings by MAPS_SLACK at most (hugetlb RAM: plus 1 per huge page, see
    HUGE_PAGES). (Between resets they grow with the
    bad pages, by design: a split huge page is 4 KiB pages in a memfd.)

    tests/soak.py VMRAS MINUTES [SUMMARY_FILE]

Prints one line per check and a final verdict; exit 0 when nothing was
wrong. With SUMMARY_FILE, "1 0 0" or "0 1 0" is appended (.ci/run's
count)."""
import json
import os
import random
import socket
import sys
import time

import vmtest
from vmtest import VM, guest_report, wait_path

PAGE = 4096
HUGE = 2 << 20
MEM_MIB = 16
VCPUS = 2
DATA_START = vmtest.layout("GL_DATA_START")
SLICE = ((MEM_MIB << 20) - DATA_START) // VCPUS
CHECK_S = 5
NAMED_S = 30          # an error the guest has not retired after this is lost
WARM_S = 45           # a process's first seconds (at most a tenth of the run): pools fill
RSS_SLACK_KIB = 4096
MAPS_SLACK = 4
# A huge page split and later restored (at a reset) is mapped from the RAM
# file again at its offset, with the same flags, but as a VMA of its own:
# the kernel merges no VMA whose vm_ops has a close method, and hugetlb's
# has. So hugetlb RAM's mappings grow once, by up to 1 per huge page, to a
# plateau (68 -> 74 for the 6 huge pages of this 16 MiB guest's data, in
# a 30-minute run). More than that is growth.
HUGE_PAGES = (MEM_MIB << 20) // HUGE
# Under ASan (scripts/soak --sanitize) the VMMs run without ASan's
# quarantine, so that freed memory is reused and RSS means something, with
# four times the slack for its allocator's caches; its allocator maps a
# region for each size class the first time one is used (+14 mappings in a
# process's first minute, measured), so mappings get 64. LeakSanitizer
# checks each VMM at its exit (a leak is a non-zero exit and a report on
# stderr). The strict bounds are the plain build's.
SANITIZED = bool(os.environ.get("VMRAS_SOAK_SANITIZED"))
if SANITIZED:
    os.environ["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=0") if x)
    RSS_SLACK_KIB *= 4
    MAPS_SLACK = 64
# What a VMM may say on stderr that means the soak went wrong.
BAD_STDERR = ("cut off", "refused", "Sanitizer", "runtime error")
MAX_BAD_PAGES = 48    # then the guest is reset (memory comes back)
BAD_COUNTERS = ("dropped", "reports-lost", "fill-errors", "contain-failed",
                "mce-undeliverable", "splits-refused", "uffd-unrouted",
                "record-dropped", "record-errors", "log-errors")


def proc_stats(pid):
    """fds, threads, RSS (KiB), mappings of a process."""
    fds = len(os.listdir("/proc/%d/fd" % pid))
    threads = rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open("/proc/%d/maps" % pid) as f:
        maps = sum(1 for _ in f)
    return {"fds": fds, "threads": threads, "rss": rss, "maps": maps}


class Guest:
    """One lineage: a guest and the VMM process it currently runs in."""

    def __init__(self, backend, rng, log):
        self.backend, self.rng, self.log = backend, rng, log
        self.name = backend
        self.counts = {k: 0 for k in ("ao", "ar", "resets", "clients", "migrations",
                                      "cancelled", "checks")}
        self.problems = []
        self.procs = []       # per process: its samples after warm-up
        self.attempts = 0
        self.vm = None
        self.start(None)

    # ---- processes -----------------------------------------------------

    def args(self):
        return ("--backend", self.backend, "--vcpus", str(VCPUS), "--mem", "%dM" % MEM_MIB,
                "--passes", "1000000", "--no-record")

    def start(self, incoming):
        extra = ("--incoming", incoming) if incoming else ()
        self.vm = VM(*self.args(), *extra)
        self.born = time.time()
        self.err_seen = 0
        self.procs.append({"pid": self.vm.proc.pid, "warm": None, "last": None,
                           "compared": 0})
        if not incoming:
            self.q = self.vm.qmp()
            self.injected = {}   # gpa -> time, since the last reset
            self.bad = 0

    def compare_if_due(self):
        """A warm process that has a baseline but no comparison yet gets one
        (before it is replaced, at the end): every process is measured."""
        p = self.procs[-1]
        if p["warm"] is not None and not p["compared"]:
            self.reset()

    def migrate(self, cancel=False):
        """Move the guest to a new process (or start moving it and cancel)."""
        if not cancel:
            self.compare_if_due()
        self.attempts += 1
        path = os.path.join(self.vm.dir, "mig-%d.sock" % self.attempts)
        old_vm, old_q = self.vm, self.q
        dst = VM(*self.args(), "--incoming", "unix:" + path)
        try:
            wait_path(path, dst.proc)
            r = old_q.cmd("migrate", uri="unix:" + path)
            if r != {"return": {}}:
                self.problem("migrate refused: %s" % r)
                return
            if cancel:
                old_q.cmd("migrate_cancel")
            d = old_q.wait_event(lambda e: e["event"] == "MIGRATION" and e["data"]["status"]
                                 in ("completed", "failed", "cancelled"), timeout=300)["data"]
        except Exception:
            dst.kill()
            raise
        if d["status"] != "completed":
            # It ends by itself (the stream it waited for failed): its verdict counts.
            try:
                dst.proc.wait(timeout=60)
            except Exception:  # noqa: BLE001
                pass
            said = [w for w in BAD_STDERR[2:] if w in dst.stderr()]
            dst.kill()
            if said:
                self.problem("the destination of a cancelled migration said %s: %s"
                             % (said, dst.stderr().strip()[-300:]))
            if not cancel:
                self.problem("migration ended %s" % d)
                return False
            else:
                self.counts["cancelled"] += 1
                if old_q.cmd("query-status")["return"]["status"] == "paused":
                    old_q.cmd("cont")
            return
        old_q.cmd("quit")
        code, _, err = old_vm.wait(timeout=60)
        old_vm.kill()
        if code != 0:
            self.problem("the source exited %s: %s" % (code, err.strip()[-300:]))
        self.vm = dst
        self.born = time.time()
        self.err_seen = 0
        self.procs.append({"pid": dst.proc.pid, "warm": None, "last": None,
                           "compared": 0})
        self.q = dst.qmp()
        if self.q.cmd("query-status")["return"]["status"] == "paused":
            self.q.cmd("cont")
        self.counts["migrations"] += 1
        return True

    # ---- actions -------------------------------------------------------

    def problem(self, what):
        self.problems.append("%s: %s" % (self.name, what))
        self.log("PROBLEM %s: %s" % (self.name, what))

    def inject(self):
        while True:
            gpa = DATA_START + self.rng.randrange((MEM_MIB << 20) - DATA_START) // PAGE * PAGE
            if gpa not in self.injected:
                break
        if self.rng.random() < 0.5:
            args = {"gpa": gpa, "type": "ao"}
            self.counts["ao"] += 1
        else:
            args = {"gpa": gpa, "type": "ar", "vcpu": (gpa - DATA_START) // SLICE}
            self.counts["ar"] += 1
        r = self.q.cmd("inject-memory-error", **args)
        if r != {"return": {}}:
            self.problem("inject %s: %s" % (args, r))
            return
        self.injected[gpa] = time.time()

    def reset(self):
        """system_reset; once both vCPUs started again (nothing poisoned, every
        split undone), the process is where it was after the last reset:
        that is where growth is measured."""
        self.q.cmd("system_reset")
        self.q.wait_event(lambda e: e["event"] == "RESET", timeout=60)
        for v in range(VCPUS):
            self.q.wait_event(guest_report("started", vcpu=v), timeout=120)
        self.q.events.clear()
        self.injected = {}
        self.counts["resets"] += 1
        st = proc_stats(self.vm.proc.pid)
        p = self.procs[-1]
        p["last"] = st
        if time.time() - self.born < WARM_S:
            return
        if p["warm"] is None:
            p["warm"] = st
            return
        w, grew = p["warm"], []
        p["compared"] += 1
        maps_slack = MAPS_SLACK + (HUGE_PAGES if self.backend.startswith("hugetlb") else 0)
        for k, slack in (("fds", 0), ("threads", 0), ("rss", RSS_SLACK_KIB),
                         ("maps", maps_slack)):
            if st[k] > w[k] + slack:
                grew.append("%s %d -> %d" % (k, w[k], st[k]))
        if grew:
            self.problem("pid %d grew between resets: %s" % (self.vm.proc.pid,
                                                             ", ".join(grew)))

    def vanishing_client(self):
        """A client that connects and goes: before the greeting, mid-message,
        after a command it does not wait for."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.vm.sock)
        how = self.rng.randrange(4)
        if how >= 1:
            s.sendall(b'{"execute": "qmp_capabilities"}\n')
        if how == 2:
            s.sendall(b'{"execute": "query-gu')
        if how == 3:
            s.sendall(b'{"execute": "query-memory-errors"}\n{"execute": "query-guest"}\n')
        s.close()
        self.counts["clients"] += 1

    def step(self):
        r = self.rng.random()
        # A warm process without a baseline gets one now: short runs compare too.
        first = self.procs[-1]["warm"] is None and time.time() - self.born >= WARM_S
        if first or len(self.injected) >= MAX_BAD_PAGES or r < 0.01:
            self.reset()
        elif r < 0.6:
            self.inject()
        else:
            self.vanishing_client()
        self.q.events.clear()

    # ---- checks --------------------------------------------------------

    def check(self):
        now = time.time()
        g = self.q.cmd("query-guest")["return"]
        c = self.q.cmd("query-memory-errors")["return"]["counters"]
        retired = {r["gpa"] for r in g["retired"]}
        late = [hex(a) for a, t in self.injected.items()
                if a not in retired and now - t > NAMED_S]
        if g["pages-corrupted"]:
            self.problem("%d pages corrupted" % g["pages-corrupted"])
        if late:
            self.problem("injected but not retired after %d s: %s" % (NAMED_S, late[:8]))
        bad = {k: c.get(k) for k in BAD_COUNTERS if c.get(k)}
        if bad:
            self.problem("counters: %s" % bad)
        err = self.vm.stderr()
        said = [w for w in BAD_STDERR if w in err[self.err_seen:]]
        if said:
            self.problem("the VMM said %s: %s" % (said, err[self.err_seen:].strip()[-300:]))
        self.err_seen = len(err)
        st = proc_stats(self.vm.proc.pid)
        self.counts["checks"] += 1
        return "%s pid %d: boot %d, %d retired, %d corrupted; fds %d threads %d " \
               "RSS %d KiB maps %d" % (self.name, self.vm.proc.pid, g["boot-count"],
                                       len(retired), g["pages-corrupted"], st["fds"],
                                       st["threads"], st["rss"], st["maps"])

    def stop(self):
        if self.vm:
            try:
                self.q.cmd("quit")
                code, s, err = self.vm.wait(timeout=60)
                if code != 0:
                    self.problem("exit %s: %s" % (code, err.strip()[-300:]))
            finally:
                self.vm.kill()


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    vmtest.VMRAS = sys.argv[1]
    minutes = float(sys.argv[2])
    global WARM_S
    WARM_S = min(WARM_S, minutes * 6)
    summary = sys.argv[3] if len(sys.argv) > 3 else None
    seed = int(os.environ.get("VMRAS_SOAK_SEED", int(time.time())))
    rng = random.Random(seed)
    t0 = time.time()

    def log(msg):
        print("soak %6.1fs: %s" % (time.time() - t0, msg), flush=True)

    log("%.1f minutes, seed %d (VMRAS_SOAK_SEED repeats it)" % (minutes, seed))
    end = t0 + minutes * 60
    guests = []
    ok = False
    # Two guests, and a migration destination beside one of them.
    with vmtest.hugepages(2048, 3 * (MEM_MIB // 2 + 1) + 2) as why:
        if why:
            log("SKIP hugetlb-2m: %s" % why)
            backends = ["anon"]
        else:
            backends = ["anon", "hugetlb-2m"]
        try:
            guests = [Guest(b, rng, log) for b in backends]
            for g in guests:
                g.q.wait_event(guest_report("pass-done", vcpu=0), timeout=300)
            # Moves: a cancelled one and a full one in each third of the run.
            moves = sorted(t0 + (end - t0) * f for f in (0.3, 0.6, 0.85))
            cancels = sorted(t0 + (end - t0) * f for f in (0.2, 0.5))
            next_check = time.time() + CHECK_S
            while time.time() < end:
                for g in guests:
                    g.step()
                if cancels and time.time() >= cancels[0]:
                    cancels.pop(0)
                    for g in guests:
                        g.migrate(cancel=True)
                if moves and time.time() >= moves[0]:
                    moves.pop(0)
                    for g in guests:
                        if g.migrate():
                            log("%s moved to pid %d" % (g.name, g.vm.proc.pid))
                if time.time() >= next_check:
                    next_check = time.time() + CHECK_S
                    for g in guests:
                        log(g.check())
                time.sleep(rng.uniform(0.05, 0.4))
            for g in guests:
                g.compare_if_due()
                log(g.check())
            ok = True
        except Exception as e:  # noqa: BLE001 - a hang or crash is the soak's failure
            for g in guests:
                g.problems.append("%s: %s: %s; VMM stderr: %s" % (
                    g.name, type(e).__name__, e, g.vm.stderr().strip()[-400:]))
        finally:
            for g in guests:
                try:
                    g.stop()
                except Exception as e:  # noqa: BLE001
                    g.problems.append("%s: stop: %s" % (g.name, e))
    for g in guests:
        if ok and not any(p["compared"] for p in g.procs):
            g.problems.append("%s: no process lived long enough to be compared after "
                              "warming up (run longer)" % g.name)
    problems = [p for g in guests for p in g.problems]
    for g in guests:
        growth = []
        for p in g.procs:
            if p["warm"] and p["last"]:
                w, l = p["warm"], p["last"]
                growth.append("pid %d (%d resets compared): fds %d%+d threads %d%+d RSS "
                              "%d%+d KiB maps %d%+d"
                              % (p["pid"], p["compared"], w["fds"], l["fds"] - w["fds"],
                                 w["threads"], l["threads"] - w["threads"], w["rss"],
                                 l["rss"] - w["rss"], w["maps"], l["maps"] - w["maps"]))
        log("%s: %s; after resets, first warm -> last: %s" % (
            g.name, json.dumps(g.counts), "; ".join(growth) or "no warm process"))
    ok = ok and not problems and bool(guests)
    log("%s: %.1f minutes, %d problems%s" % ("PASS" if ok else "FAIL", (time.time() - t0) / 60,
                                              len(problems),
                                              "".join("\n  " + p for p in problems[:20])))
    if summary:
        with open(summary, "a") as f:
            f.write("1 0 0\n" if ok else "0 1 0\n")
    return 0 if ok else 1


sys.exit(main())
