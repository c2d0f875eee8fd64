"""Step reporting shared by the pylxd scripts: one `ok:` line per passed step, `FAIL:`
and exit status 1 at the first mismatch."""

import sys


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(what, got, want):
    if got != want:
        fail(f"{what}: expected {want!r}, got {got!r}")
    print(f"ok: {what} = {got!r}", flush=True)
