//! The crate's error type.

/// Errors raised while building a limiter from its configuration.
///
/// Rate decisions are never errors: they are [`Decision`](crate::Decision) values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// A configuration value is outside the range the limiter accepts.
    #[error("invalid ratelimit config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The dotted path of the field, such as `tiers.tool.overrides`.
        field: String,
        /// The offending value, as written.
        value: String,
        /// The accepted values.
        reason: &'static str,
    },
}
