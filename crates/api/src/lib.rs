//! Wire types of drover's `/1.0` REST API.
//!
//! drover speaks the subset of LXD's REST API that it implements with LXD's field names and
//! shapes, so LXD's own clients (the `lxc` 5.0.2 CLI, pylxd) work unchanged. Everything here
//! is serde only: no I/O, no runtime. Additions beyond LXD are named by an API extension in
//! [`extensions::API_EXTENSIONS`] and never change the meaning of an existing field.

pub mod certificates;
pub mod cluster;
pub mod de;
pub mod envelope;
pub mod evacuation;
pub mod events;
pub mod exec;
pub mod extensions;
pub mod images;
pub mod instances;
pub mod members;
pub mod networks;
pub mod operations;
pub mod profiles;
pub mod projects;
pub mod resources;
pub mod server;
pub mod storage;

pub use envelope::{ErrorBody, Response, ResponseType};
pub use events::Event;
pub use instances::{Instance, InstanceState, InstanceStatePut, InstanceStatus, InstancesPost};
pub use members::MemberState;
pub use operations::{Operation, OperationClass, OperationStatus};

/// Config values are strings in LXD's API (`"limits.memory": "256MiB"`).
pub type ConfigMap = std::collections::BTreeMap<String, String>;

/// Devices: name → device config (`{"root": {"type": "disk", "path": "/", "pool": "default"}}`).
pub type DeviceMap = std::collections::BTreeMap<String, ConfigMap>;
