//! Noticing an instance whose PID 1 exits on its own (`poweroff` inside, a crash).
//!
//! Every instance this daemon starts or re-attaches to gets a watcher on a pidfd of its PID 1.
//! When PID 1 exits and the daemon did not stop it, the watcher does under the instance lock
//! what a stop does: clean the runtime's leftovers, record `STOPPED`, publish
//! `instance-shutdown`, and delete an ephemeral instance — as LXD does.

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

use super::runtime_id;
use crate::state::{Daemon, Running, lock};

/// Starts watching `running` (PID 1 of instance `name` in `project`).
pub fn watch(d: &Daemon, project: &str, name: &str, running: Running) {
    let pid = match rustix::process::Pid::from_raw(running.pid as i32) {
        Some(pid) => pid,
        None => return,
    };
    let fd: OwnedFd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(instance = %name, pid = running.pid, error = %e, "cannot watch PID 1");
            return;
        }
    };
    let (d, project, name) = (d.clone(), project.to_string(), name.to_string());
    tokio::spawn(async move {
        // `AsyncFd::new` is deprecated in favour of an unsafe `register`, for fds it does not
        // own; this one owns its pidfd, which is what the safe constructor needs.
        #[allow(deprecated)]
        let afd = AsyncFd::new(fd);
        match afd {
            // A pidfd becomes readable when the process exits.
            Ok(afd) => {
                let _ = afd.readable().await;
            }
            Err(e) => {
                tracing::warn!(instance = %name, error = %e, "cannot watch PID 1");
                return;
            }
        }
        exited(&d, &project, &name, running).await;
    });
}

async fn exited(d: &Daemon, project: &str, name: &str, running: Running) {
    let id = runtime_id(project, name);
    let lock_handle = d.instance_lock(&id);
    let _guard = lock_handle.lock().await;
    // A stop or restart by the daemon removed or replaced the entry before PID 1 went.
    if lock(&d.running).get(&id) != Some(&running) {
        return;
    }
    lock(&d.running).remove(&id);
    lock(&d.frozen).remove(&id);
    tracing::info!(instance = %name, pid = running.pid, "instance stopped on its own");
    if let Err(e) = d.driver.state(&id).await {
        tracing::warn!(instance = %name, error = %e, "runtime leftovers not cleaned");
    }
    let Ok(rec) = super::load(d, project, name).await else {
        return;
    };
    if let Err(e) = super::lifecycle::set_power(d, &rec, "STOPPED", false).await {
        tracing::warn!(instance = %name, error = %e.message, "last state not recorded");
    }
    d.bus
        .lifecycle("instance-shutdown", super::url(name), project, None);
    if rec.ephemeral
        && let Err(e) = super::update::delete_now(d, &rec).await
    {
        tracing::warn!(instance = %name, error = %e.message, "ephemeral instance not deleted");
    }
}
