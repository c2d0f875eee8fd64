#!/usr/bin/env python3
"""What a Python script trusting itself to a drover cluster through pylxd 2.4 runs into.

usage: pylxd_sweep_s7.py trust|restore|twice SOCKET_M1 SOCKET_M2 SOCKET_M3

The cluster (m1, m2, m3) is formed (and, for `restore` and `twice`, holds the `busybox`
image).

`twice`: an instance slow to stop runs on m2. m2 is evacuated and, while that runs (m2
`Evacuating`), evacuated again: the second operation fails with `Cluster member is already
evacuated` (drover used to run a second plan of the same member alongside the first and
report both a success), the first succeeds. The same for the restore (`Cannot restore "m2"
while a restore operation is in progress`). The instance ends home, running.

`restore`: two running instances on m2; m2 evacuated (both run elsewhere), then one of
them stopped by hand; m3 and then m1 evacuated too (m1's evacuation has nowhere to move
them: both stopped in place on m1). Restoring m2 must bring both home, the one stopped by
the evacuation running again (it used to come home stopped, though it ran before and its
`volatile.last_state.power` said `RUNNING`), the one stopped by hand stopped; then m1 and
m3 are restored and everything is where it was.

`trust`: two client certificates are made here (with
`cryptography`, which pylxd needs anyway); through pylxd:

1. `certificates.create("", pem)` on m1's unix socket adds the first one (pylxd sends the
   PEM body with its line breaks, which LXD's Go base64 skips; drover refused it as
   "Invalid certificate material"); that client is then trusted over HTTPS on m3;
2. `core.trust_password` set through m1's unix socket (drover refused the key): `GET /1.0`
   on m2 shows it as `true`, never the password; a `PUT /1.0` of what GET showed keeps it;
3. the second client, untrusted on m2, `authenticate("wrong")` is a 403 and leaves it
   untrusted; `authenticate(<password>)` trusts it, on every member (`cluster.members`
   through m1's HTTPS address);
4. the password unset: it is gone from `GET /1.0`.

Prints one `ok:` line per step; on a mismatch prints `FAIL:` and exits 1.
"""

import datetime
import os
import sys
import tempfile
import time
import warnings

import pylxd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pylxd.exceptions import LXDAPIException

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from steps import check, fail, run  # noqa: E402 - after the line above

# requests lets a CA bundle named in the environment override `verify=False`.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")  # unverified HTTPS to the members' self-signed certs

PASSWORD = "s7-trust-me"


def make_cert(where, name):
    """A self-signed client certificate and key in `where`; (cert path, key path, PEM)."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    crt, keyf = os.path.join(where, f"{name}.crt"), os.path.join(where, f"{name}.key")
    with open(crt, "wb") as f:
        f.write(pem)
    with open(keyf, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return crt, keyf, pem


def https(address, crt, key):
    return pylxd.Client(endpoint=f"https://{address}", cert=(crt, key), verify=False)


def trust(u1, u2, u3):
    addr = {
        n: u.api.get().json()["metadata"]["config"]["core.https_address"]
        for n, u in (("m1", u1), ("m2", u2), ("m3", u3))
    }
    tmp = tempfile.mkdtemp(prefix="pylxd-s7-")
    crt_a, key_a, pem_a = make_cert(tmp, "s7-added")
    crt_b, key_b, _ = make_cert(tmp, "s7-password")

    # 1. A certificate added through the unix socket, PEM body with its line breaks.
    check("added: trusted before", https(addr["m3"], crt_a, key_a).trusted, False)
    added = u1.certificates.create("", pem_a)
    check("added: name", added.name, "s7-added")
    check("added: trusted on m3", https(addr["m3"], crt_a, key_a).trusted, True)

    # 2. The trust password: kept hashed, shown as true.
    u1.api.patch(json={"config": {"core.trust_password": PASSWORD}})
    config = u2.api.get().json()["metadata"]["config"]
    check("password shown on m2", config.get("core.trust_password"), "true")
    u1.api.put(json={"config": u1.api.get().json()["metadata"]["config"]})

    # 3. pylxd's authenticate with it.
    b2 = https(addr["m2"], crt_b, key_b)
    check("password client: trusted before", b2.trusted, False)
    try:
        b2.authenticate("not-the-password")
        fail("a wrong trust password was taken")
    except LXDAPIException as e:
        check("wrong password: HTTP status", e.response.status_code, 403)
    check("after a wrong password: trusted", https(addr["m2"], crt_b, key_b).trusted, False)
    b2.authenticate(PASSWORD)
    check("after authenticate: trusted", b2.trusted, True)
    b1 = https(addr["m1"], crt_b, key_b)
    check("trusted on m1", b1.trusted, True)
    names = sorted(m.server_name for m in b1.cluster.members.all())
    check("members through m1's HTTPS", names, ["m1", "m2", "m3"])
    certs = sorted(c.name for c in u3.certificates.all())
    check("trust store", certs, ["s7-added", "s7-password"])

    # 4. Unset.
    u2.api.patch(json={"config": {"core.trust_password": ""}})
    config = u1.api.get().json()["metadata"]["config"]
    check("password after unset", config.get("core.trust_password"), None)


def member_state(client, member, action):
    r = client.api.cluster.members[member].state.post(json={"action": action})
    check(f"{action} {member}: HTTP status", r.status_code, 202)
    op = client.operations.get(r.json()["operation"])
    op.wait()
    check(f"{action} {member}", client.operations.get(op.id).status, "Success")


def placement(client):
    """name -> (location, status) of the scenario's instances."""
    return {
        i.name: (i.location, i.status)
        for i in client.instances.all(recursion=1)
        if i.name.startswith("s7")
    }


def restore(u1, u2, u3):
    for name in ("s7home", "s7off"):
        u1.instances.create(
            {"name": name, "source": {"type": "image", "alias": "busybox"}},
            wait=True,
            target="m2",
        ).start(wait=True)
    member_state(u3, "m2", "evacuate")
    away = placement(u2)
    for name, (where, status) in sorted(away.items()):
        if where == "m2" or status != "Running":
            fail(f"{name} after the evacuation of m2: {where} {status}")
    u3.instances.get("s7off").stop(wait=True)
    member_state(u1, "m3", "evacuate")
    member_state(u2, "m1", "evacuate")
    check(
        "after m3 and m1 are evacuated",
        placement(u3),
        {"s7home": ("m1", "Stopped"), "s7off": ("m1", "Stopped")},
    )
    member_state(u1, "m2", "restore")
    check(
        "after m2 is restored",
        placement(u3),
        {"s7home": ("m2", "Running"), "s7off": ("m2", "Stopped")},
    )
    check(
        "s7home origin",
        u2.instances.get("s7home").config.get("volatile.evacuate.origin"),
        None,
    )
    member_state(u3, "m1", "restore")
    member_state(u2, "m3", "restore")
    check(
        "members",
        sorted((m.server_name, m.status) for m in u1.cluster.members.all()),
        [("m1", "Online"), ("m2", "Online"), ("m3", "Online")],
    )
    check(
        "after every restore",
        placement(u1),
        {"s7home": ("m2", "Running"), "s7off": ("m2", "Stopped")},
    )
    inst = u1.instances.get("s7home")
    inst.stop(wait=True, force=True)
    for name in ("s7home", "s7off"):
        u1.instances.get(name).delete(wait=True)


def twice(u1, u2, u3):
    inst = u1.instances.create(
        {
            "name": "s7slow",
            "config": {"boot.stop_signal": "SIGWINCH", "boot.host_shutdown_timeout": "3"},
            "source": {"type": "image", "alias": "busybox"},
        },
        wait=True,
        target="m2",
    )
    inst.start(wait=True)
    for action, busy, refusal in (
        ("evacuate", "Evacuating", "Cluster member is already evacuated"),
        ("restore", "Restoring", 'Cannot restore "m2" while a restore operation is in progress'),
    ):
        r = u1.api.cluster.members["m2"].state.post(json={"action": action})
        first = r.json()["operation"]
        deadline = time.monotonic() + 10
        while u3.cluster.members.get("m2").status != busy:
            if time.monotonic() > deadline:
                fail(f"m2 never listed {busy}")
            time.sleep(0.05)
        r = u2.api.cluster.members["m2"].state.post(json={"action": action})
        check(f"second {action}: HTTP status", r.status_code, 202)
        try:
            u3.operations.wait_for_operation(r.json()["operation"])
            fail(f"a second {action} of m2 while the first runs succeeded")
        except LXDAPIException as e:
            check(f"second {action}: error", str(e), refusal)
        check(f"first {action}", u3.operations.wait_for_operation(first).status, "Success")
        where = u1.instances.get("s7slow")
        if (where.location == "m2") != (action == "restore") or where.status != "Running":
            fail(f"after the {action}: {where.location} {where.status}")
        print(f"ok: after the {action}: {where.location} {where.status}", flush=True)
    check(
        "m2 at the end",
        (u1.cluster.members.get("m2").status, u1.instances.get("s7slow").location),
        ("Online", "m2"),
    )
    inst = u1.instances.get("s7slow")
    inst.stop(wait=True, force=True)
    inst.delete(wait=True)


def main():
    scenarios = {"trust": trust, "restore": restore, "twice": twice}
    if len(sys.argv) != 5 or sys.argv[1] not in scenarios:
        fail(f"usage: {sys.argv[0]} trust|restore|twice SOCKET_M1 SOCKET_M2 SOCKET_M3")
    u1, u2, u3 = (pylxd.Client(endpoint=s) for s in sys.argv[2:5])
    scenarios[sys.argv[1]](u1, u2, u3)
    print("pylxd sweep s7: all steps passed", flush=True)


if __name__ == "__main__":
    run(main)
