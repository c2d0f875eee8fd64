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


def run(main):
    """Runs a script's `main`: any exception is a failed step (its traceback, then `FAIL:`)."""
    import traceback

    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - any exception is a failed step
        traceback.print_exc()
        fail(f"{type(e).__name__}: {e}")
