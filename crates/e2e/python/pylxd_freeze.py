#!/usr/bin/env python3
"""pylxd freezes and unfreezes a droverd instance as it does an LXD 5.0.2 one.

usage: pylxd_freeze.py SOCKET IMAGE_TARBALL

Imports the busybox image (alias `busybox`), creates and starts `pyfz1`, then through
pylxd: `freeze(wait=True)` (status Frozen, in the instance and its state), a second freeze
(refused: already frozen), `unfreeze(wait=True)` (Running), a second unfreeze (refused:
already running), a freeze then `stop(wait=True)` (Stopped), a freeze of the stopped
instance (refused: not running); deletes it. Prints one `ok:` line per step; on any
mismatch prints `FAIL:` with what was expected and exits 1.
"""

import sys

import pylxd
from pylxd.exceptions import LXDAPIException

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from steps import check, fail  # noqa: E402 - after the line above

NAME = "pyfz1"


def refused(what, call, want):
    try:
        call()
    except LXDAPIException as e:
        check(what, want in str(e), True)
        return
    fail(f"{what}: expected a refusal with {want!r}, it succeeded")


def main():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} SOCKET IMAGE_TARBALL")
    socket, tarball = sys.argv[1], sys.argv[2]
    client = pylxd.Client(endpoint=socket)
    with open(tarball, "rb") as f:
        image = client.images.create(f.read(), wait=True)
    image.add_alias("busybox", "drover's busybox")
    inst = client.instances.create(
        {"name": NAME, "source": {"type": "image", "alias": "busybox"}}, wait=True
    )
    inst.start(wait=True)
    pid = inst.state().pid

    inst.freeze(wait=True)
    check("status after freeze", inst.status, "Frozen")
    # (pylxd keeps the status_code it first read, 103: on LXD 5.0.2 as well.)
    state = inst.state()
    check("state.status after freeze", state.status, "Frozen")
    check("state.pid after freeze", state.pid, pid)
    refused("second freeze", lambda: inst.freeze(wait=True), "The container is already frozen")

    inst.unfreeze(wait=True)
    check("status after unfreeze", inst.status, "Running")
    check("state.pid after unfreeze", inst.state().pid, pid)
    refused("second unfreeze", lambda: inst.unfreeze(wait=True), "The container is already running")

    inst.freeze(wait=True)
    inst.stop(wait=True)
    check("status after stopping a frozen instance", inst.status, "Stopped")
    refused("freeze when stopped", lambda: inst.freeze(wait=True), "The container isn't running")

    inst.delete(wait=True)
    check("deleted", NAME in [i.name for i in client.instances.all()], False)
    print("pylxd freeze: all steps passed", flush=True)


if __name__ == "__main__":
    main()
