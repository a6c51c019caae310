//! Durations written as `"500ms"`, `"30s"`, `"1m"` or `"2h"`.

use std::time::Duration;

/// Parses a duration such as `"500ms"`, `"30s"`, `"1m"` or `"1h 30m"`.
///
/// # Errors
///
/// Returns a message naming the value when it has no unit or an unknown unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!("invalid duration {text:?}: {error}; write e.g. \"500ms\", \"30s\", \"1m\"")
    })
}

pub(crate) mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
