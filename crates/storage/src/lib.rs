//! drover's local storage: LXD-format images and the `dir` storage pool.
//!
//! - [`image::ImageStore`] imports LXD image tarballs (unified or split), verifies LXD's
//!   fingerprint, and unpacks each image once so instances are created without re-reading
//!   the tarball.
//! - [`template`] renders an image's `metadata.yaml` templates into an instance's rootfs on
//!   `create`/`copy`/`start`/`rename`, as LXD does.
//! - [`pool::DirPool`] keeps one directory per instance volume
//!   (`<source>/containers/<name>/rootfs`), and the staging directories volumes are
//!   received into from other members.
//! - [`transfer`] streams a volume directory to another member (full, or the changes since a
//!   pre-copy) with per-file and whole-stream checksums.
//!
//! Everything here is synchronous `std::fs` work: the daemon calls it from
//! `spawn_blocking`.

pub mod image;
pub mod pool;
pub mod template;
pub mod transfer;

mod yaml;

pub use image::{ImageError, ImageStore, ImportOptions, ImportedImage};
pub use pool::{DirPool, PoolError, PoolUsage, RetiredVolume};
pub use template::{
    TemplateContext, TemplateError, TemplateSpec, TemplateTrigger, apply_templates,
};
