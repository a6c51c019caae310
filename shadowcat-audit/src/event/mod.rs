//! The audit event a caller builds, and the record a reader parses back.

mod kind;
mod record;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use shadowcat_core::{CallContext, Principal, RequestId, SessionId};

pub use kind::{
    AuthFailureReason, Detector, EventKind, Outcome, RejectReason, SessionCloseReason, Text,
    UpstreamFailure,
};
pub use record::AuditRecord;

/// The version written in every record's `v` field.
pub const SCHEMA_VERSION: u32 = 1;

/// One audit event, before the writer gives it a sequence number and a hash.
///
/// Building an event is cheap: it reads the system clock once and clones a few `Copy`
/// ids and one `Arc`. Formatting, redaction and hashing happen on the writer thread.
///
/// ```
/// use shadowcat_audit::{AuditEvent, AuthFailureReason, EventKind};
///
/// let event = AuditEvent::new(EventKind::AuthFailure {
///     reason: AuthFailureReason::Expired,
///     user_agent: Some("curl/8.5.0".into()),
/// })
/// .with_client_ip("192.0.2.7".parse().unwrap());
/// assert_eq!(event.kind().name(), "auth.failure");
/// ```
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub(crate) time: SystemTime,
    pub(crate) request_id: Option<RequestId>,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) subject: Option<Subject>,
    pub(crate) kind: EventKind,
}

/// The subject of an event: borrowed from the caller's principal when there is one.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Principal(Arc<Principal>),
    Text(Arc<str>),
}

impl Subject {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Principal(principal) => &principal.subject,
            Self::Text(text) => text,
        }
    }
}

impl AuditEvent {
    /// Builds an event of `kind` stamped with the current system time.
    pub fn new(kind: EventKind) -> Self {
        Self {
            time: SystemTime::now(),
            request_id: None,
            session_id: None,
            client_ip: None,
            subject: None,
            kind,
        }
    }

    /// Copies the request id, client address, session and subject from a request's
    /// context.
    pub fn with_context(mut self, context: &CallContext) -> Self {
        self.request_id = Some(context.request_id);
        self.client_ip = Some(context.client_ip);
        self.session_id = context.session_id;
        self.subject = context.principal.clone().map(Subject::Principal);
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Sets the proxy session id.
    pub fn with_session_id(mut self, session_id: SessionId) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Sets the client address.
    pub fn with_client_ip(mut self, client_ip: IpAddr) -> Self {
        self.client_ip = Some(client_ip);
        self
    }

    /// Sets the subject from a verified principal.
    pub fn with_principal(mut self, principal: Arc<Principal>) -> Self {
        self.subject = Some(Subject::Principal(principal));
        self
    }

    /// Sets the subject from text.
    pub fn with_subject(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.subject = Some(Subject::Text(subject.into()));
        self
    }

    /// Replaces the event time, for replaying events or for tests with a fake clock.
    pub fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    /// Returns when the event was built (or the time set with [`AuditEvent::at`]).
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// Returns the request id, if set.
    pub fn request_id(&self) -> Option<RequestId> {
        self.request_id
    }

    /// Returns the session id, if set.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session_id
    }

    /// Returns the client address, if set.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// Returns the subject, if set.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_ref().map(Subject::as_str)
    }

    /// Returns the kind-specific payload.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }
}
