# SPDX-License-Identifier: GPL-2.0-or-later
"""Minimal TAP producer for the Python integration tests."""
import sys
import traceback

_count = 0
_failed = 0


def ok(cond, name, diag=None):
    global _count, _failed
    _count += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (_count, name), flush=True)
    if not cond:
        _failed += 1
        # The test's own line, not eq()'s.
        caller = [f for f in traceback.extract_stack() if f.filename != __file__][-1]
        print("# %s:%d: failed" % (caller.filename, caller.lineno))
        if diag is not None:
            for line in str(diag).splitlines():
                print("#   " + line)
    return cond


def eq(got, want, name, diag=None):
    msg = "got %r, want %r" % (got, want)
    if diag is not None:
        msg += "\n" + str(diag)
    return ok(got == want, name, msg)


def skip(name, why):
    global _count
    _count += 1
    print("ok %d - %s # SKIP %s" % (_count, name, why), flush=True)


def diag(msg):
    for line in str(msg).splitlines():
        print("# " + line)


def run(fn, *args):
    """Run one test function; an exception is a failure, not the end."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - any error fails this test only
        ok(False, fn.__name__ + " raised", traceback.format_exc())


def done():
    print("1..%d" % _count, flush=True)
    sys.exit(1 if _failed else 0)
