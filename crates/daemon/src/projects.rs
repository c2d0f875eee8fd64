//! The projects service: drover has the `default` project only, shown as LXD shows its own,
//! so that `lxc project list|show` and pylxd's `client.projects` work; anything that would
//! create, change or delete a project is refused and changes nothing.

use api::projects::Project;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The only project.
const DEFAULT: &str = "default";

/// Every project: `default`.
pub async fn list(d: &Daemon) -> ApiResult<Vec<Project>> {
    Ok(vec![get(d, DEFAULT).await?])
}

/// The project `name` (only `default` exists).
pub async fn get(d: &Daemon, name: &str) -> ApiResult<Project> {
    Daemon::check_project(name)?;
    let used_by = d
        .read(|c| {
            let mut urls: Vec<String> = db::instances::list(c, DEFAULT)?
                .iter()
                .map(|r| crate::instances::url(&r.name))
                .collect();
            urls.extend(
                db::profiles::list(c, DEFAULT)?
                    .iter()
                    .map(|p| format!("/1.0/profiles/{}", p.name)),
            );
            urls.extend(
                db::images::list(c)?
                    .iter()
                    .map(|i| format!("/1.0/images/{}", i.fingerprint)),
            );
            Ok(urls)
        })
        .await?;
    let config = [
        "features.images",
        "features.networks",
        "features.profiles",
        "features.storage.volumes",
    ]
    .into_iter()
    .map(|k| (k.to_string(), "true".to_string()))
    .collect();
    Ok(Project {
        name: DEFAULT.to_string(),
        description: "Default drover project".to_string(),
        config,
        used_by,
    })
}

/// Why the project `name` cannot be `verb` (`"created"`, `"changed"`, `"renamed"`,
/// `"deleted"`): drover has only `default`, and it stays as it is. Worded as LXD words its
/// refusals for `default` (`The 'default' project cannot be deleted`).
pub fn refuse(name: &str, verb: &str) -> ApiError {
    if name == DEFAULT {
        ApiError::forbidden(format!("The '{DEFAULT}' project cannot be {verb}"))
    } else if verb == "created" {
        ApiError::not_implemented(format!(
            "Projects other than '{DEFAULT}' are not supported by drover"
        ))
    } else {
        ApiError::not_found("Project not found")
    }
}
