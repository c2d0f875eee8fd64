//! LXD-format container images: import (unified and split tarballs), the on-disk store and
//! `metadata.yaml`.

mod compression;
mod error;
mod imported;
mod metadata;
mod store;
mod unpack;

pub use error::ImageError;
pub use imported::ImportedImage;
pub use metadata::{ImageMetadata, normalize_architecture};
pub use store::{ImageStore, ImportOptions, fingerprint_files, valid_fingerprint};
