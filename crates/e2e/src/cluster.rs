//! Forming a cluster of real members for a test, the way LXD's tools do: the first member
//! gets an address and enables clustering, the others join with tokens through LXD
//! 5.0.2's `lxd init --preseed` body.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::{Member, free_address, wait_until};

/// How long a forming cluster may take to settle (joins, elections, catch-up).
pub const CLUSTER_SETTLE: Duration = Duration::from_secs(90);

async fn call(m: &Member, method: &str, path: &str, body: Value) -> crate::RawResponse {
    m.raw(method, path, Some(&body.to_string())).await
}

/// Starts `ips.len()` members and forms a cluster of them, named `m1`, `m2`, ... with
/// `m1` on `ips[0]` (free ports); returns once every member lists all of them `Online`.
///
/// # Panics
///
/// When a step fails (with the daemon's answer).
pub async fn form_cluster(ips: &[&str]) -> Vec<Member> {
    form_cluster_with(ips, None).await
}

/// [`form_cluster`] with every member started by `bin` (see [`Member::start_with`]) when
/// given.
///
/// # Panics
///
/// As [`form_cluster`].
pub async fn form_cluster_with(ips: &[&str], bin: Option<&std::path::Path>) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::with_capacity(ips.len());
    let mut first_address = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let m = match bin {
            Some(b) => Member::start_with(b.to_path_buf()).await,
            None => Member::start().await,
        };
        let name = format!("m{}", i + 1);
        let address = free_address(ip).to_string();
        if i == 0 {
            enable(&m, &address, &name).await;
            first_address = address;
        } else {
            join(&members[0], &first_address, &m, &name, &address).await;
        }
        members.push(m);
    }
    for m in &members {
        wait_until("every member Online", CLUSTER_SETTLE, || async {
            let r = m.raw("GET", "/1.0/cluster/members?recursion=1", None).await;
            let listed = r.metadata().as_array().cloned().unwrap_or_default();
            listed.len() == ips.len() && listed.iter().all(|v| v["status"] == "Online")
        })
        .await;
    }
    members
}

/// Gives `m` an HTTPS address and makes it the first member `name` of a new cluster.
///
/// # Panics
///
/// When a request is refused (with the daemon's answer).
pub async fn enable(m: &Member, address: &str, name: &str) {
    call(
        m,
        "PATCH",
        "/1.0",
        json!({"config": {"core.https_address": address}}),
    )
    .await
    .metadata();
    let r = call(
        m,
        "PUT",
        "/1.0/cluster",
        json!({"server_name": name, "enabled": true}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.metadata()["status"], "Success", "{}", r.text);
}

/// Joins `joiner` as `name` on `address` through `via`, with a token from `issuer`.
async fn join(issuer: &Member, via: &str, joiner: &Member, name: &str, address: &str) {
    let r = call(
        issuer,
        "POST",
        "/1.0/cluster/members",
        json!({"server_name": name}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let meta = r.metadata()["metadata"].clone();
    let token = join_token(&meta);
    let der = tls::fetch_certificate(via.parse().expect("cluster address"))
        .await
        .expect("fetch the cluster certificate");
    assert_eq!(
        tls::fingerprint(&der),
        meta["fingerprint"].as_str().unwrap_or_default(),
        "the token's fingerprint"
    );
    let pem = tls::certificate_pem(&der);
    let r = call(
        joiner,
        "PUT",
        "/1.0/cluster",
        join_body(name, address, via, &pem, &token, Value::Null),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
}

/// The token `lxc cluster add` prints for a token operation's `metadata`: base64 of the
/// JSON LXD 5.0.2 joiners decode.
pub fn join_token(meta: &Value) -> String {
    let token = json!({
        "server_name": meta["serverName"],
        "fingerprint": meta["fingerprint"],
        "addresses": meta["addresses"],
        "secret": meta["secret"],
        "expires_at": meta["expiresAt"],
    });
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

/// The `PUT /1.0/cluster` body `lxd init` 5.0.2 sends to join `name` at `address` through
/// `via`, with the cluster certificate `pem`, the whole `token` and `member_config`.
pub fn join_body(
    name: &str,
    address: &str,
    via: &str,
    pem: &str,
    token: &str,
    member_config: Value,
) -> Value {
    json!({
        "server_name": name,
        "enabled": true,
        "member_config": member_config,
        "cluster_address": via,
        "cluster_certificate": pem,
        "server_address": address,
        "cluster_password": token,
    })
}

/// The join token `lxc cluster add` printed (its last word-free line).
pub fn printed_token(out: &crate::Output) -> String {
    out.success();
    out.stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.contains(' '))
        .unwrap_or_else(|| panic!("no token in:\n{}", out.stdout))
        .to_string()
}
