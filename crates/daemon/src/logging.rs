//! A tracing layer that publishes log records as `logging` events on `/1.0/events`.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

/// Publishes every log record at INFO or above on the event bus (what `lxc monitor
/// --type=logging` shows).
#[derive(Debug, Clone)]
pub struct EventLayer {
    bus: ops::EventBus,
}

impl EventLayer {
    /// A layer publishing on `bus`.
    pub fn new(bus: ops::EventBus) -> Self {
        Self { bus }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    context: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.context
                .insert(field.name().to_string(), serde_json::Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.context.insert(
                field.name().to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for EventLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > tracing::Level::INFO || !self.bus.has_listeners() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match level {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => "info",
        };
        self.bus.publish(
            "logging",
            serde_json::json!({"message": fields.message, "level": level, "context": fields.context}),
            None,
        );
    }
}
