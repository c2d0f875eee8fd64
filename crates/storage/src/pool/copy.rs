//! Copying a volume within a pool (`lxc copy c1 c2` on one member).

use std::fs;

use super::dir::{DirPool, check_name};
use super::error::PoolError;
use super::overlay::{BASE_FILE, cp_a};

impl DirPool {
    /// Creates volume `to` as a copy of volume `from` and returns its path. A volume layered
    /// on an image stays layered on the same base (only its own changes, the upper layer,
    /// are copied, and its merged view is mounted); a plain volume is copied whole. Every
    /// other file of the volume is copied as is (`cp -a`: owners, modes, xattrs, devices,
    /// overlay whiteouts).
    ///
    /// The source may be in use (a running container): the copy is what its files hold at
    /// that moment, as LXD's copy of a running container on a `dir` pool is.
    ///
    /// Fails with [`PoolError::NotFound`] if `from` does not exist and
    /// [`PoolError::AlreadyExists`] if `to` does; on any failure nothing is left behind.
    pub fn copy_volume(&self, from: &str, to: &str) -> Result<std::path::PathBuf, PoolError> {
        check_name(from)?;
        if !self.volume_exists(from) {
            return Err(PoolError::NotFound(from.to_owned()));
        }
        let layered = self.volume_base(from)?.is_some();
        let src = self.volume_path(from);
        let vol = self.create_with(to, |tmp| {
            let entries = fs::read_dir(&src).map_err(PoolError::io("read", &src))?;
            for entry in entries {
                let entry = entry.map_err(PoolError::io("read", &src))?;
                let name = entry.file_name();
                let dst = tmp.join(&name);
                // The overlay's work dir and mount point are the new volume's own, empty.
                if layered && (name == "work" || name == "rootfs") {
                    fs::create_dir(&dst).map_err(PoolError::io("create", &dst))?;
                    let meta =
                        fs::metadata(entry.path()).map_err(PoolError::io("stat", &entry.path()))?;
                    fs::set_permissions(&dst, meta.permissions())
                        .map_err(PoolError::io("chmod", &dst))?;
                    continue;
                }
                cp_a(&entry.path(), &dst)?;
            }
            if layered && !tmp.join(BASE_FILE).is_file() {
                return Err(PoolError::NotFound(format!("{from}/{BASE_FILE}")));
            }
            Ok(())
        })?;
        if layered && let Err(e) = self.mount_rootfs(to) {
            let _ = self.delete_volume(to);
            return Err(e);
        }
        Ok(vol)
    }
}
