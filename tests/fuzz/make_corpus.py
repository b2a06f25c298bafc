#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Make the fuzz targets' seed corpora from real VMs (as root, with KVM).

    tests/fuzz/make_corpus.py [VMRAS]     (default: build/tools/vmras/vmras)

Runs `vmras run` guests that lose pages to memory errors (some told to the
guest, some still queued for a stopped one), takes a snapshot of each
(QMP migrate to file:) and moves one live over a unix socket through a
proxy that records the stream, then cuts the section payloads out of those
real streams, as the destination's parsers get them:

    corpus/migration_state/  RAS sections (vmras_migration_parse)
    corpus/x86_state/        VCPU sections (x86_state_check), and pairs of
                             one to load and a destination vCPU's own, in
                             fuzz_x86_state.c's framing
    corpus/report/           GUEST sections (report_load)
    corpus/mig_stream/       real streams: a snapshot's and a live move's
                             first 64 KiB, and each with its sections but
                             (nearly) none of its RAM

Every file is under 64 KiB. Files it makes are replaced; others are kept.
"""
import os
import re
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import vmtest  # noqa: E402
from vmtest import VM, guest_report, poison, wait_path  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
MAX_FILE = 64 << 10
PREAMBLE = 16
SECTION_HEADER = 24
MCE_BANKS = 10      # vmm/x86.h X86_MCE_BANKS_DEFAULT: every vmras run vCPU's
MEM = "16M"
# 16 MiB, 2 vCPUs: vCPU 0 checks 0x400000-0xa00000, vCPU 1 0xa00000-0x1000000.
TOLD = [(0x600000, "ao", None), (0xc23000, "ar", 1)]
QUEUED = [(0x7a5000, "ao", None), (0xe07000, "ar", 1)]


def section_types():
    """SEC_* of vmm/mig_sections.h: {"RAS": 4, ...}."""
    with open(os.path.join(ROOT, "vmm", "mig_sections.h")) as f:
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"^\s*SEC_(\w+)\s*=\s*(\d+),", f.read(), re.M)}


SEC = section_types()


def sections(stream):
    """(type, id, offset, total bytes) of each whole section of a stream."""
    assert stream[:8] == b"VMRASMIG", "not a migration stream"
    off = PREAMBLE
    while off + SECTION_HEADER <= len(stream):
        typ, sid, length = struct.unpack_from("<IIQ", stream, off)
        total = SECTION_HEADER + length + 4
        if off + total > len(stream):
            break
        yield typ, sid, off, total
        off += total


def payload(stream, off):
    length = struct.unpack_from("<Q", stream, off + 8)[0]
    return stream[off + SECTION_HEADER:off + SECTION_HEADER + length]


def write(target, name, data):
    if len(data) >= MAX_FILE:
        print("  skip %s/%s: %d bytes" % (target, name, len(data)))
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    print("  %s/%s: %d bytes" % (target, name, len(data)))


def both_passes(q, nvcpus):
    for v in range(nvcpus):
        q.wait_event(guest_report("pass-done", vcpu=v), timeout=120)


def migrate(q, uri):
    r = q.cmd("migrate", uri=uri)
    assert r == {"return": {}}, r
    d = q.wait_event(lambda e: e["event"] == "MIGRATION" and
                     e["data"]["status"] in ("completed", "failed", "cancelled"),
                     timeout=300)["data"]
    assert d["status"] == "completed", d


def snapshot(vm, q):
    path = os.path.join(vm.dir, "snap")
    migrate(q, "file:" + path)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


class Recorder:
    """A unix-socket proxy between a source and a destination that keeps
    what the source sends."""

    def __init__(self, listen_path, dest_path):
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(listen_path)
        self.ls.listen(1)
        self.dest_path = dest_path
        self.sent = bytearray()
        self.back = bytearray()  # what the destination answers
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def pump(a, b, keep):
        while True:
            data = a.recv(1 << 20)
            if not data:
                break
            if keep is not None:
                keep += data
            b.sendall(data)
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def serve(self):
        src, _ = self.ls.accept()
        self.ls.close()
        dst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dst.connect(self.dest_path)
        back = threading.Thread(target=self.pump, args=(dst, src, self.back), daemon=True)
        back.start()
        self.pump(src, dst, self.sent)
        back.join(60)
        src.close()
        dst.close()


def device_sections(stream):
    """{(type, id): payload} of the sections after RAM."""
    ram = (SEC["RAM"], SEC["RAM_IMAGE"], SEC["HEADER"])
    return {(t, i): payload(stream, off) for t, i, off, _ in sections(stream) if t not in ram}


def without_ram(stream, keep_ram=0):
    """The preamble, the header and every device section of a stream (and
    its keep_ram smallest RAM sections), in stream order: a real stream,
    less most of its pages."""
    secs = list(sections(stream))
    ram = sorted((total, off) for t, _, off, total in secs if t == SEC["RAM"])
    keep = {off for _, off in ram[:keep_ram]}
    out = bytearray(stream[:PREAMBLE])
    for t, _, off, total in secs:
        if t != SEC["RAM"] and t != SEC["RAM_IMAGE"] or off in keep:
            out += stream[off:off + total]
    return bytes(out)


def save_devices(tag, stream, nvcpus):
    dev = device_sections(stream)
    write("migration_state", "ras-" + tag, dev[(SEC["RAS"], 0)])
    write("report", "guest-" + tag, dev[(SEC["GUEST"], 0)])
    for i in range(nvcpus):
        write("x86_state", "vcpu%d-%s" % (i, tag), dev[(SEC["VCPU"], i)])
    return {i: dev[(SEC["VCPU"], i)] for i in range(nvcpus)}


def pair(banks, blob, dest):
    return struct.pack("<BI", banks, len(blob)) + blob + dest


def errors_vm(args):
    """Two vCPUs, errors told and queued: a snapshot, then a live move
    recorded. Returns {vcpu: blob} of the snapshot."""
    src = dst = None
    try:
        src = VM("--backend", "anon", "--paused", *args)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q, 2)
        poison(q, TOLD, wait=True)
        both_passes(q, 2)
        q.cmd("stop")
        poison(q, QUEUED, wait=False)
        time.sleep(0.5)
        snap = snapshot(src, q)
        vcpus = save_devices("intel-queued", snap, 2)
        write("mig_stream", "snapshot-prefix", snap[:MAX_FILE - 1])
        write("mig_stream", "snapshot-no-ram", without_ram(snap))

        # The notices go in once it runs: the live move carries only ranges.
        q.cmd("cont")
        for gpa, _, _ in QUEUED:
            q.wait_event(guest_report("retired", gpa=gpa), timeout=120)
        both_passes(q, 2)
        dpath = os.path.join(src.dir, "dst.sock")
        ppath = os.path.join(src.dir, "proxy.sock")
        dst = VM("--backend", "anon", "--incoming", "unix:" + dpath, *args)
        wait_path(dpath, dst.proc)
        rec = Recorder(ppath, dpath)
        migrate(q, "unix:" + ppath)
        rec.thread.join(60)
        live = bytes(rec.sent)
        save_devices("intel-live", live, 2)
        write("mig_stream", "live-prefix", live[:MAX_FILE - 1])
        write("mig_stream", "live-small-ram", without_ram(live, keep_ram=2))
        qd = dst.qmp()
        qd.cmd("quit")
        dst.wait(timeout=60)
        q.cmd("quit")
        src.wait(timeout=60)
        return vcpus
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def back_sections(back):
    """The destination's answers have no preamble: give them one to read."""
    return list(sections(b"VMRASMIG" + struct.pack("<II", 2, 0) + back))


def postcopy_vm(args):
    """A post-copy move recorded both ways: the switch, pages sections and
    the end from the source; page requests and results from the
    destination. Seeds start with fuzz_postcopy.c's granule byte."""
    src = dst = None
    try:
        src = VM("--backend", "anon", "--paused", *args)
        q = src.qmp()
        q.cmd("cont")
        both_passes(q, 2)
        poison(q, TOLD, wait=True)
        dpath = os.path.join(src.dir, "dst.sock")
        ppath = os.path.join(src.dir, "proxy.sock")
        dst = VM("--backend", "anon", "--incoming", "unix:" + dpath, *args)
        wait_path(dpath, dst.proc)
        rec = Recorder(ppath, dpath)
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "postcopy-ram", "state": True}])
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20})
        assert q.cmd("migrate", uri="unix:" + ppath) == {"return": {}}
        time.sleep(0.5)
        assert q.cmd("migrate-start-postcopy") == {"return": {}}
        q.wait_event(lambda e: e["event"] == "MIGRATION" and
                     e["data"]["status"] in ("completed", "failed"), timeout=300)
        rec.thread.join(60)
        fwd, back = bytes(rec.sent), bytes(rec.back)
        pre = fwd[:PREAMBLE]
        keep = (SEC["POSTCOPY"], SEC["PAGES"], SEC["PC_END"], SEC["GO"])
        secs = [(t, off, total) for t, _, off, total in sections(fwd) if t in keep]
        small = sorted((total, off) for t, off, total in secs if t == SEC["PAGES"])[:4]
        out = bytearray(b"\x00" + pre)
        for t, off, total in secs:
            if t != SEC["PAGES"] or (total, off) in small:
                out += fwd[off:off + total]
        write("postcopy", "source-sections", bytes(out))
        pages = [fwd[off:off + total] for total, off in small]
        if pages:
            write("postcopy", "pages-2m-guest", b"\x01" + pre + pages[0])
        bsecs = back_sections(back)
        bstream = b"VMRASMIG" + struct.pack("<II", 2, 0) + back
        answers = bytearray(b"\x00" + pre)
        for t, _, off, total in bsecs[:64]:
            answers += bstream[off:off + total]
        write("postcopy", "destination-answers", bytes(answers))
        dst.qmp().cmd("quit")
        dst.wait(timeout=60)
        q.cmd("quit")
        src.wait(timeout=60)
    finally:
        for vm in (src, dst):
            if vm:
                vm.kill()


def quiet_vm(tag, args, nvcpus, errors=()):
    """A VM that lost nothing (or errors, told): its snapshot's sections."""
    vm = None
    try:
        vm = VM("--backend", "anon", "--paused", *args)
        q = vm.qmp()
        q.cmd("cont")
        both_passes(q, nvcpus)
        poison(q, errors, wait=True)
        snap = snapshot(vm, q)
        vcpus = save_devices(tag, snap, nvcpus)
        q.cmd("quit")
        vm.wait(timeout=60)
        return vcpus
    finally:
        if vm:
            vm.kill()


def main():
    vmtest.VMRAS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                   os.path.join(ROOT, "build", "tools", "vmras", "vmras"))
    common = ("--mem", MEM, "--passes", "100000", "--seed", "7")
    print("two vCPUs (intel), errors told and queued; snapshot and live move")
    intel = errors_vm(("--cpu-vendor", "intel", "--vcpus", "2") + common)
    print("two vCPUs, post-copy, recorded both ways")
    postcopy_vm(("--vcpus", "2") + common)
    print("one vCPU (amd), nothing lost")
    amd = quiet_vm("amd-clean", ("--cpu-vendor", "amd", "--vcpus", "1") + common, 1)
    print("one vCPU (host vendor), one AO told")
    host = quiet_vm("host-ao", ("--cpu-vendor", "host", "--vcpus", "1") + common, 1,
                    [(0x800000, "ao", None)])
    print("pairs: a vCPU's state and the destination vCPU's own")
    write("x86_state", "pair-intel-to-amd", pair(MCE_BANKS, intel[0], amd[0]))
    write("x86_state", "pair-amd-to-host", pair(MCE_BANKS, amd[0], host[0]))
    write("x86_state", "pair-vcpu1-to-vcpu0", pair(MCE_BANKS, intel[1], intel[0]))
    write("x86_state", "pair-too-few-banks", pair(4, intel[0], intel[1]))


if __name__ == "__main__":
    main()
