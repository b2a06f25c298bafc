# SPDX-License-Identifier: GPL-2.0-or-later
"""Two hosts on one machine: two network namespaces joined by a veth pair.

    with netns.TwoHosts() as h:
        VM(..., prefix=h.src.prefix); VM(..., prefix=h.dst.prefix)
        "tcp:%s:%d" % (h.dst.addr, port)

Unix sockets and the QMP sockets are files: they work across namespaces.
"""
import os
import shutil
import subprocess


CAP_SYS_ADMIN = 21


def _has_cap(bit):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def unavailable():
    """Why two namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not _has_cap(CAP_SYS_ADMIN):
        return "network namespaces need CAP_SYS_ADMIN (this root has dropped it)"
    if not shutil.which("ip"):
        return "no ip(8) (iproute2)"
    return None


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Host:
    def __init__(self, name, addr):
        self.name = name
        self.addr = addr
        self.prefix = ("ip", "netns", "exec", name)

    def run(self, *cmd, **kw):
        return subprocess.run([*self.prefix, *cmd], **kw)


class TwoHosts:
    """src 10.77.<n>.1 and dst 10.77.<n>.2 on one /24, each with its loopback up."""

    def __init__(self, tag=None):
        tag = tag or str(os.getpid())
        n = os.getpid() % 250 + 1
        self.src = Host("vmras-src-" + tag, "10.77.%d.1" % n)
        self.dst = Host("vmras-dst-" + tag, "10.77.%d.2" % n)
        self._veth = ("vr%s" % tag)[-11:]

    def __enter__(self):
        try:
            for h, end in ((self.src, "a"), (self.dst, "b")):
                _ip("netns", "add", h.name)
                _ip("-n", h.name, "link", "set", "lo", "up")
            _ip("link", "add", self._veth + "a", "netns", self.src.name, "type", "veth",
                "peer", "name", self._veth + "b", "netns", self.dst.name)
            for h, end in ((self.src, "a"), (self.dst, "b")):
                _ip("-n", h.name, "addr", "add", h.addr + "/24", "dev", self._veth + end)
                _ip("-n", h.name, "link", "set", self._veth + end, "up")
        except subprocess.CalledProcessError as e:
            self.__exit__(None, None, None)
            raise RuntimeError("set up two namespaces: %s: %s"
                               % (" ".join(e.cmd), e.stderr.strip()))
        return self

    def __exit__(self, *exc):
        # Deleting a namespace deletes its end of the veth, and so the pair.
        for h in (self.src, self.dst):
            subprocess.run(["ip", "netns", "del", h.name], capture_output=True)
        return False
