//! `/1.0/operations`: listing, waiting, cancelling.

use std::collections::BTreeMap;
use std::time::Duration;

use api::{Operation, OperationStatus};
use hyper::Method;

use crate::urlenc::segment;
use crate::{Client, Error, Result};

/// How long one `/wait` call asks the daemon to hold; [`Client::wait_done`] repeats it.
const WAIT_SLICE: Duration = Duration::from_secs(30);

fn operation_path(id: &str) -> String {
    format!("/1.0/operations/{}", segment(id))
}

impl Client {
    /// All operations by status key (`running`, `success`, ...), `?recursion=1`.
    pub async fn operations(&self) -> Result<BTreeMap<String, Vec<Operation>>> {
        let map: Option<BTreeMap<String, Vec<Operation>>> = self
            .sync(Method::GET, "/1.0/operations?recursion=1", None::<&()>)
            .await?;
        Ok(map.unwrap_or_default())
    }

    /// One operation.
    pub async fn operation(&self, id: &str) -> Result<Operation> {
        self.sync(Method::GET, &operation_path(id), None::<&()>)
            .await
    }

    /// Cancel an operation (`DELETE /1.0/operations/{id}`).
    pub async fn cancel_operation(&self, id: &str) -> Result<()> {
        let _: serde_json::Value = self
            .sync(Method::DELETE, &operation_path(id), None::<&()>)
            .await?;
        Ok(())
    }

    /// `GET /1.0/operations/{id}/wait?timeout=N`: the operation once it is final, or its
    /// current record after `timeout` (`None`: wait as long as it takes, `timeout=-1`).
    pub async fn wait_operation(&self, id: &str, timeout: Option<Duration>) -> Result<Operation> {
        let secs = timeout.map_or(-1, |t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
        let path = format!("{}/wait?timeout={secs}", operation_path(id));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Wait for `op` to finish. `Success` yields the final record; `Failure` and
    /// `Cancelled` yield [`Error::OperationFailed`] carrying the operation's `err`.
    pub async fn wait_done(&self, op: &Operation) -> Result<Operation> {
        let mut current = op.clone();
        while !current.status.is_final() {
            current = self.wait_operation(&op.id, Some(WAIT_SLICE)).await?;
        }
        outcome(current)
    }
}

/// A final operation as a result.
pub fn outcome(op: Operation) -> Result<Operation> {
    match op.status {
        OperationStatus::Success => Ok(op),
        OperationStatus::Cancelled if op.err.is_empty() => Err(Error::OperationFailed {
            id: op.id,
            message: "Operation cancelled".to_string(),
        }),
        _ => Err(Error::OperationFailed {
            message: if op.err.is_empty() {
                format!("operation {} ended {:?}", op.id, op.status)
            } else {
                op.err
            },
            id: op.id,
        }),
    }
}
