# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the VM tests: start `vmras run`, talk QMP to it."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

VMRAS = None

# meson's timeout sends SIGTERM: unwind, so that `finally` kills the VMs and
# gives the reserved huge pages back.
signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(128 + sig))
# Options every `vmras run` of a test module gets (e.g. the guest's CPU
# vendor, for a module that asserts one vendor's machine-check values).
RUN_ARGS = ()


def pattern(page_gpa, gen, seed=1):
    """gl_pattern() of guest/layout.h."""
    m = (1 << 64) - 1
    x = page_gpa ^ ((gen * 0x9e3779b97f4a7c15) & m) ^ seed
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & m
    x ^= x >> 33
    x = (x * 0xc4ceb9fe1a85ec53) & m
    x ^= x >> 33
    return x


SOURCE_ROOT = os.environ.get("VMRAS_SOURCE_ROOT",
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def layout(name):
    """A #define of guest/layout.h (the guest's memory layout), as an int."""
    with open(os.path.join(SOURCE_ROOT, "guest", "layout.h")) as f:
        for line in f:
            m = re.match(r"#define\s+%s\s+(0x[0-9a-fA-F]+|\d+)(ULL|UL|U)?\b" % name, line)
            if m:
                return int(m.group(1), 0)
    raise KeyError("guest/layout.h has no #define %s" % name)


_probe = None


def probe():
    """`vmras probe --json` of this host, run once."""
    global _probe
    if _probe is None:
        p = subprocess.run([VMRAS, "probe", "--json"], capture_output=True, text=True,
                           timeout=60)
        _probe = json.loads(p.stdout)
    return _probe


def host_emulates_ram_access():
    """True when this host's KVM runs guest code in its instruction emulator,
    so that a guest access to an unusable host page of RAM comes back as an
    MMIO exit (source "ram-mmio") instead of SIGBUS or a memory-fault exit."""
    v = probe().get("kvm", {}).get("ram_access_exits_as_mmio")
    if v is None:
        raise RuntimeError("vmras probe --json gives no kvm.ram_access_exits_as_mmio")
    return v


def guest_access_sources():
    """The MEMORY_FAILURE sources a guest's own touch of a bad page may have here."""
    return ("ram-mmio",) if host_emulates_ram_access() else ("sigbus", "kvm-memory-fault")


def _hp_file(kb, what):
    return "/sys/kernel/mm/hugepages/hugepages-%dkB/%s" % (kb, what)


def _hp_read(kb, what):
    with open(_hp_file(kb, what)) as f:
        return int(f.read())


def free_hugepages(kb):
    try:
        return _hp_read(kb, "free_hugepages")
    except OSError:
        return 0


@contextlib.contextmanager
def hugepages(kb, n):
    """At least n free huge pages of kb KiB inside the with block: as root,
    reserve what is missing and give exactly that back afterwards (other
    users of the pool may change it meanwhile). Yields None, or why not."""
    added, why = 0, None
    free = free_hugepages(kb)
    if free < n:
        need = "needs %d free %d KiB huge pages, %d free" % (n, kb, free)
        if not os.path.exists(_hp_file(kb, "nr_hugepages")):
            why = "this kernel has no %d KiB huge pages" % kb
        elif os.geteuid() != 0:
            why = need + ", and only root can reserve more"
        else:
            try:
                total = _hp_read(kb, "nr_hugepages")
                with open(_hp_file(kb, "nr_hugepages"), "w") as f:
                    f.write(str(total + n - free))
                added = max(0, _hp_read(kb, "nr_hugepages") - total)
            except OSError as e:
                why = need + ", and reserving more failed: %s" % e
            if why is None and free_hugepages(kb) < n:
                why = need + ", and the kernel could reserve only %d more" % added
    try:
        yield why
    finally:
        if added:
            with open(_hp_file(kb, "nr_hugepages"), "w") as f:
                f.write(str(max(0, _hp_read(kb, "nr_hugepages") - added)))


class QMP:
    """A QMP client: greeting, negotiation, commands, events."""

    def __init__(self, path, negotiate=True, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.replies = []  # replies read while waiting for an event
        self.greeting = self.recv()
        if negotiate:
            r = self.cmd("qmp_capabilities")
            assert "return" in r, r

    def send_raw(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def recv(self):
        """The next JSON message (events included)."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, timeout=60):
        """The next reply to a command; events on the way are kept. A VMM
        that keeps sending events but never answers fails, after timeout."""
        if self.replies:
            return self.replies.pop(0)
        end = time.time() + timeout
        while True:
            if time.time() > end:
                raise TimeoutError("no QMP reply within %d s" % timeout)
            m = self.recv()
            if "event" in m:
                self.events.append(m)
            else:
                return m

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.send_raw(json.dumps(msg) + "\n")
        return self.reply()

    def wait_event(self, pred, timeout=60):
        """The first event (kept or new) for which pred(event) is true."""
        end = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if pred(e):
                    return self.events.pop(i)
            if time.time() > end:
                raise TimeoutError("no matching QMP event")
            # Only this wait is shortened: a command's reply gets the whole timeout.
            self.sock.settimeout(max(0.1, end - time.time()))
            try:
                m = self.recv()
            finally:
                self.sock.settimeout(self.timeout)
            if "event" in m:
                self.events.append(m)
            else:
                self.replies.append(m)  # to a command sent ahead (pipelined)

    def close(self):
        self.sock.close()


def with_hugepages(kb, n, name, test):
    """test, wrapped: run it with n free huge pages of kb KiB (reserved by the
    test when it runs as root); skip with the reason when they cannot be had."""
    import tap

    def run():
        with hugepages(kb, n) as why:
            if why:
                tap.skip(name, why)
            else:
                test()
    run.__name__ = test.__name__
    return run


def guest_report(kind, vcpu=None, **fields):
    def pred(e):
        if e["event"] != "VMRAS_GUEST_REPORT" or e["data"]["kind"] != kind:
            return False
        if vcpu is not None and e["data"]["vcpu"] != vcpu:
            return False
        return all(e["data"].get(k) == v for k, v in fields.items())
    return pred


class VM:
    """`vmras run` in the background with a control socket."""

    def __init__(self, *args, control=True, summary=True, prefix=()):
        """prefix: a command to run it under (e.g. ip netns exec NAME)."""
        self.dir = tempfile.mkdtemp(prefix="vmras-test-")
        self.sock = os.path.join(self.dir, "qmp.sock") if control else None
        cmd = [*prefix, VMRAS, "run", *RUN_ARGS, *args, *record_args(args, self.dir)]
        if control:
            cmd += ["--control", self.sock]
        if summary:
            cmd += ["--summary", "json"]
        # stderr to a file: a VMM that says much (one line per MMIO exit in
        # RAM) must not block on a full pipe that is read only at the end.
        self.err = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        if control:
            end = time.time() + 30
            while not os.path.exists(self.sock):
                if self.proc.poll() is not None or time.time() > end:
                    raise RuntimeError("vmras run did not start: " + self.stderr())
                time.sleep(0.02)

    def qmp(self, **kw):
        return QMP(self.sock, **kw)

    def stderr(self):
        """What the VMM wrote on stderr so far."""
        with open(self.err.name) as f:
            return f.read()

    def wait(self, timeout=300):
        """(exit code, summary dict or None, stderr)."""
        out, _ = self.proc.communicate(timeout=timeout)
        err = self.stderr()
        summary = None
        lines = [l for l in out.splitlines() if l.strip()]
        if lines:
            try:
                summary = json.loads(lines[-1])
            except ValueError:
                pass
        return self.proc.returncode, summary, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()



class Case:
    """One named case: the VMs it starts (case.vm) are killed at its end,
    and an exception is a failure of the case, with their stderr."""

    def __init__(self, name):
        self.name = name
        self.vms = []

    def vm(self, *args, **kw):
        vm = VM(*args, **kw)
        self.vms.append(vm)
        return vm

    def __enter__(self):
        return self

    def __exit__(self, etype, e, tb):
        import tap
        if isinstance(e, Exception):
            tap.ok(False, self.name + ": " + repr(e), "".join(vm.stderr() for vm in self.vms))
        for vm in self.vms:
            vm.kill()
        return isinstance(e, Exception)

def record_args(args, where):
    """Each test VM records into a database of its own (in where), unless
    the test chose: the host's shared one is no place for test runs."""
    if any(a in ("--record", "--no-record") for a in args):
        return []
    return ["--record", os.path.join(where, "record.db")]


def run(*args, timeout=300):
    """Run `vmras run ARGS --summary json` to the end: (code, summary, stderr)."""
    with tempfile.TemporaryDirectory(prefix="vmras-run-") as where:
        os.chmod(where, 0o755)
        p = subprocess.run([VMRAS, "run", *RUN_ARGS, *args, *record_args(args, where),
                            "--summary", "json"], capture_output=True, text=True, timeout=timeout)
    summary = None
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            pass
    return p.returncode, summary, p.stderr


def poison(q, errors, wait=True):
    """inject-memory-error for each (gpa, "ao"|"ar", vcpu or None); with
    wait, until the guest retired each page."""
    for gpa, kind, vcpu in errors:
        args = {"gpa": gpa, "type": kind}
        if vcpu is not None:
            args["vcpu"] = vcpu
        r = q.cmd("inject-memory-error", **args)
        assert r == {"return": {}}, r
        if wait:
            q.wait_event(guest_report("retired", gpa=gpa), timeout=120)


def bad_pages(q):
    """The VM's bad ranges, as sorted (gpa, size)."""
    return sorted((e["gpa"], e["size"]) for e in q.cmd("query-memory-errors")["return"]["errors"])


def wait_path(path, proc, timeout=30):
    """Until a migration destination (proc) listens on the unix socket path."""
    end = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > end:
            raise RuntimeError("destination did not listen on " + path)
        time.sleep(0.02)
