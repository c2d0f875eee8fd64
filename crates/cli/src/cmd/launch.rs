//! `drover launch` and `drover init`: create an instance from an image (and start it).

use api::InstancesPost;
use api::instances::InstanceSource;
use client::Client;

use crate::render::key_value;

/// Arguments of `launch` and `init`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// Image alias or fingerprint (a `local:` prefix is accepted).
    pub image: String,
    /// Instance name (the daemon picks one when omitted).
    pub name: Option<String>,
    /// Config key/value to apply to the new instance.
    #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Profile to apply (repeatable; default: the `default` profile).
    #[arg(short = 'p', long = "profile")]
    pub profiles: Vec<String>,
    /// Delete the instance when it stops.
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// Create a virtual machine instead of a container.
    #[arg(long)]
    pub vm: bool,
    /// Cluster member to create the instance on.
    #[arg(long)]
    pub target: Option<String>,
}

/// Build the creation request; `alias` says whether `image` names an alias.
pub fn request(args: &LaunchArgs, alias: bool) -> anyhow::Result<InstancesPost> {
    let image = image_name(&args.image);
    let config = args
        .config
        .iter()
        .map(|kv| key_value(kv))
        .collect::<anyhow::Result<_>>()?;
    let source = InstanceSource {
        kind: "image".into(),
        alias: if alias {
            image.to_string()
        } else {
            String::new()
        },
        fingerprint: if alias {
            String::new()
        } else {
            image.to_string()
        },
        ..Default::default()
    };
    Ok(InstancesPost {
        name: args.name.clone().unwrap_or_default(),
        kind: if args.vm {
            "virtual-machine"
        } else {
            "container"
        }
        .into(),
        source,
        config,
        profiles: (!args.profiles.is_empty()).then(|| args.profiles.clone()),
        ephemeral: args.ephemeral,
        ..Default::default()
    })
}

fn image_name(image: &str) -> &str {
    image.strip_prefix("local:").unwrap_or(image)
}

/// Create (and with `start`, start) the instance.
pub async fn run(client: &Client, args: LaunchArgs, start: bool) -> anyhow::Result<()> {
    let alias = match client.image_alias(image_name(&args.image)).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    let req = request(&args, alias)?;
    match &args.name {
        Some(name) => println!("Creating {name}"),
        None => println!("Creating the instance"),
    }
    let op = client.create_instance(&req, args.target.as_deref()).await?;
    let done = crate::progress::wait(client, &op, "Creating").await?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => {
            let name = created_name(&done)
                .or_else(|| created_name(&op))
                .ok_or_else(|| {
                    anyhow::anyhow!("the daemon did not say which instance it created")
                })?;
            println!("Instance name is: {name}");
            name
        }
    };
    if start {
        println!("Starting {name}");
        super::change_state(client, &name, "start", false, -1).await?;
    }
    Ok(())
}

/// The instance named in an operation's `resources.instances`.
fn created_name(op: &api::Operation) -> Option<String> {
    let urls = op.resources.as_ref()?.get("instances")?;
    let url = urls.first()?;
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> LaunchArgs {
        LaunchArgs {
            image: "local:busybox".into(),
            name: Some("c1".into()),
            config: vec!["limits.memory=256MiB".into()],
            profiles: vec![],
            ephemeral: true,
            vm: false,
            target: None,
        }
    }

    #[test]
    fn request_by_alias_or_fingerprint() {
        let req = request(&args(), true).expect("valid");
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(v["source"]["type"], "image");
        assert_eq!(v["source"]["alias"], "busybox");
        assert_eq!(v["source"]["fingerprint"], "");
        assert_eq!(v["config"]["limits.memory"], "256MiB");
        assert_eq!(v["profiles"], serde_json::Value::Null);
        assert_eq!(v["type"], "container");
        assert_eq!(v["ephemeral"], true);
        let req = request(&args(), false).expect("valid");
        assert_eq!(req.source.fingerprint, "busybox");
    }

    #[test]
    fn bad_config_is_rejected() {
        let mut a = args();
        a.config = vec!["nokey".into()];
        assert!(request(&a, true).is_err());
    }
}
