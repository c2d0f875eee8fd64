//! An image's `metadata.yaml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::ImageError;
use crate::template::TemplateSpec;

/// The parsed `metadata.yaml` of an LXD image.
///
/// ```yaml
/// architecture: x86_64
/// creation_date: 1700000000
/// properties: {os: busybox, release: v1.35.0, description: …}
/// templates: {/etc/hostname: {when: [create, copy], template: hostname.tpl}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMetadata {
    /// LXD architecture name, normalised (`amd64` → `x86_64`).
    pub architecture: String,
    /// Unix seconds; 0 when absent.
    pub creation_date: i64,
    /// Unix seconds; 0 when absent (never expires).
    pub expiry_date: i64,
    /// `properties`, every value as a string.
    pub properties: BTreeMap<String, String>,
    /// `templates`: target path in the rootfs → template.
    pub templates: BTreeMap<String, TemplateSpec>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    creation_date: Option<i64>,
    #[serde(default)]
    expiry_date: Option<i64>,
    #[serde(default, deserialize_with = "crate::yaml::string_map")]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    templates: Option<BTreeMap<String, TemplateSpec>>,
}

impl ImageMetadata {
    /// Parses and validates `metadata.yaml` bytes.
    ///
    /// Fails with [`ImageError::BadMetadata`] for invalid YAML,
    /// [`ImageError::MissingArchitecture`] without an architecture and
    /// [`ImageError::UnknownArchitecture`] for one drover does not know.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let raw: Raw = serde_yaml_ng::from_slice(bytes).map_err(ImageError::BadMetadata)?;
        let arch = raw
            .architecture
            .filter(|a| !a.trim().is_empty())
            .ok_or(ImageError::MissingArchitecture)?;
        Ok(Self {
            architecture: normalize_architecture(&arch)?,
            creation_date: raw.creation_date.unwrap_or(0),
            expiry_date: raw.expiry_date.unwrap_or(0),
            properties: raw.properties,
            templates: raw.templates.unwrap_or_default(),
        })
    }
}

/// Maps the names images use (Debian's, uname's, LXD's) to LXD's architecture name.
pub fn normalize_architecture(arch: &str) -> Result<String, ImageError> {
    let name = match arch.trim().to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => "x86_64",
        "i686" | "i386" | "i586" | "x86" => "i686",
        "aarch64" | "arm64" | "arm64-v8a" => "aarch64",
        "armv7l" | "armhf" | "armel" | "arm" | "armv7" => "armv7l",
        "armv6l" => "armv6l",
        "ppc64le" | "ppc64el" => "ppc64le",
        "ppc64" | "powerpc64" => "ppc64",
        "ppc" | "powerpc" => "ppc",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64",
        "mips" => "mips",
        "loongarch64" => "loongarch64",
        _ => return Err(ImageError::UnknownArchitecture(arch.to_owned())),
    };
    Ok(name.to_owned())
}
