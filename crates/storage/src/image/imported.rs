//! What an import produced.

use std::collections::BTreeMap;

use api::ConfigMap;

use crate::template::TemplateSpec;

/// An image in the [`ImageStore`](super::ImageStore): what the daemon records in its
/// database and returns as `GET /1.0/images/<fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// LXD's fingerprint: SHA-256 (lowercase hex) of the image file, or of the metadata file
    /// followed by the rootfs file for a split image.
    pub fingerprint: String,
    /// The name it was uploaded as (`X-LXD-filename`), `""` when unknown.
    pub filename: String,
    /// Total size of the image file(s) in bytes.
    pub size: u64,
    /// LXD architecture name (`"x86_64"`).
    pub architecture: String,
    /// Unix seconds, from `metadata.yaml` (0 when absent).
    pub creation_date: i64,
    /// `metadata.yaml` `properties` (`os`, `release`, `description`, …).
    pub properties: ConfigMap,
    /// `metadata.yaml` `templates`: target path → template.
    pub templates: BTreeMap<String, TemplateSpec>,
    /// Always `"container"`: drover imports container images only.
    pub kind: String,
    /// Whether it was imported as a split image (metadata + rootfs files).
    pub split: bool,
}

impl ImportedImage {
    /// [`Self::creation_date`] as RFC 3339 (`"2024-01-02T03:04:05Z"`), the form of the API's
    /// `created_at`.
    pub fn created_at(&self) -> String {
        chrono::DateTime::from_timestamp(self.creation_date, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}
