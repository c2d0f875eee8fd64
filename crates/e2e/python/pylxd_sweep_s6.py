#!/usr/bin/env python3
"""pylxd waits on an evacuation while its coordinator is killed, and exports an image.

usage: pylxd_sweep_s6.py evacuation|leader|reboot SOCKET_M1 SOCKET_M2 SOCKET_M3 IMAGE_TARBALL

The cluster (m1, m2, m3) is formed and m1 holds the `busybox` image.

`leader`: pylxd's `ClusterMember.save()` of m2 (a `PUT {}`) is refused and m2 stays in
group `default` (it used to be left in no group); then the script has the test SIGKILL
the Raft leader's droverd (it prints `KILL mN`
and reads `DONE KILL mN`), then reads the members through each live member until one of
them is the new leader: each live member must be `Online` in every answer (a follower
only hears from the leader, and used to list the other follower `Offline` until the
election ended); then it has the dead member started again (`START mN`) and waits for all
three `Online`.

`reboot`: three running instances with `boot.autostart=true` on m2; the test SIGKILLs m2's
droverd (`KILL m2`), the script kills the instances' init processes (as a power loss
would), the test starts m2 again (`START m2`). m2 must answer within 8 s (each autostart
used to wait 10 s for a write m2 could not apply, its Raft endpoint not listening yet,
and fail), and every instance must run again with `volatile.last_state.power=RUNNING`.

`evacuation`, through pylxd:

1. `images.get(fp).export()` through m3, which does not hold the image's files yet: the
   bytes are the tarball that was imported (their SHA-256 is the fingerprint);
2. six instances on m2 (four running, each with its own file; two stopped), the running
   ones slow to stop; an 8 MiB file pushed through m1 into one of them and read back
   through m3 (`boot.stop_signal` their init ignores, then killed after 4 s);
3. evacuation of m2 through m3, and `operations.wait_for_operation` on it in a thread;
   once the plan has started, the script has the test kill m2's droverd with SIGKILL
   (it prints `KILL m2` and reads the test's `DONE KILL m2` from stdin) and, 2 s later,
   start it again on the same state dir (`START m2`);
4. the wait returns the operation's `Success` (it does not raise), m2 is `Evacuated`,
   every instance is listed once, on m1 or m3, in the power state it had;
5. restore: every instance back on m2, in its power state, its files intact.

Prints one `ok:` line per step; on a mismatch prints `FAIL:` and exits 1.
"""

import hashlib
import os
import signal
import sys
import threading
import time

import pylxd
from pylxd.exceptions import LXDAPIException

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from steps import check, fail, run  # noqa: E402 - after the line above

RUNNING = [f"s6r{n}" for n in range(4)]
STOPPED = [f"s6s{n}" for n in range(2)]
# A signal the image's init does not trap: each running instance takes 4 s to stop, so the
# evacuation is still under way when m2 is killed.
SLOW_STOP = {"boot.stop_signal": "SIGWINCH", "boot.host_shutdown_timeout": "4"}


def placement(client):
    """name -> (location, status) of every instance, asserting each is listed once."""
    seen = {}
    for i in client.instances.all(recursion=1):
        if i.name in seen:
            fail(f"{i.name} is listed twice")
        seen[i.name] = (i.location, i.status)
    return seen


def ask(request):
    """Has the test kill (`KILL mN`) or start again (`START mN`) a member's droverd."""
    print(request, flush=True)
    check(f"the test did {request}", sys.stdin.readline().strip(), f"DONE {request}")


def plan_steps(client, op_id):
    md = client.api.operations[op_id].get().json()["metadata"]["metadata"] or {}
    return [p["step"] for p in md.get("evacuation_plan", [])]


def member_state(client, member, action):
    r = client.api.cluster.members[member].state.post(json={"action": action})
    check(f"{action} {member}: HTTP status", r.status_code, 202)
    return r.json()["operation"].split("/")[-1]


def save_refused(client):
    """pylxd's `ClusterMember.save()` sends `PUT {}`: refused, the member kept in its group."""
    member = client.cluster.members.get("m2")
    try:
        member.save(wait=True)
        fail("PUT {} on a member was accepted")
    except LXDAPIException as e:
        check("members.get(m2).save()", str(e), "Cluster members need to belong to at least one group")
    check("m2 groups after save()", client.cluster.members.get("m2").groups, ["default"])


def leader(clients):
    save_refused(clients["m3"])
    names = sorted(clients)
    old = [m.server_name for m in clients["m1"].cluster.members.all() if "database-leader" in m.roles]
    check("one leader", len(old), 1)
    old = old[0]
    live = [n for n in names if n != old]
    ask(f"KILL {old}")
    deadline = time.time() + 60
    polls = 0
    while True:
        leaders = set()
        for via in live:
            seen = {m.server_name: m for m in clients[via].cluster.members.all()}
            for name in live:
                if seen[name].status != "Online":
                    fail(f"through {via}, live member {name} is {seen[name].status!r}")
            leaders |= {n for n, m in seen.items() if "database-leader" in m.roles}
            single = clients[via].cluster.members.get(live[0] if via != live[0] else live[1])
            if single.status != "Online":
                fail(f"through {via}, members.get({single.server_name}) is {single.status!r}")
        polls += 1
        if len(leaders) == 1 and leaders <= set(live):
            break
        if time.time() > deadline:
            fail(f"no new leader within 60 s (leaders listed: {sorted(leaders)})")
        time.sleep(0.2)
    print(f"ok: live members Online in all {polls} polls; new leader {leaders.pop()}", flush=True)
    ask(f"START {old}")
    deadline = time.time() + 90
    while {m.status for m in clients[live[0]].cluster.members.all()} != {"Online"}:
        if time.time() > deadline:
            fail("the restarted member is not Online within 90 s")
        time.sleep(0.5)
    print("ok: all three Online again", flush=True)


def reboot(c1, c3):
    names = [f"s6b{n}" for n in range(3)]
    pids = []
    for name in names:
        inst = c1.instances.create(
            {
                "name": name,
                "config": {"boot.autostart": "true"},
                "source": {"type": "image", "alias": "busybox"},
            },
            wait=True,
            target="m2",
        )
        inst.start(wait=True)
        pids.append(inst.state().pid)
    ask("KILL m2")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    ask("START m2")
    took = time.time() - t0
    print(f"ok: m2 answered {took:.1f} s after its start", flush=True)
    if took > 8:
        fail(f"m2 took {took:.1f} s to answer with {len(names)} instances to autostart")
    for name in names:
        inst = c3.instances.get(name)
        check(f"{name}: status after the restart", inst.status, "Running")
        check(f"{name}: last power state", inst.config.get("volatile.last_state.power"), "RUNNING")
        if inst.state().pid in pids:
            fail(f"{name}: its old init still runs")


def main():
    scenarios = ("evacuation", "leader", "reboot")
    if len(sys.argv) != 6 or sys.argv[1] not in scenarios:
        fail(f"usage: {sys.argv[0]} {'|'.join(scenarios)} SOCKET_M1 SOCKET_M2 SOCKET_M3 IMAGE")
    c1, c2, c3 = (pylxd.Client(endpoint=s) for s in sys.argv[2:5])
    if sys.argv[1] != "evacuation":
        if sys.argv[1] == "leader":
            leader({"m1": c1, "m2": c2, "m3": c3})
        else:
            reboot(c1, c3)
        print("pylxd sweep s6: all steps passed", flush=True)
        return
    with open(sys.argv[5], "rb") as f:
        tarball = f.read()

    # 1. Export through a member that has to fetch the files first.
    fp = c1.images.get_by_alias("busybox").fingerprint
    exported = c3.images.get(fp).export().read()
    check("export: same bytes as imported", exported == tarball, True)
    check("export: sha256 is the fingerprint", hashlib.sha256(exported).hexdigest(), fp)

    # 2. The instances on m2.
    for name in RUNNING + STOPPED:
        inst = c1.instances.create(
            {
                "name": name,
                "config": SLOW_STOP if name in RUNNING else {},
                "source": {"type": "image", "alias": "busybox"},
            },
            wait=True,
            target="m2",
        )
        if name in RUNNING:
            inst.start(wait=True)
            res = inst.execute(["sh", "-c", f"echo {name} > /root/mine"])
            check(f"{name}: file written", res.exit_code, 0)
    # 8 MiB pushed through m1 to an instance on m2 and read back through m3 (axum's default
    # 2 MiB body limit refused anything bigger); it must survive the round trip below.
    big = os.urandom(8 * 1024 * 1024)
    big_sum = hashlib.sha256(big).hexdigest()
    c1.instances.get(RUNNING[0]).files.put("/root/big", big)
    check("8 MiB file read back through m3", c3.instances.get(RUNNING[0]).files.get("/root/big") == big, True)
    before = placement(c1)
    want = {n: ("m2", "Running" if n in RUNNING else "Stopped") for n in RUNNING + STOPPED}
    check("before the evacuation", before, want)

    # 3. Evacuate m2 through m3 and wait in a thread while m2 is killed and restarted.
    op_id = member_state(c3, "m2", "evacuate")
    result = {}

    def waiter():
        try:
            result["status"] = c3.operations.wait_for_operation(op_id).status
        except Exception as e:  # noqa: BLE001 - what pylxd raised is the result
            result["status"] = f"{type(e).__name__}: {e!s}"

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while "done" not in plan_steps(c3, op_id):
        if time.time() > deadline:
            fail("the evacuation made no progress in 60 s")
        time.sleep(0.05)
    steps = plan_steps(c3, op_id)
    if all(s == "done" for s in steps):
        fail(f"the evacuation finished before m2 could be killed: {steps}")
    print(f"ok: plan under way: {steps}", flush=True)
    ask("KILL m2")
    time.sleep(2)
    ask("START m2")

    # 4. The wait ends with the evacuation's result, not an exception.
    thread.join(180)
    check("wait_for_operation still waiting", thread.is_alive(), False)
    check("wait_for_operation across the crash", result.get("status"), "Success")
    check("m2 after the evacuation", c1.cluster.members.get("m2").status, "Evacuated")
    after = placement(c2)
    for name, (where, status) in after.items():
        if where not in ("m1", "m3"):
            fail(f"{name} is on {where!r} after the evacuation")
        check(f"{name}: power state after the evacuation", status, want[name][1])
    check("instances after the evacuation", sorted(after), sorted(want))

    # 5. Restore brings everything home.
    op_id = member_state(c1, "m2", "restore")
    check("restore", c1.operations.wait_for_operation(op_id).status, "Success")
    check("after the restore", placement(c3), want)
    for name in RUNNING:
        res = c2.instances.get(name).execute(["cat", "/root/mine"])
        check(f"{name}: its file after the round trip", res.stdout, f"{name}\n")
    res = c3.instances.get(RUNNING[0]).execute(["sha256sum", "/root/big"])
    check("8 MiB file after the round trip", res.stdout.split()[:1], [big_sum])
    print("pylxd sweep s6: all steps passed", flush=True)


if __name__ == "__main__":
    run(main)
