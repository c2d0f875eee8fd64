//! Storage pools: where instance root filesystems (volumes) live.

mod copy;
mod dir;
mod error;
mod overlay;
mod usage;

pub use dir::{DirPool, RetiredVolume};
pub use error::PoolError;
pub use usage::PoolUsage;
