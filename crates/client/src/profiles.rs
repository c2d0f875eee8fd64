//! `/1.0/profiles`.

use api::profiles::Profile;
use hyper::Method;

use crate::urlenc::segment;
use crate::{Client, Result};

impl Client {
    /// All profiles (`?recursion=1`).
    pub async fn profiles(&self) -> Result<Vec<Profile>> {
        self.sync(Method::GET, "/1.0/profiles?recursion=1", None::<&()>)
            .await
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<Profile> {
        let path = format!("/1.0/profiles/{}", segment(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }
}
