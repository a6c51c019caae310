//! DNS-rebinding protection: the `Host` and `Origin` checks that run before any other
//! stage.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// Host names that always mean this machine.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// The `Host` and `Origin` allow-lists of one listener.
#[derive(Debug, Clone)]
pub struct HostGuard {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    loopback: bool,
}

/// The check that rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRejection {
    /// The `Host` header is missing or names a host this listener does not serve.
    Host,
    /// The `Origin` header names an origin that may not call this listener.
    Origin,
}

impl HostGuard {
    /// Builds the guard from the configured lists. `loopback` is true when the listener
    /// is bound to a loopback address, which narrows the defaults to loopback names.
    pub fn new(allowed_hosts: Vec<String>, allowed_origins: Vec<String>, loopback: bool) -> Self {
        let lower = |list: Vec<String>| {
            list.into_iter()
                .map(|item| item.to_ascii_lowercase())
                .collect()
        };
        Self {
            allowed_hosts: lower(allowed_hosts),
            allowed_origins: lower(allowed_origins),
            loopback,
        }
    }

    /// Checks a request's `Host` and `Origin` headers.
    ///
    /// # Errors
    ///
    /// Returns the first check that failed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GuardRejection> {
        self.check_host(headers)?;
        self.check_origin(headers)
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), GuardRejection> {
        if self.allowed_hosts.is_empty() && !self.loopback {
            return Ok(());
        }
        let mut hosts = headers.get_all(HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(GuardRejection::Host);
        };
        let host = host
            .to_str()
            .map_err(|_| GuardRejection::Host)?
            .to_ascii_lowercase();
        let name = strip_port(&host);
        let allowed = if self.allowed_hosts.is_empty() {
            LOOPBACK_NAMES.contains(&name)
        } else {
            self.allowed_hosts
                .iter()
                .any(|allowed| *allowed == host || *allowed == name)
        };
        if allowed {
            Ok(())
        } else {
            Err(GuardRejection::Host)
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), GuardRejection> {
        let mut origins = headers.get_all(ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        if origins.next().is_some() {
            return Err(GuardRejection::Origin);
        }
        let origin = origin
            .to_str()
            .map_err(|_| GuardRejection::Origin)?
            .to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return Ok(());
        }
        if self.allowed_origins.is_empty() && self.loopback {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            if LOOPBACK_NAMES.contains(&strip_port(authority)) {
                return Ok(());
            }
        }
        Err(GuardRejection::Origin)
    }
}

/// Removes a `:port` suffix, leaving bracketed IPv6 literals intact.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn loopback_listener_accepts_loopback_names_only() {
        let guard = HostGuard::new(vec![], vec![], true);
        assert_eq!(guard.check(&headers(&[("host", "127.0.0.1:8080")])), Ok(()));
        assert_eq!(guard.check(&headers(&[("host", "localhost")])), Ok(()));
        assert_eq!(guard.check(&headers(&[("host", "[::1]:8080")])), Ok(()));
        assert_eq!(
            guard.check(&headers(&[("host", "evil.example:8080")])),
            Err(GuardRejection::Host)
        );
        assert_eq!(guard.check(&headers(&[])), Err(GuardRejection::Host));
    }

    #[test]
    fn configured_hosts_replace_defaults() {
        let guard = HostGuard::new(vec!["mcp.example.com".into()], vec![], false);
        assert_eq!(
            guard.check(&headers(&[("host", "mcp.example.com:443")])),
            Ok(())
        );
        assert_eq!(
            guard.check(&headers(&[("host", "localhost")])),
            Err(GuardRejection::Host)
        );
    }

    #[test]
    fn origin_must_be_allowed() {
        let guard = HostGuard::new(vec![], vec![], true);
        let local = headers(&[("host", "localhost"), ("origin", "http://localhost:3000")]);
        assert_eq!(guard.check(&local), Ok(()));
        let evil = headers(&[("host", "localhost"), ("origin", "https://evil.example")]);
        assert_eq!(guard.check(&evil), Err(GuardRejection::Origin));

        let configured = HostGuard::new(vec![], vec!["https://app.example.com".into()], false);
        let app = headers(&[("host", "x"), ("origin", "https://app.example.com")]);
        assert_eq!(configured.check(&app), Ok(()));
        let other = headers(&[("host", "x"), ("origin", "http://localhost")]);
        assert_eq!(configured.check(&other), Err(GuardRejection::Origin));
    }
}
