//! Storage pools: where instance root filesystems (volumes) live.

mod dir;
mod error;

pub use dir::DirPool;
pub use error::PoolError;
