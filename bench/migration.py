#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration throughput against the raw throughput of the same transport,
measured in the same run (these machines are shared and noisy), and the
downtime of a running guest (issue 10).

    bench/migration.py VMRAS [--quick] [--tcp-raw PATH]

Transports: TCP between two network namespaces joined by a veth pair
(tests/netns.py; needs root) and a unix socket on one host. For each, best
of 3, the runs of the two interleaved:

  raw        bench/tcp_raw sends the guest's RAM size (256 MiB) from the
             side the guest is on to the other (its time runs from
             connect(2) until the receiver has read everything);
  migration  a 2-vCPU anon guest that ran 2 passes over all its pages (so
             each holds data), stopped with QMP `stop` (its RAM is fixed),
             migrates to `vmras run --incoming` on the other side:
             query-migrate's ram.transferred / total-time (and normal-bytes
             / total-time: the guest's page data alone).

The guest boots once: each migration's destination, which keeps the
stopped guest and all its data, is the next one's source (the old source
quits), so the migrations go back and forth between the namespaces and the
raw transfer goes the same way each time. One line per transport: raw MB/s,
migration MB/s, their ratio and whether it reaches the goal of 0.7, and
the CPU time both ends took (getrusage of tcp_raw's two processes, the two
VMs' processes from /proc/PID/stat; tick-sampled): on a busy host, where
the migration's time goes.

Then the downtime of a running (not stopped) 64 MiB 2-vCPU guest, after 2
passes, migrated over TCP between the namespaces (unix without root) with
the default downtime limit; between runs it does a pass on its new host
(with 0 pages corrupted). Median of 3: query-migrate's downtime,
total-time, dirty-sync-count, iterations and transferred. MB = 10^6 bytes.

--quick: one run of each, a 64 MiB guest. --tcp-raw: the tcp_raw binary
(default: bench/tcp_raw in VMRAS's build tree). Exit 0 with the figures (a
ratio below the goal is a figure, not a failure); on an error, one line on
stderr and exit 1. Every VM is quit or killed whatever happens.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import netns  # noqa: E402
import vmtest  # noqa: E402
from vmtest import VM, guest_report  # noqa: E402

GOAL = 0.7
PASS_TIMEOUT = 600  # one pass of 256 MiB where KVM emulates the guest: ~2 min
MIGRATE_TIMEOUT = 300
DOWNTIME_MEM = "64M"
DOWNTIME_FIELDS = (("downtime", " ms"), ("total-time", " ms"), ("dirty-sync-count", ""),
                   ("iterations", ""), ("transferred", " bytes"))


class BenchError(Exception):
    pass


def mem_bytes(mem):
    return int(mem[:-1]) << {"M": 20, "G": 30}[mem[-1]]


def last_line(text):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else ""


class Place:
    """Where a process runs: a network namespace (addr: its address) or the host."""

    def __init__(self, name, prefix=(), addr=None):
        self.name, self.prefix, self.addr = name, tuple(prefix), addr


class Transport:
    """How two places meet: tcp (to the receiver's address) or unix (a path)."""

    def __init__(self, name, kind, tmpdir):
        self.name, self.kind, self.dir = name, kind, tmpdir
        self.n = 0

    def endpoint(self, there):
        """(uri, port or socket path) for a fresh connection to place there."""
        self.n += 1
        if self.kind == "tcp":
            port = 4700 + self.n
            return "tcp:%s:%d" % (there.addr, port), port
        path = os.path.join(self.dir, "%s%d.sock" % (self.kind, self.n))
        return "unix:" + path, path

    def raw_args(self, there, ep, nbytes):
        if self.kind == "tcp":
            return ["recv", str(ep)], ["send", there.addr, str(ep), str(nbytes)]
        return ["unix", "recv", ep], ["unix", "send", ep, str(nbytes)]

    def listening(self, pid, ep):
        if self.kind == "unix":
            return os.path.exists(ep)
        # /proc/PID/net is the network namespace of PID.
        for f in ("tcp", "tcp6"):
            try:
                with open("/proc/%d/net/%s" % (pid, f)) as fh:
                    for line in list(fh)[1:]:
                        cols = line.split()
                        if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == ep:
                            return True
            except OSError:
                pass
        return False


def raw_once(tcp_raw, t, here, there, nbytes):
    """tcp_raw from place here to place there over t: (MB/s, CPU s of both ends)."""
    uri, ep = t.endpoint(there)
    recv_args, send_args = t.raw_args(there, ep, nbytes)
    rp = subprocess.Popen([*there.prefix, tcp_raw, *recv_args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    pat = r"tcp_raw: %s (\d+) bytes in ([0-9.]+) s: .* cpu user ([0-9.]+) s sys ([0-9.]+) s"
    try:
        line = rp.stdout.readline()
        if line.strip() != "tcp_raw: listening":
            rp.kill()
            _, err = rp.communicate(timeout=30)
            raise BenchError("raw %s: tcp_raw recv did not listen: %s"
                             % (t.name, last_line(err) or line.strip() or "no output"))
        sp = subprocess.run([*here.prefix, tcp_raw, *send_args], capture_output=True,
                            text=True, timeout=300)
        if sp.returncode:
            raise BenchError("raw %s: tcp_raw send: %s" % (t.name, last_line(sp.stderr)))
        out, err = rp.communicate(timeout=60)
        if rp.returncode:
            raise BenchError("raw %s: tcp_raw recv: %s" % (t.name, last_line(err)))
        s = re.match(pat % "send", sp.stdout)
        r = re.match(pat % "recv", out)
        if not s or not r or int(s.group(1)) != nbytes or float(s.group(2)) <= 0:
            raise BenchError("raw %s: tcp_raw said %r and %r"
                             % (t.name, sp.stdout.strip(), out.strip()))
        cpu = sum(float(m.group(k)) for m in (s, r) for k in (3, 4))
        return nbytes / float(s.group(2)) / 1e6, cpu
    finally:
        if rp.poll() is None:
            rp.kill()
            rp.wait()


def cpu_s(vm):
    """CPU seconds (user + system) of a VM's process so far."""
    with open("/proc/%d/stat" % vm.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ok(r, what):
    if r != {"return": {}}:
        raise BenchError("%s: %s" % (what, r.get("error", r)))


class Guest:
    """The one guest of a series and the VMs it lives in: the current one
    (vm, place, q) and any other still alive, all killed by close()."""

    def __init__(self, mem):
        self.mem = mem
        self.vm = self.q = self.place = None
        self.alive = []

    def args(self):
        return ("--backend", "anon", "--vcpus", "2", "--mem", self.mem, "--passes", "100000",
                "--seed", "7")

    def start(self, place, *extra):
        vm = VM(*self.args(), *extra, prefix=place.prefix)
        self.alive.append(vm)
        return vm

    def boot(self, place, passes):
        """Boot on place, run passes passes on each vCPU."""
        self.vm, self.place = self.start(place, "--paused"), place
        self.q = self.vm.qmp()
        ok(self.q.cmd("cont"), "cont")
        self.wait_passes(passes)

    def wait_passes(self, n):
        """Wait until each of the 2 vCPUs has reported n more passes done."""
        done = {0: 0, 1: 0}
        end = time.time() + PASS_TIMEOUT * n
        while min(done.values()) < n:
            ev = self.q.wait_event(guest_report("pass-done"), timeout=max(1, end - time.time()))
            done[ev["data"]["vcpu"]] = done.get(ev["data"]["vcpu"], 0) + 1

    def quit(self, vm):
        """quit over QMP and wait; kill whatever is left."""
        try:
            q = vm.qmp(timeout=10)
            q.cmd("quit")
            q.close()
            vm.wait(timeout=30)
        except Exception:  # noqa: BLE001 - killed below anyway
            pass
        vm.kill()
        shutil.rmtree(vm.dir, ignore_errors=True)
        self.alive.remove(vm)

    def migrate(self, t, there):
        """Move the guest to a new VM on place there over t: query-migrate's
        answer, and in "cpu" the CPU seconds both VMs' processes took."""
        uri, ep = t.endpoint(there)
        dst = self.start(there, "--incoming", uri)
        end = time.time() + 30
        while not t.listening(dst.proc.pid, ep):
            if dst.proc.poll() is not None:
                raise BenchError("the destination exited: " + last_line(dst.stderr()))
            if time.time() > end:
                raise BenchError("the destination did not listen on %s within 30 s" % uri)
            time.sleep(0.01)
        cpu0 = cpu_s(self.vm) + cpu_s(dst)
        ok(self.q.cmd("migrate", uri=uri), "migrate")
        d = self.q.wait_event(lambda e: e["event"] == "MIGRATION" and
                              e["data"]["status"] in ("completed", "failed", "cancelled"),
                              timeout=MIGRATE_TIMEOUT)["data"]
        m = self.q.cmd("query-migrate")["return"]
        m["cpu"] = cpu_s(self.vm) + cpu_s(dst) - cpu0
        if d["status"] != "completed":
            raise BenchError("migration %s: %s" % (d["status"], m.get("error-desc", m)))
        if not m.get("total-time"):
            raise BenchError("query-migrate gives no total-time: %r" % m)
        self.q.close()
        self.quit(self.vm)
        self.vm, self.place, self.q = dst, there, dst.qmp()
        return m

    def said(self):
        """What the VMMs alive said last on stderr, for an error line."""
        return "; ".join("%s said: %s" % (os.path.basename(vm.dir), last_line(vm.stderr()))
                         for vm in self.alive if last_line(vm.stderr()))

    def close(self):
        for vm in list(self.alive):
            vm.kill()
            shutil.rmtree(vm.dir, ignore_errors=True)
        self.alive = []


def series(what, g, body):
    """body(), errors as one BenchError line with what the VMMs said; g closed after."""
    try:
        return body()
    except BenchError as e:
        said = g.said()
        raise BenchError("%s: %s%s" % (what, e, "; " + said if said else ""))
    except Exception as e:  # noqa: BLE001 - one line whatever it was
        said = g.said()
        raise BenchError("%s: %s: %s%s" % (what, type(e).__name__, e,
                                             "; " + said if said else ""))
    finally:
        g.close()


def other(places, p):
    return places[1 - places.index(p)] if len(places) > 1 else p


def throughput(transports, places, tcp_raw, mem, reps):
    nbytes = mem_bytes(mem)
    res = {t.name: {"raw": [], "mig": [], "normal": [], "rawcpu": [], "migcpu": []}
           for t in transports}
    g = Guest(mem)

    def body():
        g.boot(places[0], 2)
        ok(g.q.cmd("stop"), "stop")
        for i in range(reps):
            for t in transports:
                here, there = g.place, other(places, g.place)
                raw, rawcpu = raw_once(tcp_raw, t, here, there, nbytes)
                m = g.migrate(t, there)
                secs = m["total-time"] / 1000
                r = res[t.name]
                r["raw"].append(raw)
                r["mig"].append(m["ram"]["transferred"] / secs / 1e6)
                r["normal"].append(m["ram"]["normal-bytes"] / secs / 1e6)
                r["rawcpu"].append(rawcpu)
                r["migcpu"].append(m["cpu"])
                print("  %s run %d, %s -> %s: raw %.1f MB/s (cpu %.2f s); migration %d bytes "
                      "(%d normal) in %d ms (setup %d ms, downtime %d ms): %.1f MB/s (cpu "
                      "%.2f s)" % (t.name, i + 1, here.name, there.name, raw, rawcpu,
                                   m["ram"]["transferred"], m["ram"]["normal-bytes"],
                                   m["total-time"], m.get("setup-time", 0),
                                   m.get("downtime", 0), r["mig"][-1], m["cpu"]), flush=True)
    series("migration throughput", g, body)
    for t in transports:
        r = res[t.name]
        best = max(range(reps), key=lambda k: r["mig"][k])
        ratio = r["mig"][best] / max(r["raw"])
        print("migration %s, %s guest stopped, best of %d: raw %.1f MB/s, migration %.1f "
              "MB/s (normal-bytes %.1f MB/s), ratio %.3f: %s the goal of %.1f; cpu of "
              "both ends, median: raw %.2f s, migration %.2f s"
              % (t.name, mem, reps, max(r["raw"]), r["mig"][best], r["normal"][best], ratio,
                 "meets" if ratio >= GOAL else "BELOW", GOAL, statistics.median(r["rawcpu"]),
                 statistics.median(r["migcpu"])), flush=True)


def num(v):
    return "%d" % v if float(v).is_integer() else "%.1f" % v


def downtime(t, places, reps):
    runs = []
    g = Guest(DOWNTIME_MEM)

    def field(m, f):
        return m["ram"][f] if f in m["ram"] else m[f]

    def body():
        g.boot(places[0], 2)
        for i in range(reps):
            if i:
                # It runs on its new host: a pass there, and nothing corrupted.
                g.wait_passes(1)
                bad = g.q.cmd("query-guest")["return"]["pages-corrupted"]
                if bad:
                    raise BenchError("the migrated guest found %d corrupted pages" % bad)
            here, there = g.place, other(places, g.place)
            m = g.migrate(t, there)
            runs.append(m)
            print("  downtime run %d, %s -> %s: %s" % (i + 1, here.name, there.name, ", ".join(
                "%s %s%s" % (f, field(m, f), u) for f, u in DOWNTIME_FIELDS)), flush=True)
    series("migration downtime", g, body)
    try:
        emulated = vmtest.host_emulates_ram_access()
    except Exception:  # noqa: BLE001 - only a note
        emulated = False
    print("migration downtime, running %s 2-vCPU guest, %s, default downtime limit, "
          "median of %d: %s%s" % (DOWNTIME_MEM, t.name, reps, ", ".join(
              "%s %s%s" % (f, num(statistics.median(field(m, f) for m in runs)), u)
              for f, u in DOWNTIME_FIELDS),
              " (KVM emulates the guest's instructions on this host: it dirties its "
              "memory far slower than on hardware)" if emulated else ""), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmras")
    ap.add_argument("--quick", action="store_true", help="one run of each, a 64 MiB guest")
    ap.add_argument("--tcp-raw", help="the tcp_raw binary")
    a = ap.parse_args()
    vmtest.VMRAS = os.path.abspath(a.vmras)
    tcp_raw = os.path.abspath(a.tcp_raw or os.path.join(
        os.path.dirname(vmtest.VMRAS), "..", "..", "bench", "tcp_raw"))
    for what, path in (("vmras", vmtest.VMRAS), ("tcp_raw", tcp_raw)):
        if not os.access(path, os.X_OK):
            raise BenchError("%s: %s is not an executable" % (what, path))
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("migration: skipped: /dev/kvm is not usable here")
        return
    reps, mem = (1, "64M") if a.quick else (3, "256M")
    print("migration: %d host CPUs; %s guest for throughput, %d run%s each" % (
        os.cpu_count(), mem, reps, "" if reps == 1 else "s"), flush=True)
    tmp = tempfile.mkdtemp(prefix="vmras-bench-")
    unix = Transport("unix", "unix", tmp)
    try:
        why = netns.unavailable()
        if why:
            print("migration tcp between two namespaces: skipped: " + why, flush=True)
            places = [Place("host")]
            throughput([unix], places, tcp_raw, mem, reps)
            downtime(unix, places, reps)
            return
        with netns.TwoHosts() as h:
            tcp = Transport("tcp between two namespaces", "tcp", tmp)
            places = [Place("src", h.src.prefix, h.src.addr),
                      Place("dst", h.dst.prefix, h.dst.addr)]
            throughput([tcp, unix], places, tcp_raw, mem, reps)
            downtime(tcp, places, reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        print("migration: %s" % e, file=sys.stderr)
        sys.exit(1)
