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
}
