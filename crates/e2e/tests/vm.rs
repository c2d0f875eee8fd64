//! Virtual machines through the API on a real droverd with real QEMU (TCG here).
//!
//! Skipped, saying so, only when qemu-system-x86_64 is not installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use api::InstanceStatus;
use api::instances::InstanceSource;
use drover_e2e::{Member, busybox_request};

/// Kills the QEMUs under a daemon's `vms/` when dropped, so a failed test leaves no VM.
struct KillVms(PathBuf);

impl Drop for KillVms {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.0) else {
            return;
        };
        for d in dirs.flatten() {
            if let Ok(pid) = std::fs::read_to_string(d.path().join("qemu.pid")) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status();
            }
        }
    }
}

fn qemu_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
}

/// `images/busybox-vm/build.sh --unified` into `dir`.
fn vm_image(dir: &Path) -> PathBuf {
    let out = dir.join("busybox-vm.tar.gz");
    let script = drover_e2e::workspace_root().join("images/busybox-vm/build.sh");
    let res = std::process::Command::new("sh")
        .arg(script)
        .arg("--unified")
        .arg(&out)
        .output()
        .expect("run images/busybox-vm/build.sh");
    assert!(
        res.status.success(),
        "images/busybox-vm/build.sh failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// Types a command into `lxc console NAME` and waits for its output, then detaches.
async fn interactive_console(m: &Member, name: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = m
        .lxc_env_command("script")
        .args(["-qfec", &format!("lxc console {name}"), "/dev/null"])
        .kill_on_drop(true)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn script -c lxc console");
    let mut stdin = child.stdin.take().expect("stdin");
    let seen = drover_e2e::collect_output(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().expect("console output").contains("con-42") {
        assert!(
            Instant::now() < deadline,
            "no answer on the console: {:?}",
            seen.lock().expect("console output")
        );
        let _ = stdin.write_all(b"echo con-$((6*7))\n").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // lxc looks at the first byte of each read for its escape: send them apart.
    let _ = stdin.write_all(b"\x01").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stdin.write_all(b"q").await;
    let exited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    assert!(exited.is_ok(), "lxc console did not detach on ctrl-a q");
}

fn vm_request(name: &str, memory: &str, alias: &str) -> api::InstancesPost {
    api::InstancesPost {
        name: name.into(),
        kind: "virtual-machine".into(),
        source: InstanceSource {
            kind: "image".into(),
            alias: alias.into(),
            ..Default::default()
        },
        config: [("limits.memory".to_string(), memory.to_string())].into(),
        start: true,
        ..Default::default()
    }
}

/// What does this test do?
///
/// 1. Imports the busybox-vm image (alias `busybox-vm`) and the busybox container image.
/// 2. Bad input, nothing created: a VM with 64MiB, a VM from the container image, a
///    container from the VM image.
/// 3. Launches `vm1` (`type: virtual-machine`, 256MiB): Running with a QEMU pid; listed with
///    `type: virtual-machine`; exec `cat /proc/uptime` through the guest agent.
/// 4. Restarts the daemon: the VM still runs with the same pid, exec still works.
/// 5. Clean stop (ACPI power button) well within its timeout; start again; restart (a new
///    QEMU); the state shows memory in use; force stop; delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_lives_through_the_api() {
    if !qemu_installed() {
        eprintln!("SKIPPED a_vm_lives_through_the_api: qemu-system-x86_64 is not installed");
        return;
    }
    let mut m = Member::start().await;
    let _guard = KillVms(m.state_dir().join("vms"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tokio::task::spawn_blocking({
        let dir = tmp.path().to_path_buf();
        move || vm_image(&dir)
    })
    .await
    .expect("build the VM image");
    let c = m.client();
    let op = c
        .import_image(&client::ImageUpload {
            metadata: image,
            ..Default::default()
        })
        .await
        .expect("upload the VM image");
    let done = m.wait_op(&op).await.expect("VM image import");
    let fp = done.metadata.as_ref().expect("metadata")["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    c.create_image_alias(&api::images::ImageAliasesPost {
        name: "busybox-vm".into(),
        description: String::new(),
        target: fp,
    })
    .await
    .expect("alias busybox-vm");
    m.import_busybox().await;

    tracing::info!("--- bad input");
    for (req, why) in [
        (vm_request("vmbad1", "64MiB", "busybox-vm"), "too small"),
        (vm_request("vmbad2", "256MiB", "busybox"), "doesn't match"),
        (
            busybox_request("vmbad3", &[], false),
            "doesn't match", // a container from the VM image, below
        ),
    ] {
        let mut req = req;
        if req.name == "vmbad3" {
            req.source.alias = "busybox-vm".into();
        }
        let err = m.create(&req).await.expect_err("must be refused");
        assert!(err.to_string().contains(why), "{}: {err}", req.name);
        assert_eq!(
            m.raw("GET", &format!("/1.0/instances/{}", req.name), None)
                .await
                .status,
            404
        );
    }

    tracing::info!("--- launch vm1");
    let t = Instant::now();
    m.create(&vm_request("vm1", "256MiB", "busybox-vm"))
        .await
        .expect("launch vm1");
    eprintln!("launch: {:?}", t.elapsed());
    assert_eq!(m.status("vm1").await, InstanceStatus::Running);
    let pid = m.pid("vm1").await;
    assert!(pid > 1);
    let list = m.raw("GET", "/1.0/instances?recursion=1", None).await.body;
    let vm = list["metadata"]
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["name"] == "vm1")
        .expect("vm1 listed")
        .clone();
    assert_eq!(vm["type"], "virtual-machine");

    let out = m.exec("vm1", &["cat", "/proc/uptime"]).await.expect("exec");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let up: f64 = out
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("uptime");
    assert!(up > 0.0);
    let out = m
        .exec("vm1", &["sh", "-c", "uname -m; exit 4"])
        .await
        .expect("exec");
    assert_eq!((out.code, out.stdout.as_str()), (4, "x86_64\n"));

    tracing::info!("--- daemon restart with the VM running");
    m.restart().await;
    assert_eq!(m.status("vm1").await, InstanceStatus::Running);
    assert_eq!(m.pid("vm1").await, pid);
    let out = m.exec("vm1", &["true"]).await.expect("exec after restart");
    assert_eq!(out.code, 0);

    tracing::info!("--- clean stop, start, force stop, delete");
    let t = Instant::now();
    m.change_state("vm1", "stop", false).await.expect("stop");
    let took = t.elapsed();
    eprintln!("clean stop: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(m.status("vm1").await, InstanceStatus::Stopped);
    m.change_state("vm1", "start", false).await.expect("start");
    assert_eq!(m.status("vm1").await, InstanceStatus::Running);
    let pid2 = m.pid("vm1").await;
    assert_ne!(pid2, pid);
    m.change_state("vm1", "restart", false)
        .await
        .expect("restart");
    assert_eq!(m.status("vm1").await, InstanceStatus::Running);
    assert_ne!(m.pid("vm1").await, pid2);
    let state = m.raw("GET", "/1.0/instances/vm1/state", None).await.body;
    assert!(
        state["metadata"]["memory"]["usage"].as_i64().unwrap_or(0) > 0,
        "{state}"
    );
    m.change_state("vm1", "stop", true)
        .await
        .expect("force stop");
    assert_eq!(m.status("vm1").await, InstanceStatus::Stopped);
    m.delete("vm1").await.expect("delete");
}

/// What does this test do?
///
/// With LXD's own `lxc` 5.0.2 client: `lxc image import` of the busybox-vm image with alias
/// `busybox-vm` (listed as a VIRTUAL-MACHINE image), `lxc launch busybox-vm lxcvm1 --vm`,
/// `lxc list` shows it RUNNING as a VIRTUAL-MACHINE, `lxc exec lxcvm1 -- uname -a` prints the
/// guest kernel, `lxc stop lxcvm1` stops it, `lxc delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_launches_execs_and_stops_a_vm() {
    if !qemu_installed() {
        eprintln!("SKIPPED lxc_launches_execs_and_stops_a_vm: qemu-system-x86_64 is not installed");
        return;
    }
    drover_e2e::require_lxc();
    let m = Member::start().await;
    let _guard = KillVms(m.state_dir().join("vms"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tokio::task::spawn_blocking({
        let dir = tmp.path().to_path_buf();
        move || vm_image(&dir)
    })
    .await
    .expect("build the VM image");
    let image = image.to_string_lossy().into_owned();
    m.lxc(&["image", "import", &image, "--alias", "busybox-vm"])
        .await
        .success();
    let out = m.lxc(&["image", "list", "-f", "csv"]).await;
    out.success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("busybox-vm,") && l.contains("VIRTUAL-MACHINE")),
        "{}",
        out.stdout
    );

    m.lxc(&[
        "launch",
        "busybox-vm",
        "lxcvm1",
        "--vm",
        "-c",
        "limits.memory=256MiB",
    ])
    .await
    .success();
    let out = m.lxc(&["list", "-f", "csv", "-c", "nst"]).await;
    out.success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "lxcvm1,RUNNING,VIRTUAL-MACHINE"),
        "{}",
        out.stdout
    );
    let out = m.lxc(&["exec", "lxcvm1", "--", "uname", "-a"]).await;
    out.success();
    assert!(out.stdout.contains("amd64"), "{}", out.stdout);
    // Its hostname is its name, as on LXD.
    let out = m.lxc(&["exec", "lxcvm1", "--", "hostname"]).await;
    assert_eq!(out.success().stdout, "lxcvm1\n");
    // The serial console: its log, then an interactive `lxc console` (under `script`, which
    // gives it the terminal it wants), detached with ctrl-a q.
    let out = m.lxc(&["console", "lxcvm1", "--show-log"]).await;
    out.success();
    assert!(out.stdout.contains("DROVER-VM-READY"), "{}", out.stdout);
    interactive_console(&m, "lxcvm1").await;

    m.lxc(&["stop", "lxcvm1"]).await.success();
    let out = m.lxc(&["list", "-f", "csv", "-c", "ns"]).await;
    assert!(out.stdout.contains("lxcvm1,STOPPED"), "{}", out.stdout);
    m.lxc(&["delete", "lxcvm1"]).await.success();
}
