//! The event bus behind `/1.0/events`.

use api::Event;
use api::events::LifecycleEvent;
use tokio::sync::broadcast;

use crate::now_rfc3339;

/// Fans events out to every listener. Slow listeners lose old events rather than slow the
/// daemon down (as LXD's do).
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// This member's name, stamped on events it publishes (changes when it joins a
    /// cluster).
    location: std::sync::Arc<std::sync::RwLock<String>>,
}

impl EventBus {
    /// A bus whose events carry `location` (the member name, `"none"` when not clustered).
    pub fn new(location: impl Into<String>) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            tx,
            location: std::sync::Arc::new(std::sync::RwLock::new(location.into())),
        }
    }

    /// The member name stamped on events.
    pub fn location(&self) -> String {
        self.location
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stamps `location` on events published from now on (this member was renamed:
    /// clustering enabled, or joined).
    pub fn set_location(&self, location: &str) {
        *self
            .location
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = location.to_string();
    }

    /// Publishes an event another member published, unchanged (its `location` says
    /// where it happened). Listeners of this member see the whole cluster's events.
    pub fn relay(&self, event: Event) {
        // No listener is not an error.
        let _ = self.tx.send(event);
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Whether anyone listens: publishers skip building events nobody would receive (an
    /// event sent with no listener is dropped anyway; a listener that subscribes just after
    /// the check is one that subscribed a moment later).
    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an event of `kind` (`operation`, `lifecycle`, `logging`).
    pub fn publish(&self, kind: &str, metadata: serde_json::Value, project: Option<&str>) {
        // No listener is not an error.
        let _ = self.tx.send(Event {
            kind: kind.to_string(),
            timestamp: now_rfc3339(),
            metadata,
            location: self.location(),
            project: project.map(str::to_string),
        });
    }

    /// Publishes a lifecycle event (`instance-started` on `/1.0/instances/c1`).
    pub fn lifecycle(
        &self,
        action: &str,
        source: String,
        project: &str,
        context: Option<serde_json::Value>,
    ) {
        if !self.has_listeners() {
            return;
        }
        let ev = LifecycleEvent {
            action: action.to_string(),
            source,
            context,
            requestor: None,
        };
        self.publish(
            "lifecycle",
            serde_json::to_value(ev).unwrap_or(serde_json::Value::Null),
            Some(project),
        );
    }
}
