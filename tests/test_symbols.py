#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Only the public API leaves the library: every global symbol that
libvmras.so exports and libvmras.a defines is vmras_* (the version node
VMRAS_0 aside)."""
import subprocess
import sys

import tap


def defined_globals(path, dynamic):
    argv = ["nm", "--defined-only"] + (["-D"] if dynamic else ["-g"]) + [path]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        return None, r.stderr.strip()
    names = [f[2] for f in (l.split() for l in r.stdout.splitlines()) if len(f) == 3]
    return [n for n in names if n != "VMRAS_0"], None


def check(path, dynamic, what):
    names, err = defined_globals(path, dynamic)
    if not tap.ok(names is not None, what + ": nm reads it", err):
        return
    tap.ok(len(names) > 20, what + ": exports the API (%d symbols)" % len(names))
    stray = [n for n in names if not n.startswith("vmras_")]
    tap.eq(stray, [], what + ": nothing but vmras_*")


check(sys.argv[1], True, "libvmras.so")
check(sys.argv[2], False, "libvmras.a")
tap.done()
