//! Putting a busybox-vm style image (see `images/busybox-vm/build.sh`) on an instance volume.

use std::io;
use std::path::Path;

use crate::vm::{DISK_FILE, INITRD_FILE, KERNEL_FILE};

/// Fills the volume directory `volume` from a VM image: `boot/vmlinuz` and `boot/initrd.img`
/// from the metadata tarball (gzip'd tar), the root disk copied from `rootfs_img` (raw) to
/// [`DISK_FILE`].
pub fn install_image(metadata: &Path, rootfs_img: &Path, volume: &Path) -> io::Result<()> {
    std::fs::create_dir_all(volume.join("boot"))?;
    let file = std::fs::File::open(metadata)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut kernel, mut initrd) = (false, false);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let dest = if path == KERNEL_FILE {
            kernel = true;
            KERNEL_FILE
        } else if path == INITRD_FILE {
            initrd = true;
            INITRD_FILE
        } else {
            continue;
        };
        let mut out = std::fs::File::create(volume.join(dest))?;
        io::copy(&mut entry, &mut out)?;
    }
    if !kernel || !initrd {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has no {KERNEL_FILE} and {INITRD_FILE}: not a drover VM image",
                metadata.display()
            ),
        ));
    }
    std::fs::copy(rootfs_img, volume.join(DISK_FILE))?;
    Ok(())
}
