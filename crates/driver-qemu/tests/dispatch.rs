//! `ByType` routes a start by what the instance's root holds, and other calls by what runs.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drivers::{
    DriverError, ExecProcess, ExecSpec, ExecStdio, InstanceDriver, InstanceSpec, Result,
    RuntimeStatus, StopOutcome, Usage,
};
use drover_driver_qemu::{ByType, QemuDriver};

/// A container driver that only records what it was asked.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, s: String) {
        self.0.lock().expect("lock").push(s);
    }
}

#[async_trait::async_trait]
impl InstanceDriver for Recorder {
    fn describe(&self) -> String {
        "recorder".into()
    }
    async fn start(&self, spec: &InstanceSpec) -> Result<u32> {
        self.push(format!("start {}", spec.id));
        Ok(4242)
    }
    async fn stop(&self, id: &str, _: i32, _: Duration, _: bool) -> Result<StopOutcome> {
        self.push(format!("stop {id}"));
        Ok(StopOutcome::Clean)
    }
    async fn state(&self, id: &str) -> Result<RuntimeStatus> {
        self.push(format!("state {id}"));
        Ok(RuntimeStatus::Running { pid: 4242 })
    }
    async fn usage(&self, id: &str) -> Result<Usage> {
        self.push(format!("usage {id}"));
        Ok(Usage::default())
    }
    async fn update_limits(&self, id: &str, _: &BTreeMap<String, String>) -> Result<()> {
        self.push(format!("limits {id}"));
        Ok(())
    }
    async fn exec(&self, id: &str, _: &ExecSpec, _: ExecStdio) -> Result<Box<dyn ExecProcess>> {
        self.push(format!("exec {id}"));
        Err(DriverError::NotRunning)
    }
}

#[tokio::test]
async fn routes_containers_and_vms() {
    let Some(qemu) = common::qemu_or_skip("routes_containers_and_vms") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let vol = common::volume(tmp.path());
    let rec = Arc::new(Recorder::default());
    let vms = QemuDriver::new_probing(&qemu, tmp.path().join("run"), Duration::from_secs(4))
        .await
        .expect("driver");
    let d = ByType::new(rec.clone(), vms);
    assert!(
        d.describe().starts_with("recorder | qemu "),
        "{}",
        d.describe()
    );
    assert!(d.vms().accel().is_none());

    // A container's root: the container driver.
    let ct_root = tmp.path().join("ct");
    std::fs::create_dir_all(ct_root.join("sbin")).expect("mkdir");
    let ct = common::spec("c1", &ct_root, "256MiB");
    assert_eq!(d.start(&ct).await.expect("start"), 4242);
    assert_eq!(
        d.state(&ct.id).await.expect("state"),
        RuntimeStatus::Running { pid: 4242 }
    );
    assert_eq!(
        d.stop(&ct.id, 30, Duration::from_secs(1), false)
            .await
            .expect("stop"),
        StopOutcome::Clean
    );

    // A VM's root: the VM driver (which refuses this memory before starting anything).
    let vm = common::spec("v1", &vol, "64MiB");
    assert!(ByType::is_vm_spec(&vm));
    match d.start(&vm).await {
        Err(DriverError::Invalid(m)) => assert!(m.contains("too small"), "{m}"),
        other => panic!("{other:?}"),
    }
    // That first VM probed the accelerator with its own kernel.
    let accel = d.vms().accel().expect("probed");
    eprintln!("accelerator: {accel:?}");
    assert!(
        d.describe().contains(accel.accel.as_str()),
        "{}",
        d.describe()
    );
    let calls = rec.0.lock().expect("lock").clone();
    assert_eq!(
        calls,
        ["start default_c1", "state default_c1", "stop default_c1"]
    );
}
