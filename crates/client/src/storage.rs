//! `/1.0/storage-pools`.

use api::storage::{StoragePool, StoragePoolsPost};
use hyper::Method;

use crate::urlenc::segment;
use crate::{Client, Result};

impl Client {
    /// All storage pools (`?recursion=1`).
    pub async fn storage_pools(&self) -> Result<Vec<StoragePool>> {
        self.sync(Method::GET, "/1.0/storage-pools?recursion=1", None::<&()>)
            .await
    }

    /// One storage pool.
    pub async fn storage_pool(&self, name: &str) -> Result<StoragePool> {
        let path = format!("/1.0/storage-pools/{}", segment(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Create a storage pool (`POST /1.0/storage-pools`, a sync request in LXD).
    pub async fn create_storage_pool(&self, req: &StoragePoolsPost) -> Result<()> {
        let _: serde_json::Value = self
            .sync(Method::POST, "/1.0/storage-pools", Some(req))
            .await?;
        Ok(())
    }
}
