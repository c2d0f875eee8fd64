//! Real QEMU under TCG: boot, exec through the agent, console, clean and forced stop,
//! restart, re-attach by a fresh driver.

mod common;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use drivers::{DriverError, ExecSpec, ExecStdio, InstanceDriver, RuntimeStatus, StopOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn run(d: &dyn InstanceDriver, id: &str, argv: &[&str]) -> (i32, String, String) {
    let (out_r, out_w) = std::io::pipe().expect("pipe");
    let (err_r, err_w) = std::io::pipe().expect("pipe");
    let (in_r, in_w) = std::io::pipe().expect("pipe");
    drop(in_w);
    let spec = ExecSpec {
        command: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let stdio = ExecStdio {
        stdin: OwnedFd::from(in_r),
        stdout: OwnedFd::from(out_w),
        stderr: OwnedFd::from(err_w),
    };
    let mut p = d.exec(id, &spec, stdio).await.expect("exec");
    let code = tokio::time::timeout(Duration::from_secs(30), p.wait())
        .await
        .expect("exec within 30s")
        .expect("exit code");
    drop(p);
    let read = |r: std::io::PipeReader| {
        tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut { r }, &mut s).map(|_| s)
        })
    };
    let out = read(out_r).await.expect("join").expect("stdout");
    let err = read(err_r).await.expect("join").expect("stderr");
    (code, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_lifecycle_exec_console_reattach() {
    let Some(qemu) = common::qemu_or_skip("vm_lifecycle_exec_console_reattach") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let root = tmp.path().join("run");
    let _guard = common::KillOnDrop(vec![root.clone()]);
    let d = common::driver(&qemu, &root).await;
    let spec = common::spec("v1", &vol, "256MiB");
    let id = spec.id.clone();

    // Boot.
    let t = Instant::now();
    let pid = d.start(&spec).await.expect("start");
    assert_eq!(
        d.state(&id).await.expect("state"),
        RuntimeStatus::Running { pid }
    );
    assert!(matches!(
        d.start(&spec).await,
        Err(DriverError::AlreadyRunning)
    ));
    let log = d.console_log(&id);
    common::wait_for_text(&log, "DROVER-VM-READY", Duration::from_secs(60)).await;
    eprintln!("boot to userspace: {:?}", t.elapsed());

    // Exec through the agent: output, stderr, exit code.
    let (code, out, _) = run(&d, &id, &["cat", "/proc/uptime"]).await;
    assert_eq!(code, 0);
    let uptime: f64 = out
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime in {out:?}"));
    assert!(uptime > 0.0 && uptime < 600.0, "{out}");
    let (code, out, err) = run(&d, &id, &["sh", "-c", "echo out; echo err >&2; exit 7"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    let (code, out, _) = run(&d, &id, &["uname", "-r"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("amd64"), "{out}");
    let (code, _, _) = run(&d, &id, &["/no/such/binary"]).await;
    assert_eq!(code, 127);

    // Usage is the QEMU process's.
    let u = d.usage(&id).await.expect("usage");
    assert!(u.memory > 10 << 20 && u.cpu_ns > 0, "{u:?}");

    // The console: an interactive shell on the socket, everything in the log.
    {
        let mut con = tokio::net::UnixStream::connect(d.console_socket(&id))
            .await
            .expect("console socket");
        con.write_all(b"\necho console-$((6*7))\n")
            .await
            .expect("write");
        let mut got = String::new();
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !got.contains("console-42") {
            assert!(Instant::now() < deadline, "no shell output: {got:?}");
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), con.read(&mut buf)).await
            {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }
    common::wait_for_text(&log, "console-42", Duration::from_secs(5)).await;

    // Re-attach: a fresh driver on the same root sees and controls the same VM.
    drop(d);
    let d = common::driver(&qemu, &root).await;
    assert_eq!(
        d.state(&id).await.expect("state"),
        RuntimeStatus::Running { pid }
    );
    assert_eq!(d.run_state(&id).await.expect("run state"), "running");
    let (code, out, _) = run(&d, &id, &["cat", "/etc/hostname"]).await;
    assert_eq!((code, out.trim()), (0, "busybox-vm"));

    // Clean stop: the ACPI power button, well within the bound.
    let t = Instant::now();
    let outcome = d
        .stop(&id, 30, Duration::from_secs(20), false)
        .await
        .expect("stop");
    let took = t.elapsed();
    eprintln!("clean stop: {took:?}");
    assert_eq!(outcome, StopOutcome::Clean);
    assert!(took < Duration::from_secs(10), "{took:?}");
    common::wait_for_text(&log, "DROVER-VM-POWEROFF", Duration::from_secs(1)).await;
    assert_eq!(d.state(&id).await.expect("state"), RuntimeStatus::Stopped);
    assert_eq!(
        d.stop(&id, 30, Duration::from_secs(1), false)
            .await
            .expect("stop again"),
        StopOutcome::WasStopped
    );

    // Restart (the disk survived), then force stop.
    let pid2 = d.start(&spec).await.expect("restart");
    assert_ne!(pid, pid2);
    let (code, _, _) = run(&d, &id, &["true"]).await;
    assert_eq!(code, 0);
    let t = Instant::now();
    let outcome = d
        .stop(&id, 30, Duration::from_secs(20), true)
        .await
        .expect("force stop");
    assert_eq!(outcome, StopOutcome::Killed);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!std::path::Path::new(&format!("/proc/{pid2}/exe")).exists());
    assert_eq!(d.state(&id).await.expect("state"), RuntimeStatus::Stopped);
}

#[tokio::test]
async fn bad_vm_input_is_refused_before_anything_runs() {
    let Some(qemu) = common::qemu_or_skip("bad_vm_input_is_refused_before_anything_runs") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let d = common::driver(&qemu, &tmp.path().join("run")).await;
    for (mem, what) in [("64MiB", "too small"), ("lots", "invalid")] {
        let spec = common::spec("bad", &vol, mem);
        match d.start(&spec).await {
            Err(DriverError::Invalid(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("limits.memory {mem}: {other:?}"),
        }
    }
    let spec = common::spec("bad", &tmp.path().join("no-volume"), "256MiB");
    match d.start(&spec).await {
        Err(DriverError::Invalid(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("no volume: {other:?}"),
    }
    assert_eq!(
        d.state("default_bad").await.expect("state"),
        RuntimeStatus::Stopped
    );
}
