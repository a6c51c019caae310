//! Legacy-era sessions: the proxy's session ids and what each one maps to upstream.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use parking_lot::{Mutex, RwLock};
use shadowcat_core::SessionId;

use crate::upstream::{StdioChild, UpstreamGroup};

/// The upstream side of a session.
#[derive(Debug)]
pub enum SessionUpstream {
    /// An HTTP upstream, with the upstream's own session id if it assigned one.
    Http {
        /// The `Mcp-Session-Id` the upstream returned from `initialize`.
        upstream_session: Option<HeaderValue>,
    },
    /// A stdio child started for this session alone.
    Stdio(Arc<StdioChild>),
}

/// One legacy session.
#[derive(Debug)]
pub struct Session {
    /// The proxy-minted id the client uses.
    pub id: SessionId,
    /// The protocol version negotiated by `initialize`.
    pub protocol_version: String,
    /// The upstream side of the session.
    pub upstream: SessionUpstream,
    /// The group whose replica serves the session.
    pub group: Arc<UpstreamGroup>,
    /// The replica that served `initialize`; every later request goes to it.
    pub replica: usize,
    /// The verified subject that created the session, if any.
    pub subject: Option<String>,
    /// The client address that created the session.
    pub client_ip: IpAddr,
    last_used: Mutex<Instant>,
    next_event_id: AtomicU64,
}

impl Session {
    /// Builds a session record.
    pub fn new(
        protocol_version: String,
        upstream: SessionUpstream,
        (group, replica): (Arc<UpstreamGroup>, usize),
        subject: Option<String>,
        client_ip: IpAddr,
    ) -> Self {
        Self {
            id: SessionId::mint(),
            protocol_version,
            upstream,
            group,
            replica,
            subject,
            client_ip,
            last_used: Mutex::new(Instant::now()),
            next_event_id: AtomicU64::new(1),
        }
    }

    /// Marks the session as used now, for the idle timeout.
    pub fn touch(&self) {
        *self.last_used.lock() = Instant::now();
    }

    /// Returns the next SSE event id for proxy-generated streams.
    pub fn next_event_id(&self) -> u64 {
        self.next_event_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns true if JSON-RPC batches are allowed in this session (2025-03-26 only).
    pub fn allows_batches(&self) -> bool {
        self.protocol_version == shadowcat_core::mcp::BATCH_VERSION
    }

    fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.last_used.lock())
    }

    /// Ends the upstream side: kills a stdio child. HTTP sessions are ended by the
    /// caller with a `DELETE` to the upstream.
    pub fn end_upstream(&self) {
        if let SessionUpstream::Stdio(child) = &self.upstream {
            child.kill();
        }
    }
}

/// The error returned when the session table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the proxy holds the maximum of {0} sessions")]
pub struct SessionsFull(pub usize);

/// All live sessions, bounded in number.
#[derive(Debug)]
pub struct SessionTable {
    sessions: RwLock<HashMap<SessionId, Arc<Session>>>,
    max_sessions: usize,
}

impl SessionTable {
    /// Builds an empty table with room for at most `max_sessions` sessions.
    pub fn new(max_sessions: usize) -> Self {
        Self {
            sessions: RwLock::new(HashMap::new()),
            max_sessions,
        }
    }

    /// Adds a session.
    ///
    /// # Errors
    ///
    /// Returns [`SessionsFull`] when the table is at its maximum.
    pub fn insert(&self, session: Arc<Session>) -> Result<(), SessionsFull> {
        let mut sessions = self.sessions.write();
        if sessions.len() >= self.max_sessions {
            return Err(SessionsFull(self.max_sessions));
        }
        sessions.insert(session.id, session);
        Ok(())
    }

    /// Looks up a live session and marks it used.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.sessions.read().get(id).cloned()?;
        session.touch();
        Some(session)
    }

    /// Removes a session and returns it, if it was live.
    pub fn remove(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.sessions.write().remove(id)
    }

    /// Returns the number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    /// Returns true if no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the sessions idle for longer than `timeout`, and those whose
    /// stdio child has exited.
    pub fn remove_idle(&self, timeout: Duration) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let mut sessions = self.sessions.write();
        let expired: Vec<SessionId> = sessions
            .values()
            .filter(|session| {
                let child_exited =
                    matches!(&session.upstream, SessionUpstream::Stdio(child) if !child.is_alive());
                child_exited || session.idle_for(now) >= timeout
            })
            .map(|session| session.id)
            .collect();
        expired
            .iter()
            .filter_map(|id| sessions.remove(id))
            .collect()
    }

    /// Removes and returns every session, for shutdown.
    pub fn drain(&self) -> Vec<Arc<Session>> {
        self.sessions
            .write()
            .drain()
            .map(|(_, session)| session)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{HttpUpstream, Member, UpstreamKind};

    fn group() -> (Arc<UpstreamGroup>, usize) {
        let http = HttpUpstream::new(
            "http://127.0.0.1:9/mcp".parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            http::HeaderMap::new(),
        );
        let member = Member::new(
            "http://127.0.0.1:9/mcp",
            UpstreamKind::Http(Box::new(http)),
            Duration::from_secs(1),
        );
        (UpstreamGroup::single(member), 0)
    }

    fn session() -> Arc<Session> {
        Arc::new(Session::new(
            "2025-06-18".to_owned(),
            SessionUpstream::Http {
                upstream_session: None,
            },
            group(),
            None,
            IpAddr::from([127, 0, 0, 1]),
        ))
    }

    #[test]
    fn table_is_bounded() {
        let table = SessionTable::new(1);
        table.insert(session()).unwrap();
        assert_eq!(table.insert(session()), Err(SessionsFull(1)));
    }

    #[test]
    fn removed_session_is_gone() {
        let table = SessionTable::new(4);
        let first = session();
        table.insert(Arc::clone(&first)).unwrap();
        assert!(table.get(&first.id).is_some());
        assert!(table.remove(&first.id).is_some());
        assert!(table.get(&first.id).is_none());
    }

    #[test]
    fn idle_sessions_are_removed() {
        let table = SessionTable::new(4);
        table.insert(session()).unwrap();
        assert!(table.remove_idle(Duration::from_secs(60)).is_empty());
        assert_eq!(table.remove_idle(Duration::ZERO).len(), 1);
        assert!(table.is_empty());
    }

    #[test]
    fn only_2025_03_26_allows_batches() {
        assert!(!session().allows_batches());
        let old = Session::new(
            "2025-03-26".to_owned(),
            SessionUpstream::Http {
                upstream_session: None,
            },
            group(),
            None,
            IpAddr::from([127, 0, 0, 1]),
        );
        assert!(old.allows_batches());
    }
}
