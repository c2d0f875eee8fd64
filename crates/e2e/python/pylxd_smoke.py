#!/usr/bin/env python3
"""pylxd drives droverd unchanged.

usage: pylxd_smoke.py SOCKET IMAGE_TARBALL

Imports the busybox image (alias `busybox`), lists instances and images, creates `py1`
from the alias, starts it, reads its state, executes commands (output, exit code, stdin),
reads snapshots, networks, projects and resources, stops and deletes it. Prints one `ok:` line per step; on any mismatch prints `FAIL:` with
what was expected and exits 1.
"""

import sys

import pylxd

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from steps import check, fail, run  # noqa: E402 - after the line above

NAME = "py1"


def main():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} SOCKET IMAGE_TARBALL")
    socket, tarball = sys.argv[1], sys.argv[2]
    client = pylxd.Client(endpoint=socket)
    check("trusted", client.trusted, True)

    # Images: import the unified tarball, alias it, list.
    with open(tarball, "rb") as f:
        image = client.images.create(f.read(), wait=True)
    image.add_alias("busybox", "drover's busybox")
    fingerprints = [i.fingerprint for i in client.images.all()]
    check("image list", fingerprints, [image.fingerprint])
    aliases = [a["name"] for a in client.images.get(image.fingerprint).aliases]
    check("image aliases", aliases, ["busybox"])

    # Instances: none yet; create from the alias.
    check("instances before", [i.name for i in client.instances.all()], [])
    inst = client.instances.create(
        {"name": NAME, "source": {"type": "image", "alias": "busybox"}}, wait=True
    )
    check("created name", inst.name, NAME)
    check("instances after create", [i.name for i in client.instances.all()], [NAME])
    inst = client.instances.get(NAME)
    check("status after create", inst.status, "Stopped")

    # Start and state.
    inst.start(wait=True)
    inst.sync()
    check("status after start", inst.status, "Running")
    state = inst.state()
    check("state.status", state.status, "Running")
    if not isinstance(state.pid, int) or state.pid <= 1:
        fail(f"state.pid: expected a host pid, got {state.pid!r}")
    print(f"ok: state.pid = {state.pid}", flush=True)

    # Execute: output, exit code, stdin.
    res = inst.execute(["cat", "/etc/hostname"])
    check("execute cat /etc/hostname: exit code", res.exit_code, 0)
    check("execute cat /etc/hostname: stdout", res.stdout, f"{NAME}\n")
    res = inst.execute(["sh", "-c", "echo err >&2; exit 5"])
    check("execute exit 5: exit code", res.exit_code, 5)
    check("execute exit 5: stderr", res.stderr, "err\n")
    res = inst.execute(["cat"], stdin_payload="from stdin\n")
    check("execute cat with stdin: stdout", res.stdout, "from stdin\n")

    # What a script reads around its instances: snapshots (none), networks (the host's,
    # unmanaged), projects (default), resources, storage pool resources.
    check("snapshots", inst.snapshots.all(), [])
    nets = client.networks.all()
    check("networks: lo listed", "lo" in [n.name for n in nets], True)
    check("networks: all unmanaged", {n.managed for n in nets}, {False})
    check("projects", [p.name for p in client.projects.all()], ["default"])
    res = client.resources
    check("resources: cpu total > 0", res["cpu"]["total"] > 0, True)
    check("resources: memory total > 0", res["memory"]["total"] > 0, True)
    pool = client.storage_pools.get("default")
    check("pool resources: space total > 0", pool.resources.get().space["total"] > 0, True)

    # Stop and delete.
    inst.stop(wait=True)
    inst.sync()
    check("status after stop", inst.status, "Stopped")
    inst.delete(wait=True)
    check("exists after delete", client.instances.exists(NAME), False)
    check("instances at the end", [i.name for i in client.instances.all()], [])
    print("pylxd smoke: all steps passed", flush=True)


if __name__ == "__main__":
    run(main)
