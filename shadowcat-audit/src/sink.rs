//! The interface services use to emit audit events.

use std::sync::Arc;

use crate::event::AuditEvent;

/// Something that accepts audit events on the request path.
///
/// `record` must never block: implementations queue the event or drop and count it.
/// [`AuditHandle`](crate::AuditHandle) is the implementation this crate provides.
pub trait AuditSink: Send + Sync {
    /// Accepts one event without blocking.
    fn record(&self, event: AuditEvent);
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: AuditEvent) {
        (**self).record(event);
    }
}

impl<T: AuditSink + ?Sized> AuditSink for &T {
    fn record(&self, event: AuditEvent) {
        (**self).record(event);
    }
}
