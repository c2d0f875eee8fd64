#!/usr/bin/env python3
"""pylxd drives a drover cluster the way a script drives a LXD cluster.

usage: pylxd_cluster.py SOCKET_M1 SOCKET_M2 SOCKET_M3

The cluster (m1, m2, m3) is formed and holds the `busybox` image. Through pylxd, on the
unix sockets of different members:

1. `cluster.get()` and `cluster.members.all()` / `.get()`: names, status, roles, urls;
2. `instances.create(..., target="m2")` with `wait=True`; its `location`; `execute`;
   `files.put/get/delete` through another member;
3. a move as `lxc move --target` sends it (`migration: true`, `live: false`,
   `?target=m3`) through `client.api`, the operation waited on with
   `operations.wait_for_operation` through another member;
4. evacuate and restore of m3 (`POST /1.0/cluster/members/m3/state`: pylxd 2.4 has no
   method for it), waited on the same way; the member's status in between;
5. a bad action is a 400 `LXDAPIException`; stop and delete.

Prints one `ok:` line per step; on a mismatch prints `FAIL:` and exits 1.
"""

import sys

import pylxd
from pylxd.exceptions import LXDAPIException

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from steps import check, fail, run  # noqa: E402 - after the line above

NAME = "pyc1"


def location(client, name):
    # A fresh object: pylxd's sync() keeps a readonly attribute it already changed once.
    return client.instances.get(name).location


def member_state(client, member, action, mode=None):
    body = {"action": action}
    if mode is not None:
        body["mode"] = mode
    r = client.api.cluster.members[member].state.post(json=body)
    check(f"{action} {member}: HTTP status", r.status_code, 202)
    return client.operations.wait_for_operation(r.json()["operation"])


def main():
    if len(sys.argv) != 4:
        fail(f"usage: {sys.argv[0]} SOCKET_M1 SOCKET_M2 SOCKET_M3")
    c1, c2, c3 = (pylxd.Client(endpoint=s) for s in sys.argv[1:])
    check("trusted", c1.trusted, True)
    check("server_clustered", c2.host_info["environment"]["server_clustered"], True)

    # 1. The cluster and its members.
    cluster = c2.cluster.get()
    check("cluster.server_name", cluster.server_name, "m2")
    check("cluster.enabled", cluster.enabled, True)
    names = sorted(m.server_name for m in c1.cluster.members.all())
    check("members.all", names, ["m1", "m2", "m3"])
    for name in names:
        m = c3.cluster.members.get(name)
        check(f"{name}.status", m.status, "Online")
        check(f"{name}.message", m.message, "Fully operational")
        if not m.url.startswith("https://127.0.0."):
            fail(f"{name}.url: {m.url!r}")
        if not any(r.startswith("database") for r in m.roles):
            fail(f"{name}.roles: {m.roles!r}")
        check(f"{name}.groups", m.groups, ["default"])

    # 2. Create on a chosen member, run a command through another.
    inst = c1.instances.create(
        {"name": NAME, "source": {"type": "image", "alias": "busybox"}},
        wait=True,
        target="m2",
    )
    check("created on", location(c3, NAME), "m2")
    inst.start(wait=True)
    res = c3.instances.get(NAME).execute(["cat", "/etc/hostname"])
    check("execute through m3: exit code", res.exit_code, 0)
    check("execute through m3: stdout", res.stdout, f"{NAME}\n")
    files = c1.instances.get(NAME).files
    files.put("/root/py.txt", b"from pylxd\n", mode="0600")
    check("files.get through m1", files.get("/root/py.txt"), b"from pylxd\n")
    res = c2.instances.get(NAME).execute(["stat", "-c", "%a", "/root/py.txt"])
    check("pushed file mode", res.stdout, "600\n")
    files.delete("/root/py.txt")
    try:
        files.get("/root/py.txt")
        fail("a deleted file is still there")
    except Exception as e:  # noqa: BLE001 - pylxd raises NotFound
        check("deleted file", type(e).__name__, "NotFound")

    # 3. Move it running (stateless) to m3, as lxc move --target --stateless does.
    r = c1.api.instances[NAME].post(
        json={"name": NAME, "migration": True, "live": False}, target="m3"
    )
    check("move: HTTP status", r.status_code, 202)
    op = c2.operations.wait_for_operation(r.json()["operation"])
    check("move operation", op.status, "Success")
    check("after the move: location", location(c1, NAME), "m3")
    check("after the move: status", c2.instances.get(NAME).status, "Running")

    # 4. Evacuate m3: the instance goes elsewhere, running; restore brings it back.
    op = member_state(c1, "m3", "evacuate", mode="")
    check("evacuate operation", op.status, "Success")
    check("m3 evacuated", c2.cluster.members.get("m3").status, "Evacuated")
    where = location(c2, NAME)
    if where not in ("m1", "m2"):
        fail(f"after the evacuation {NAME} is on {where!r}")
    print(f"ok: evacuated to {where}", flush=True)
    check("after the evacuation: status", c1.instances.get(NAME).status, "Running")
    try:
        c1.instances.create(
            {"name": "pyc2", "source": {"type": "image", "alias": "busybox"}},
            wait=True,
            target="m3",
        )
        fail("creating on an evacuated member succeeded")
    except LXDAPIException as e:
        check("create on m3 refused", str(e), "Cluster member is evacuated")
    op = member_state(c2, "m3", "restore")
    check("restore operation", op.status, "Success")
    check("m3 restored", c1.cluster.members.get("m3").status, "Online")
    check("after the restore: location", location(c3, NAME), "m3")
    check("after the restore: status", c3.instances.get(NAME).status, "Running")

    # 5. A bad action changes nothing.
    try:
        c1.api.cluster.members["m3"].state.post(json={"action": "bogus"})
        fail("a bogus action was accepted")
    except LXDAPIException as e:
        check("bad action: HTTP status", e.response.status_code, 400)
        check("bad action: error", str(e), 'Unknown action "bogus"')
    check("m3 after a bad action", c1.cluster.members.get("m3").status, "Online")

    inst = c1.instances.get(NAME)
    inst.stop(wait=True, force=True)
    inst.delete(wait=True)
    check("exists after delete", c2.instances.exists(NAME), False)
    print("pylxd cluster: all steps passed", flush=True)


if __name__ == "__main__":
    run(main)
