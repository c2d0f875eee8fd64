//! mTLS: droverd over HTTPS trusts clients by certificate fingerprint, as LXD does.
//!
//! Each test uses its own loopback address and a free port, so tests run in parallel.

use base64::Engine;
use drover_e2e::{HttpsClient, Member, free_address, lxc_remote, require_lxc};

/// Sets `core.https_address` through the socket and returns the server's fingerprint.
async fn listen(m: &Member, address: &str) -> String {
    let body = serde_json::json!({"config": {"core.https_address": address}}).to_string();
    m.raw("PATCH", "/1.0", Some(&body)).await.metadata();
    let info = m.raw("GET", "/1.0", None).await;
    let env = &info.metadata()["environment"];
    assert_eq!(
        env["addresses"],
        serde_json::json!([address]),
        "{}",
        info.text
    );
    let pem = env["certificate"].as_str().expect("certificate PEM");
    let fp = env["certificate_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    assert_eq!(tls::fingerprint_pem(pem).expect("pem"), fp);
    fp
}

fn der_base64(id: &tls::Identity) -> String {
    base64::engine::general_purpose::STANDARD.encode(id.certificate_der())
}

/// What does this test do?
/// - turns HTTPS on with `PATCH /1.0` (`core.https_address`) through the socket
/// - an untrusted client (with a certificate, and without one) gets LXD's limited
///   `GET /1.0` and 403 `not authorized` everywhere else, and cannot add itself without a
///   token
/// - a client pinning another fingerprint fails the handshake
/// - `POST /1.0/certificates` from the socket trusts the client's certificate: the same
///   client now sees everything
/// - `DELETE /1.0/certificates/{fp}` makes it untrusted again
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_clients_get_only_get_1_0_until_trusted() {
    let m = Member::start().await;
    let addr = free_address("127.0.0.21");
    let server_fp = listen(&m, &addr.to_string()).await;
    let me = tls::Identity::generate("tester@e2e", &[]).expect("client identity");
    let client = HttpsClient::new(addr, Some(&me), &server_fp);
    let anonymous = HttpsClient::new(addr, None, &server_fp);

    tracing::info!("--- untrusted: GET /1.0 only");
    for c in [&client, &anonymous] {
        let info = c.request("GET", "/1.0", None).await;
        let meta = info.metadata();
        assert_eq!(meta["auth"], "untrusted", "{}", info.text);
        assert_eq!(meta["api_version"], "1.0");
        assert!(
            meta["api_extensions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        assert!(meta.get("environment").is_none(), "{}", info.text);
        assert!(meta.get("config").is_none(), "{}", info.text);
        for (method, path) in [
            ("GET", "/1.0/instances"),
            ("GET", "/1.0/certificates"),
            ("GET", "/1.0/operations"),
            ("PUT", "/1.0"),
            ("GET", "/1.0/nonexistent"),
        ] {
            let body = (method == "PUT").then_some(r#"{"config": {}}"#);
            let r = c.request(method, path, body).await;
            assert_eq!(r.expect_error(403), "not authorized", "{method} {path}");
        }
        let r = c.request("POST", "/1.0/certificates", Some("{}")).await;
        assert_eq!(r.expect_error(403), "not authorized");
        let r = c
            .request(
                "POST",
                "/1.0/certificates",
                Some(r#"{"password": "guess"}"#),
            )
            .await;
        r.expect_error(403);
    }

    tracing::info!("--- a client pinning another fingerprint fails closed");
    let wrong = HttpsClient::new(addr, Some(&me), me.fingerprint());
    let err = wrong
        .try_request("GET", "/1.0", None)
        .await
        .expect_err("a wrong pin must fail the handshake");
    assert!(err.to_string().contains("tls handshake"), "{err}");

    tracing::info!("--- trust the client's certificate from the socket");
    let body =
        serde_json::json!({"name": "tester", "type": "client", "certificate": der_base64(&me)});
    let added = m
        .raw("POST", "/1.0/certificates", Some(&body.to_string()))
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let again = m
        .raw("POST", "/1.0/certificates", Some(&body.to_string()))
        .await;
    assert_eq!(
        again.expect_error(409),
        "Certificate already in trust store"
    );

    let info = client.request("GET", "/1.0", None).await;
    let meta = info.metadata();
    assert_eq!(meta["auth"], "trusted", "{}", info.text);
    assert_eq!(
        meta["environment"]["certificate_fingerprint"],
        server_fp.as_str()
    );
    assert_eq!(
        meta["config"]["core.https_address"],
        addr.to_string().as_str()
    );
    client
        .request("GET", "/1.0/instances", None)
        .await
        .metadata();
    let certs = client
        .request("GET", "/1.0/certificates?recursion=1", None)
        .await;
    let list = certs.metadata().as_array().expect("a list").clone();
    assert_eq!(list.len(), 1, "{}", certs.text);
    assert_eq!(list[0]["name"], "tester");
    assert_eq!(list[0]["type"], "client");
    assert_eq!(list[0]["fingerprint"], me.fingerprint());
    let r = client
        .request("POST", "/1.0/certificates", Some("{}"))
        .await;
    assert_eq!(r.expect_error(400), "Client is already trusted");
    let r = anonymous.request("GET", "/1.0/instances", None).await;
    r.expect_error(403);

    tracing::info!("--- remove it: untrusted again");
    let short = &me.fingerprint()[..12];
    m.raw("DELETE", &format!("/1.0/certificates/{short}"), None)
        .await
        .metadata();
    let r = client.request("GET", "/1.0/instances", None).await;
    assert_eq!(r.expect_error(403), "not authorized");
    let r = m
        .raw("GET", &format!("/1.0/certificates/{short}"), None)
        .await;
    r.expect_error(404);
}

/// What does this test do?
/// - a token cannot be made while HTTPS is off
/// - `POST /1.0/certificates {"token": true}` from the socket gives a `token` operation
///   carrying what `lxc` builds the token from
/// - an untrusted client sends the token (in `password`, as `lxc remote add` does) and is
///   trusted under the token's name; the token is single use
/// - a token whose operation was deleted (revoked) is refused
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_add_tokens_are_single_use_and_revocable() {
    let m = Member::start().await;
    let token_req = r#"{"token": true, "name": "ci", "type": "client"}"#;
    let r = m.raw("POST", "/1.0/certificates", Some(token_req)).await;
    assert_eq!(
        r.expect_error(400),
        "Can't issue token when server isn't listening on network"
    );

    let addr = free_address("127.0.0.22");
    let server_fp = listen(&m, &addr.to_string()).await;

    tracing::info!("--- make a token");
    let make_token = || async {
        let r = m.raw("POST", "/1.0/certificates", Some(token_req)).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let op = r.metadata().clone();
        assert_eq!(op["class"], "token");
        assert_eq!(op["status"], "Running");
        let meta = &op["metadata"];
        assert_eq!(meta["fingerprint"], server_fp.as_str());
        assert_eq!(meta["addresses"], serde_json::json!([addr.to_string()]));
        assert_eq!(meta["request"]["name"], "ci");
        let token = serde_json::json!({
            "client_name": meta["request"]["name"],
            "fingerprint": meta["fingerprint"],
            "addresses": meta["addresses"],
            "secret": meta["secret"],
            "expires_at": "0001-01-01T00:00:00Z",
        });
        let token = base64::engine::general_purpose::STANDARD.encode(token.to_string());
        (op["id"].as_str().expect("op id").to_string(), token)
    };
    let (op_id, token) = make_token().await;

    tracing::info!("--- redeem it from an untrusted client");
    let me = tls::Identity::generate("ci@e2e", &[]).expect("identity");
    let client = HttpsClient::new(addr, Some(&me), &server_fp);
    let redeem = serde_json::json!({"password": token}).to_string();
    let r = client
        .request("POST", "/1.0/certificates", Some(&redeem))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let info = client.request("GET", "/1.0", None).await;
    assert_eq!(info.metadata()["auth"], "trusted");
    let cert = m
        .raw(
            "GET",
            &format!("/1.0/certificates/{}", me.fingerprint()),
            None,
        )
        .await;
    assert_eq!(cert.metadata()["name"], "ci");
    let op = m
        .raw("GET", &format!("/1.0/operations/{op_id}"), None)
        .await;
    assert_eq!(op.metadata()["status"], "Cancelled", "{}", op.text);

    tracing::info!("--- the same token again, from another client: refused");
    let other = tls::Identity::generate("other@e2e", &[]).expect("identity");
    let other_client = HttpsClient::new(addr, Some(&other), &server_fp);
    let r = other_client
        .request("POST", "/1.0/certificates", Some(&redeem))
        .await;
    assert_eq!(
        r.expect_error(403),
        "No matching certificate add operation found"
    );

    tracing::info!("--- a revoked token: refused");
    let (op_id, token) = make_token().await;
    m.raw("DELETE", &format!("/1.0/operations/{op_id}"), None)
        .await
        .metadata();
    let body = serde_json::json!({"trust_token": token}).to_string();
    let r = other_client
        .request("POST", "/1.0/certificates", Some(&body))
        .await;
    assert_eq!(
        r.expect_error(403),
        "No matching certificate add operation found"
    );
    let r = other_client.request("GET", "/1.0/instances", None).await;
    r.expect_error(403);
    let certs = m.raw("GET", "/1.0/certificates", None).await;
    assert_eq!(
        certs.metadata().as_array().map(Vec::len),
        Some(1),
        "{}",
        certs.text
    );
}

/// What does this test do?
/// - invalid or unusable `core.https_address` values and unknown keys are 400s that store
///   nothing and leave the running listener alone
/// - unsetting the key stops the listener; setting it again restarts it
/// - a restart of the daemon listens again on the stored address
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_https_config_is_refused_and_changes_nothing() {
    let mut m = Member::start().await;
    let addr = free_address("127.0.0.23");
    let server_fp = listen(&m, &addr.to_string()).await;
    let client = HttpsClient::new(addr, None, &server_fp);
    let config = || async { m.raw("GET", "/1.0", None).await.metadata()["config"].clone() };
    let before = config().await;

    tracing::info!("--- refused values");
    let busy = std::net::TcpListener::bind("127.0.0.23:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    for value in [
        "not-an-address",
        "127.0.0.23:",
        "127.0.0.23:0",
        "10.255.255.254:8443",
        busy_addr.as_str(),
    ] {
        let body = serde_json::json!({"config": {"core.https_address": value}}).to_string();
        let r = m.raw("PATCH", "/1.0", Some(&body)).await;
        r.expect_error(400);
        let r = m.raw("PUT", "/1.0", Some(&body)).await;
        r.expect_error(400);
    }
    let r = m
        .raw(
            "PATCH",
            "/1.0",
            Some(r#"{"config": {"core.trust_passwrd": "x"}}"#),
        )
        .await;
    assert!(r.expect_error(400).contains("unknown key"), "{}", r.text);
    assert_eq!(config().await, before);
    assert_eq!(
        client.request("GET", "/1.0", None).await.metadata()["auth"],
        "untrusted"
    );

    tracing::info!("--- unset, then set again");
    m.raw("PUT", "/1.0", Some(r#"{"config": {}}"#))
        .await
        .metadata();
    assert!(
        client.try_request("GET", "/1.0", None).await.is_err(),
        "listener stopped"
    );
    assert_eq!(
        m.raw("GET", "/1.0", None).await.metadata()["environment"]["addresses"],
        serde_json::json!([])
    );
    listen(&m, &addr.to_string()).await;
    client.request("GET", "/1.0", None).await.metadata();

    tracing::info!("--- restart: listens on the stored address with the same certificate");
    m.restart().await;
    let info = m.raw("GET", "/1.0", None).await;
    assert_eq!(
        info.metadata()["environment"]["certificate_fingerprint"],
        server_fp.as_str()
    );
    client.request("GET", "/1.0", None).await.metadata();
}

/// What does this test do?
/// - `lxc config set core.https_address` (GET then PUT /1.0 with the ETag) turns HTTPS on
/// - `lxc config trust add --name` prints a token
/// - a fresh `lxc` (own config dir, new client certificate) adds the remote with that token,
///   checking the server's fingerprint, and lists instances over HTTPS
/// - `lxc config trust list` shows the new client
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_remote_add_with_a_token_then_list() {
    require_lxc();
    let m = Member::start().await;
    let addr = free_address("127.0.0.24");
    m.lxc(&["config", "set", "core.https_address", &addr.to_string()])
        .await
        .success();
    let out = m.lxc(&["config", "get", "core.https_address"]).await;
    assert_eq!(out.success().stdout.trim(), addr.to_string());

    tracing::info!("--- lxc config trust add");
    let out = m
        .lxc(&["config", "trust", "add", "--name", "remote-user"])
        .await;
    let token = out
        .success()
        .stdout
        .lines()
        .last()
        .expect("the token line")
        .trim()
        .to_string();

    tracing::info!("--- lxc remote add + list from a fresh client");
    let conf = tempfile::tempdir().expect("tempdir");
    lxc_remote(conf.path(), &["remote", "add", "d1", &token])
        .await
        .success();
    let out = lxc_remote(conf.path(), &["list", "d1:", "--format", "csv"]).await;
    assert_eq!(out.success().stdout.trim(), "", "no instances yet");
    let out = lxc_remote(conf.path(), &["info", "d1:"]).await;
    assert!(
        out.success().stdout.contains("auth: trusted"),
        "{}",
        out.stdout
    );

    tracing::info!("--- the token is used up");
    let conf2 = tempfile::tempdir().expect("tempdir");
    let out = lxc_remote(conf2.path(), &["remote", "add", "d2", &token]).await;
    assert!(
        out.failure()
            .contains("No matching certificate add operation found"),
        "{}",
        out.stderr
    );

    let out = m.lxc(&["config", "trust", "list", "--format", "csv"]).await;
    assert!(
        out.success().stdout.contains("remote-user"),
        "{}",
        out.stdout
    );
}
