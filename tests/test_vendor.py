#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""`vmras run --cpu-vendor intel|amd`: each vendor's machine checks end to
end through KVM, asserted from the test guest's own report.

Intel: SRAO and SRAR raise #MC on the vCPU concerned, and with 2 vCPUs a
bystander copy (bank 1, VAL|UC) reaches the other one (MCA broadcast).
AMD: an AO is a deferred error that raises nothing; the guest finds it by
polling its banks. An AR is UC|POISON with #MC, to that vCPU only.
In every case exactly the injected 4 KiB page is retired, nothing else is
lost, and the run exits 0.

The guest's CPUID is checked from inside the guest: it executes CPUID and
reports what it read (guest message "cpuid", the summary's per-vCPU
"cpuid"), so this sees what KVM really hands it, not only what the VMM
asked for."""
import sys

import tap
import vmtest

vmtest.VMRAS = sys.argv[1]
PAGE = 4096
MEM = 16 << 20
PASSES = 2
DATA_START = vmtest.layout("GL_DATA_START")

MCI_VAL = 1 << 63
MCI_UC = 1 << 61
MCI_ADDRV = 1 << 58
MCI_DEFERRED = 1 << 44
MCI_POISON = 1 << 43
INTEL_SRAO = 0xBD000000000000C0
INTEL_SRAR = 0xBD80000000000134
BYSTANDER = MCI_VAL | MCI_UC  # 0xA000000000000000
RIPV_MCIP = 0x5
RIPV_EIPV_MCIP = 0x7

VENDOR_ID = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}


def slice_of(vcpu, nvcpus):
    """[start, end) of a vCPU's data slice, as the guest splits RAM."""
    pages = (MEM - DATA_START) // PAGE
    per = pages // nvcpus
    start = DATA_START + vcpu * per * PAGE
    end = DATA_START + pages * PAGE if vcpu + 1 == nvcpus else start + per * PAGE
    return start, end


def target(kind, nvcpus):
    """(vCPU, GPA) for an error: the AO in vCPU 0's slice at an exact byte
    address, the AR in the last vCPU's (so with 2 vCPUs the bystander is
    vCPU 0). Mid-slice: the guest, back at the slice's start when the error
    arrives after pass 1, polls many times before it reaches the page."""
    vcpu = 0 if kind == "ao" else nvcpus - 1
    start, end = slice_of(vcpu, nvcpus)
    page = start + ((end - start) // PAGE // 2) * PAGE
    return vcpu, page + (0x123 if kind == "ao" else 0)


def check_cpuid(s, vendor, name):
    cpus = [v["cpuid"] for v in s["guest"]["vcpus"]]
    tap.eq(s["cpu-vendor"], vendor, name + ": summary cpu-vendor")
    tap.ok(all(c and c["vendor"] == VENDOR_ID[vendor] for c in cpus),
           name + ": every vCPU's CPUID leaf 0 says %s" % VENDOR_ID[vendor], cpus)
    if vendor == "intel":
        tap.ok(all(c and c["family"] == 6 and c["model"] >= 14 for c in cpus),
               name + ": family 6, model >= 14 (Linux expects MCA broadcast)", cpus)
        tap.ok(all(c and c["ext-80000007-ebx"] & 3 == 0 for c in cpus),
               name + ": no AMD RAS bits in 0x80000007 EBX", cpus)
    else:
        tap.ok(all(c and c["family"] >= 0x17 for c in cpus),
               name + ": family 0x17 or later", cpus)
        tap.ok(all(c and c["max-ext-leaf"] >= 0x80000007 and c["ext-80000007-ebx"] & 3 == 3
                   for c in cpus),
               name + ": CPUID 0x80000007 EBX offers OverflowRecov and SUCCOR (bits 0, 1)", cpus)


def check_one(vendor, nvcpus, kind):
    name = "%s, %d vCPU%s, %s" % (vendor, nvcpus, "s" if nvcpus > 1 else "", kind.upper())
    vcpu, gpa = target(kind, nvcpus)
    page = gpa & ~(PAGE - 1)
    code, s, err = vmtest.run("--cpu-vendor", vendor, "--vcpus", str(nvcpus), "--mem",
                              "%dM" % (MEM >> 20), "--passes", str(PASSES),
                              "--inject", "%s:%#x" % (kind, gpa))
    if not tap.ok(code == 0 and s and s["result"] == "pass", name + ": exit 0, result pass",
                  "exit %s\n%s" % (code, err)):
        return
    g = s["guest"]
    check_cpuid(s, vendor, name)
    log = g["machine-check-log"]
    named = [m for m in log if m["status"] & MCI_ADDRV]
    copies = [m for m in log if not m["status"] & MCI_ADDRV]
    counters = s["memory-errors"]["counters"]
    if not tap.ok(len(named) == 1, name + ": one error record names the page", log):
        return
    m = named[0]
    tap.eq((m["vcpu"], m["addr"], m["misc"] & 0x3f), (vcpu, page, 12),
           name + ": on vCPU %d, MCi_ADDR the page, MCi_MISC LSB 12" % vcpu)

    if vendor == "intel":
        want = INTEL_SRAO if kind == "ao" else INTEL_SRAR
        mcg = RIPV_MCIP if kind == "ao" else RIPV_EIPV_MCIP
        tap.eq((m["polled"], m["status"], m["mcg-status"]), (False, want, mcg),
               name + ": #MC with MCi_STATUS %#x, MCG_STATUS %#x" % (want, mcg))
        if nvcpus > 1:
            others = sorted(set(range(nvcpus)) - {vcpu})
            tap.eq(sorted((c["vcpu"], c["bank"], c["status"], c["mcg-status"], c["polled"])
                          for c in copies),
                   [(o, 1, BYSTANDER, RIPV_MCIP, False) for o in others],
                   name + ": the bystander copy (bank 1, VAL|UC, RIPV|MCIP) reached vCPU %s"
                   % ",".join(map(str, others)))
            tap.ok(counters["mce-broadcast"] >= 1,
                   name + ": counter mce-broadcast >= 1 (%d)" % counters["mce-broadcast"])
        else:
            tap.eq(copies, [], name + ": no bystander copies on 1 vCPU")
    elif kind == "ao":
        st = m["status"]
        tap.ok(m["polled"] and st & MCI_VAL and st & MCI_DEFERRED and st & MCI_POISON and
               not st & MCI_UC,
               name + ": found by polling, a deferred error (DEFERRED|POISON, no UC): %#x" % st, m)
        tap.eq((g["polled-errors"], g["machine-checks"]), (1, 0),
               name + ": 1 polled error, no #MC")
    else:
        st = m["status"]
        tap.ok(not m["polled"] and st & MCI_VAL and st & MCI_UC and st & MCI_POISON and
               not st & MCI_DEFERRED,
               name + ": #MC with UC|POISON: %#x" % st, m)
        tap.eq(m["mcg-status"], RIPV_EIPV_MCIP, name + ": MCG_STATUS RIPV|EIPV|MCIP")
    if vendor == "amd":
        tap.eq(copies, [], name + ": no broadcast copies")
        tap.eq(counters["mce-broadcast"], 0, name + ": counter mce-broadcast 0")

    tap.eq([(r["gpa"], r["size"]) for r in g["retired"]], [(page, PAGE)],
           name + ": the guest retired exactly that 4 KiB page")
    tap.eq(g["pages-corrupted"], 0, name + ": 0 corrupted pages")
    tap.ok(all(v["verified"] + v["skipped"] == v["pages"] * v["passes"] and
               v["passes"] == PASSES for v in g["vcpus"]),
           name + ": every other page verified in every pass",
           [(v["pages"], v["verified"], v["skipped"]) for v in g["vcpus"]])
    tap.eq(s["bytes-lost"], PAGE, name + ": 4096 bytes lost")


def host_vendor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                v = line.split(":", 1)[1].strip()
                return "amd" if v in ("AuthenticAMD", "HygonGenuine") else "intel"
    return "intel"


def test_host_default():
    """No --cpu-vendor: the host's vendor."""
    code, s, err = vmtest.run("--vcpus", "1", "--mem", "6M", "--passes", "1")
    if tap.ok(code == 0 and s, "default: exit 0", "exit %s\n%s" % (code, err)):
        tap.eq(s["cpu-vendor"], host_vendor(), "default: the host's vendor (%s)" % host_vendor())
        c = s["guest"]["vcpus"][0]["cpuid"]
        tap.ok(c and (c["ext-80000007-ebx"] & 3 == 3) == (host_vendor() == "amd"),
               "default: SUCCOR|OverflowRecov offered exactly when the vendor is AMD", c)


def test_usage():
    code, s, err = vmtest.run("--cpu-vendor", "cyrix")
    lines = err.strip().splitlines()
    tap.ok(code == 2 and len(lines) == 1 and lines[0].startswith("vmras run: ") and
           "--cpu-vendor" in lines[0] and "cyrix" in lines[0],
           "--cpu-vendor cyrix: exit 2, one line naming it", "exit %s\n%s" % (code, err))


tap.run(test_usage)
tap.run(test_host_default)
for vendor in ("intel", "amd"):
    for nvcpus in (1, 2):
        for kind in ("ao", "ar"):
            tap.run(check_one, vendor, nvcpus, kind)
tap.done()
