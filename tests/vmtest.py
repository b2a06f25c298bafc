# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the VM tests: start `vmras run`, talk QMP to it."""
import json
import os
import socket
import subprocess
import tempfile
import time

VMRAS = None


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


def free_hugepages(kb):
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-%dkB/free_hugepages" % kb) as f:
            return int(f.read())
    except OSError:
        return 0


class QMP:
    """A QMP client: greeting, negotiation, commands, events."""

    def __init__(self, path, negotiate=True, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
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

    def reply(self):
        """The next reply to a command; events on the way are kept."""
        while True:
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
            self.sock.settimeout(max(0.1, end - time.time()))
            m = self.recv()
            if "event" in m:
                self.events.append(m)

    def close(self):
        self.sock.close()


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

    def __init__(self, *args, control=True, summary=True):
        self.dir = tempfile.mkdtemp(prefix="vmras-test-")
        self.sock = os.path.join(self.dir, "qmp.sock") if control else None
        cmd = [VMRAS, "run", *args]
        if control:
            cmd += ["--control", self.sock]
        if summary:
            cmd += ["--summary", "json"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        if control:
            end = time.time() + 30
            while not os.path.exists(self.sock):
                if self.proc.poll() is not None or time.time() > end:
                    raise RuntimeError("vmras run did not start: " + self.proc.stderr.read())
                time.sleep(0.02)

    def qmp(self, **kw):
        return QMP(self.sock, **kw)

    def wait(self, timeout=300):
        """(exit code, summary dict or None, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
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


def run(*args, timeout=300):
    """Run `vmras run ARGS --summary json` to the end: (code, summary, stderr)."""
    p = subprocess.run([VMRAS, "run", *args, "--summary", "json"],
                       capture_output=True, text=True, timeout=timeout)
    summary = None
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if lines:
        try:
            summary = json.loads(lines[-1])
        except ValueError:
            pass
    return p.returncode, summary, p.stderr
