//! `drover image import|list|show|delete|alias`.

use std::path::PathBuf;

use api::images::{Image, ImageAliasesEntry, ImageAliasesPost};
use client::{Client, ImageUpload};

use crate::render::{self, Format, key_value, yaml};

/// `image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import a unified tarball, or a metadata tarball and a rootfs.
    Import {
        /// Unified image tarball, or the metadata tarball of a split image.
        tarball: PathBuf,
        /// Rootfs of a split image.
        rootfs: Option<PathBuf>,
        /// Alias to create for the new image (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Make the image public.
        #[arg(long)]
        public: bool,
        /// The rootfs is a VM disk.
        #[arg(long)]
        vm: bool,
        /// Image property to set (`KEY=VALUE`, repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// List images.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only images whose fingerprint or an alias starts with this.
        filter: Option<String>,
    },
    /// Show an image as YAML.
    Show {
        /// Fingerprint (or prefix).
        fingerprint: String,
    },
    /// Delete images.
    #[command(alias = "rm")]
    Delete {
        /// Fingerprints (or prefixes).
        #[arg(required = true)]
        fingerprints: Vec<String>,
    },
    /// Manage image aliases.
    #[command(subcommand)]
    Alias(AliasCommand),
}

/// `image alias` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Create an alias.
    Create {
        /// Alias name.
        alias: String,
        /// Target fingerprint.
        fingerprint: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete an alias.
    #[command(alias = "rm")]
    Delete {
        /// Alias name.
        alias: String,
    },
    /// List aliases.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// The image table rows, as `lxc image list` shows them.
pub fn render_images(images: &[Image], format: Format) -> anyhow::Result<String> {
    let headers = [
        "ALIAS",
        "FINGERPRINT",
        "PUBLIC",
        "DESCRIPTION",
        "ARCHITECTURE",
        "TYPE",
        "SIZE",
        "UPLOAD DATE",
    ];
    render::records(format, images, &headers, |img| {
        vec![
            img.aliases
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            img.fingerprint.chars().take(12).collect(),
            if img.public { "yes" } else { "no" }.to_string(),
            img.properties
                .get("description")
                .cloned()
                .unwrap_or_default(),
            img.architecture.clone(),
            img.kind.to_uppercase(),
            render::bytes(img.size),
            render::date(&img.uploaded_at).unwrap_or_default(),
        ]
    })
}

fn render_aliases(aliases: &[ImageAliasesEntry], format: Format) -> anyhow::Result<String> {
    render::records(
        format,
        aliases,
        &["ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"],
        |a| {
            vec![
                a.name.clone(),
                a.target.chars().take(12).collect(),
                a.kind.to_uppercase(),
                a.description.clone(),
            ]
        },
    )
}

/// Run an `image` subcommand.
pub async fn run(client: &Client, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            tarball,
            rootfs,
            aliases,
            public,
            vm,
            properties,
        } => {
            let upload = ImageUpload {
                metadata: tarball,
                rootfs,
                vm,
                public,
                properties: properties
                    .iter()
                    .map(|p| key_value(p))
                    .collect::<anyhow::Result<_>>()?,
            };
            let op = client.import_image(&upload).await?;
            let done = crate::progress::wait(client, &op, "Importing image").await?;
            let fingerprint = done
                .metadata
                .as_ref()
                .and_then(|m| m["fingerprint"].as_str())
                .ok_or_else(|| anyhow::anyhow!("the daemon did not return the image fingerprint"))?
                .to_string();
            for alias in aliases {
                let req = ImageAliasesPost {
                    name: alias,
                    description: String::new(),
                    target: fingerprint.clone(),
                };
                client.create_image_alias(&req).await?;
            }
            println!("Image imported with fingerprint: {fingerprint}");
        }
        ImageCommand::List { format, filter } => {
            let mut images = client.images().await?;
            if let Some(f) = filter {
                images.retain(|i| {
                    i.fingerprint.starts_with(&f)
                        || i.aliases.iter().any(|a| a.name.starts_with(&f))
                });
            }
            images.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            print!("{}", render_images(&images, format)?);
        }
        ImageCommand::Show { fingerprint } => {
            print!("{}", yaml(&client.image(&fingerprint).await?)?);
        }
        ImageCommand::Delete { fingerprints } => {
            for fp in fingerprints {
                if let Some(op) = client.delete_image(&fp).await? {
                    crate::progress::wait(client, &op, "Deleting image").await?;
                }
            }
        }
        ImageCommand::Alias(AliasCommand::Create {
            alias,
            fingerprint,
            description,
        }) => {
            let req = ImageAliasesPost {
                name: alias,
                description,
                target: fingerprint,
            };
            client.create_image_alias(&req).await?;
        }
        ImageCommand::Alias(AliasCommand::Delete { alias }) => {
            client.delete_image_alias(&alias).await?;
        }
        ImageCommand::Alias(AliasCommand::List { format }) => {
            let mut aliases = client.image_aliases().await?;
            aliases.sort_by(|a, b| a.name.cmp(&b.name));
            print!("{}", render_aliases(&aliases, format)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_rows() {
        let img: Image = serde_json::from_value(serde_json::json!({
            "fingerprint": "e2db28ab9be34c91a1b939b0e6f225504751abd8a6ef8142e2397c2a04cac730",
            "filename": "busybox.tar.gz", "size": 1314816, "architecture": "x86_64",
            "type": "container", "public": false, "auto_update": false,
            "properties": {"description": "busybox"}, "aliases": [{"name": "busybox", "description": ""}],
            "cached": false, "created_at": "2026-11-24T07:00:00Z", "expires_at": "0001-01-01T00:00:00Z",
            "last_used_at": "0001-01-01T00:00:00Z", "uploaded_at": "2026-11-24T07:01:00Z",
            "profiles": ["default"]
        }))
        .expect("image");
        let out = render_images(&[img], Format::Csv).expect("renders");
        assert_eq!(
            out,
            "busybox,e2db28ab9be3,no,busybox,x86_64,CONTAINER,1.25MiB,2026/11/24 07:01 UTC\n"
        );
    }
}
