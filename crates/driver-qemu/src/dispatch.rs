//! [`ByType`]: one [`InstanceDriver`] for a daemon that runs containers and VMs, routing each
//! call to the driver of the instance's type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drivers::{
    BindMount, ExecProcess, ExecSpec, ExecStdio, InstanceDriver, InstanceSpec, Result,
    RuntimeStatus, StopOutcome, Usage,
};

use crate::driver::QemuDriver;
use crate::vm::{DISK_FILE, KERNEL_FILE};

/// Containers on `containers`, VMs on `vms`.
///
/// A start goes to the VM driver when the instance's root (`InstanceSpec::rootfs`) holds a
/// VM disk and kernel ([`DISK_FILE`], [`KERNEL_FILE`]), which only a virtual-machine image
/// puts there. Every other call goes to the VM driver when a QEMU of that id runs, else to
/// the container driver: what actually runs decides, never a file left by an earlier
/// instance of the same name.
#[derive(Debug, Clone)]
pub struct ByType {
    containers: Arc<dyn InstanceDriver>,
    vms: QemuDriver,
}

impl ByType {
    /// Routes between `containers` and `vms`.
    pub fn new(containers: Arc<dyn InstanceDriver>, vms: QemuDriver) -> ByType {
        ByType { containers, vms }
    }

    /// The VM driver.
    pub fn vms(&self) -> &QemuDriver {
        &self.vms
    }

    /// Whether `spec` is a virtual machine's (its root holds a VM disk and kernel).
    pub fn is_vm_spec(spec: &InstanceSpec) -> bool {
        spec.rootfs.join(DISK_FILE).is_file() && spec.rootfs.join(KERNEL_FILE).is_file()
    }

    async fn for_id(&self, id: &str) -> Result<&dyn InstanceDriver> {
        Ok(match self.vms.state(id).await? {
            RuntimeStatus::Running { .. } => &self.vms,
            RuntimeStatus::Stopped => self.containers.as_ref(),
        })
    }
}

#[async_trait::async_trait]
impl InstanceDriver for ByType {
    fn describe(&self) -> String {
        format!("{} | {}", self.containers.describe(), self.vms.describe())
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<u32> {
        if ByType::is_vm_spec(spec) {
            self.vms.start(spec).await
        } else {
            self.containers.start(spec).await
        }
    }

    async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
        force: bool,
    ) -> Result<StopOutcome> {
        self.for_id(id)
            .await?
            .stop(id, signal, timeout, force)
            .await
    }

    async fn shutdown(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<Option<StopOutcome>> {
        self.for_id(id).await?.shutdown(id, signal, timeout).await
    }

    async fn state(&self, id: &str) -> Result<RuntimeStatus> {
        match self.vms.state(id).await? {
            running @ RuntimeStatus::Running { .. } => Ok(running),
            RuntimeStatus::Stopped => self.containers.state(id).await,
        }
    }

    async fn usage(&self, id: &str) -> Result<Usage> {
        self.for_id(id).await?.usage(id).await
    }

    async fn update_limits(&self, id: &str, config: &BTreeMap<String, String>) -> Result<()> {
        self.for_id(id).await?.update_limits(id, config).await
    }

    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        stdio: ExecStdio,
    ) -> Result<Box<dyn ExecProcess>> {
        self.for_id(id).await?.exec(id, spec, stdio).await
    }

    async fn freeze(&self, id: &str) -> Result<()> {
        self.for_id(id).await?.freeze(id).await
    }

    async fn unfreeze(&self, id: &str) -> Result<()> {
        self.for_id(id).await?.unfreeze(id).await
    }

    async fn frozen(&self, id: &str) -> Result<bool> {
        self.for_id(id).await?.frozen(id).await
    }

    async fn attach_mount(&self, id: &str, mount: &BindMount) -> Result<()> {
        self.for_id(id).await?.attach_mount(id, mount).await
    }

    async fn detach_mount(&self, id: &str, target: &str) -> Result<()> {
        self.for_id(id).await?.detach_mount(id, target).await
    }
}
