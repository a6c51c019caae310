use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::TryRngCore;
use rand::rngs::OsRng;

/// A proxy-minted MCP session id: 128 bits from the operating system's RNG, written as
/// 32 lowercase hex digits.
///
/// The id a client sees is never the upstream's session id; the proxy keeps the mapping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

/// The error returned when a string is not a Shadowcat session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id: expected 32 hex digits")]
pub struct SessionIdError;

impl SessionId {
    /// Mints a new session id from the operating system's RNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system's RNG fails, because a predictable session id would
    /// let one client take over another's session.
    pub fn mint() -> Self {
        let mut bytes = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random number generator failed");
        Self(bytes)
    }

    /// Returns the raw 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = SessionIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return Err(SessionIdError);
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or(SessionIdError)?;
            let low = hex_value(pair[1]).ok_or(SessionIdError)?;
            bytes[i] = (high << 4) | low;
        }
        Ok(Self(bytes))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A per-HTTP-request id used to correlate log lines and audit records.
///
/// Ids are unique within a process: a random 32-bit prefix chosen at start-up followed by
/// a 32-bit counter, so ids from two runs of the proxy do not collide in a shared log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// Allocates the next request id of this process.
    pub fn next() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 4];
            // A failed RNG only weakens uniqueness across restarts, so fall back to zero.
            let _ = OsRng.try_fill_bytes(&mut bytes);
            u64::from(u32::from_le_bytes(bytes)) << 32
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff;
        Self(prefix | count)
    }

    /// Builds a request id from its numeric value, for tests and for parsing logs.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// Returns the numeric value of the id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_text() {
        let id = SessionId::mint();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(text.parse::<SessionId>(), Ok(id));
    }

    #[test]
    fn session_ids_differ() {
        assert_ne!(SessionId::mint(), SessionId::mint());
    }

    #[test]
    fn session_id_rejects_bad_text() {
        for text in ["", "abc", &"g".repeat(32), &"a".repeat(33)] {
            assert_eq!(text.parse::<SessionId>(), Err(SessionIdError), "{text:?}");
        }
    }

    #[test]
    fn request_ids_are_unique() {
        let first = RequestId::next();
        let second = RequestId::next();
        assert_ne!(first, second);
        assert_eq!(first.to_string().len(), 16);
    }
}
