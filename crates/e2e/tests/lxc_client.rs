//! LXD's own `lxc` (5.0.2, Debian's lxd-client) drives droverd unchanged.
//!
//! This is the only test of the suite that names an instance `c1` (daemons of parallel tests
//! share the cgroup parent, so names are unique across the suite).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_e2e::{Member, require_lxc, wait_until};

/// `lxc monitor` running in the background, its output collected as it arrives.
struct Monitor {
    child: tokio::process::Child,
    output: Arc<Mutex<String>>,
}

impl Monitor {
    fn spawn(m: &Member, args: &[&str]) -> Monitor {
        let mut child = m
            .lxc_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lxc monitor");
        let output = drover_e2e::collect_output(child.stdout.take().expect("piped stdout"));
        Monitor { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().expect("monitor output").clone()
    }
}

/// The `lxc list -f csv` row of `name`, if any.
async fn csv_row(m: &Member, name: &str) -> Option<String> {
    let out = m.lxc(&["list", "-f", "csv"]).await;
    out.success();
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .map(str::to_string)
}

/// What does this test do?
///
/// 1. `lxc image import` of the busybox image with alias `busybox`; `lxc image list` shows it.
/// 2. `lxc launch busybox c1`; `lxc list` (table and csv) shows c1 RUNNING.
/// 3. `lxc exec`: `/etc/hostname` is `c1`, exit code 7 propagates, stdin passes through.
/// 4. `lxc config set/get/show` of `limits.memory`; a bad value fails with a message and
///    changes nothing.
/// 5. `lxc monitor --type=lifecycle` in the background (live once it reports an update) sees
///    the `instance-started` of `lxc stop` + `lxc start`; `lxc restart` works.
/// 6. `lxc info c1` and `lxc operation list`.
/// 7. `lxc delete c1` is refused while it runs; `lxc delete --force c1` deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_drives_droverd_unchanged() {
    require_lxc();
    let m = Member::start().await;
    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    let image = image.to_str().expect("utf-8 path");

    tracing::info!("--- lxc image import / list");
    let out = m
        .lxc(&["image", "import", image, "--alias", "busybox"])
        .await;
    out.success();
    assert!(
        out.stdout.contains("Image imported with fingerprint: "),
        "{}",
        out.stdout
    );
    let out = m.lxc(&["image", "list"]).await;
    out.success();
    assert!(out.stdout.contains("| busybox "), "{}", out.stdout);
    let out = m.lxc(&["image", "list", "-f", "csv"]).await;
    out.success();
    assert!(out.stdout.starts_with("busybox,"), "{}", out.stdout);

    tracing::info!("--- lxc launch busybox c1, lxc list");
    let out = m.lxc(&["launch", "busybox", "c1"]).await;
    out.success();
    assert!(out.stdout.contains("Creating c1"), "{}", out.stdout);
    assert!(out.stdout.contains("Starting c1"), "{}", out.stdout);
    let out = m.lxc(&["list"]).await;
    out.success();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| c1 "))
        .unwrap_or_else(|| panic!("no c1 row in:\n{}", out.stdout));
    assert!(row.contains("| RUNNING |"), "{row}");
    assert!(row.contains("| CONTAINER |"), "{row}");
    let row = csv_row(&m, "c1").await.expect("c1 in csv");
    assert!(row.starts_with("c1,RUNNING,"), "{row}");

    tracing::info!("--- lxc exec: hostname, exit code, stdin");
    let out = m.lxc(&["exec", "c1", "--", "cat", "/etc/hostname"]).await;
    out.success();
    assert_eq!(out.stdout, "c1\n");
    let out = m.lxc(&["exec", "c1", "--", "sh", "-c", "exit 7"]).await;
    assert_eq!(out.code, 7, "exit code propagates; stderr: {}", out.stderr);
    let out = m.lxc_stdin(&["exec", "c1", "--", "cat"], b"hi\n").await;
    out.success();
    assert_eq!(out.stdout, "hi\n");

    tracing::info!("--- lxc config set/get/show, a bad value");
    m.lxc(&["config", "set", "c1", "limits.memory", "128MiB"])
        .await
        .success();
    let out = m.lxc(&["config", "get", "c1", "limits.memory"]).await;
    out.success();
    assert_eq!(out.stdout, "128MiB\n");
    let out = m.lxc(&["config", "show", "c1"]).await;
    out.success();
    assert!(
        out.stdout.contains("limits.memory: 128MiB"),
        "{}",
        out.stdout
    );
    let out = m
        .lxc(&["config", "set", "c1", "limits.memory", "lots"])
        .await;
    let stderr = out.failure();
    assert!(
        stderr.contains("Error: Invalid config: Invalid value: lots"),
        "{stderr}"
    );
    let out = m.lxc(&["config", "get", "c1", "limits.memory"]).await;
    assert_eq!(
        out.success().stdout,
        "128MiB\n",
        "the bad value changed nothing"
    );

    tracing::info!("--- lxc monitor catches instance-started of lxc stop + start");
    let mut monitor = Monitor::spawn(&m, &["monitor", "--type=lifecycle"]);
    let mut ping = 0u32;
    wait_until(
        "lxc monitor to be live (it reports an instance-updated)",
        Duration::from_secs(20),
        || {
            ping += 1;
            let value = ping.to_string();
            let m = &m;
            let seen = monitor.output().contains("action: instance-updated");
            async move {
                if seen {
                    return true;
                }
                m.lxc(&["config", "set", "c1", "user.ping", &value])
                    .await
                    .success();
                false
            }
        },
    )
    .await;
    m.lxc(&["stop", "c1"]).await.success();
    assert!(
        csv_row(&m, "c1")
            .await
            .expect("c1")
            .starts_with("c1,STOPPED,")
    );
    m.lxc(&["start", "c1"]).await.success();
    wait_until(
        "lxc monitor to print instance-started",
        Duration::from_secs(20),
        || async {
            let out = monitor.output();
            out.contains("action: instance-started") && out.contains("/1.0/instances/c1")
        },
    )
    .await;
    let _ = monitor.child.kill().await;
    m.lxc(&["restart", "c1"]).await.success();
    assert!(
        csv_row(&m, "c1")
            .await
            .expect("c1")
            .starts_with("c1,RUNNING,")
    );

    tracing::info!("--- lxc info, lxc operation list");
    let out = m.lxc(&["info", "c1"]).await;
    out.success();
    for line in ["Name: c1", "Status: RUNNING", "Type: container"] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let out = m.lxc(&["operation", "list"]).await;
    out.success();
    for col in [
        "DESCRIPTION",
        "STATUS",
        "Creating instance",
        "Restarting instance",
    ] {
        assert!(out.stdout.contains(col), "no {col:?} in:\n{}", out.stdout);
    }

    tracing::info!("--- lxc delete refused while running, then --force");
    let out = m.lxc(&["delete", "c1"]).await;
    let stderr = out.failure();
    assert!(
        stderr.contains("The instance is currently running, stop it first"),
        "{stderr}"
    );
    assert!(csv_row(&m, "c1").await.is_some(), "c1 still there");
    m.lxc(&["delete", "--force", "c1"]).await.success();
    assert_eq!(csv_row(&m, "c1").await, None);
    assert!(!m.volume_dir("c1").exists());
}
