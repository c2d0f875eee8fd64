//! `GET /1.0`.

use api::server::Server;
use hyper::Method;

use crate::{Client, Result};

impl Client {
    /// The server record: API extensions, environment (`server_clustered`,
    /// `server_version`, ...).
    pub async fn server(&self) -> Result<Server> {
        self.sync(Method::GET, "/1.0", None::<&()>).await
    }

    /// Changes server config keys (`PATCH /1.0`): each key in `changes` is set, an empty
    /// value unsets it; keys not named keep their values.
    pub async fn patch_server_config(&self, changes: api::ConfigMap) -> Result<()> {
        let body = api::server::ServerPut { config: changes };
        let _: serde_json::Value = self.sync(Method::PATCH, "/1.0", Some(&body)).await?;
        Ok(())
    }
}
