//! Precompiled conditions of one rule.

use std::net::IpAddr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;

use super::config::{Action, PolicyConfigError};

/// Names matched exactly or by glob, compiled once at load time.
///
/// The common glob shapes `*`, `prefix*` and `*suffix` become plain string checks, and
/// only other globs go through `globset`. `*` matches any text, `/` included.
#[derive(Debug)]
pub(crate) struct NameMatcher {
    any: bool,
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
    suffixes: Vec<Box<str>>,
    globs: Option<GlobSet>,
}

const GLOB_CHARACTERS: [char; 5] = ['*', '?', '[', '{', '\\'];

impl NameMatcher {
    /// Compiles `patterns`, returning `None` for an empty list, which means no condition.
    pub(crate) fn new(field: &str, patterns: &[String]) -> Result<Option<Self>, PolicyConfigError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut matcher = Self {
            any: false,
            exact: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            globs: None,
        };
        let mut builder = GlobSetBuilder::new();
        let mut glob_count = 0;
        for pattern in patterns {
            if pattern.is_empty() {
                return Err(PolicyConfigError::new(
                    field,
                    "",
                    "an empty pattern matches nothing",
                ));
            }
            let literal = |text: &str| !text.contains(GLOB_CHARACTERS);
            if pattern == "*" {
                matcher.any = true;
            } else if !pattern.contains(GLOB_CHARACTERS) {
                matcher.exact.push(Box::from(pattern.as_str()));
            } else if let Some(prefix) = pattern.strip_suffix('*').filter(|prefix| literal(prefix))
            {
                matcher.prefixes.push(Box::from(prefix));
            } else if let Some(suffix) = pattern.strip_prefix('*').filter(|suffix| literal(suffix))
            {
                matcher.suffixes.push(Box::from(suffix));
            } else {
                let glob = Glob::new(pattern).map_err(|error| {
                    PolicyConfigError::new(field, pattern, format!("invalid glob: {error}"))
                })?;
                builder.add(glob);
                glob_count += 1;
            }
        }
        if glob_count > 0 {
            matcher.globs = Some(builder.build().map_err(|error| {
                PolicyConfigError::new(field, patterns.join(", "), format!("invalid glob: {error}"))
            })?);
        }
        Ok(Some(matcher))
    }

    pub(crate) fn is_match(&self, name: &str) -> bool {
        self.any
            || self.exact.iter().any(|exact| **exact == *name)
            || self
                .prefixes
                .iter()
                .any(|prefix| name.starts_with(&**prefix))
            || self.suffixes.iter().any(|suffix| name.ends_with(&**suffix))
            || self
                .globs
                .as_ref()
                .is_some_and(|globs| globs.is_match(name))
    }
}

/// Resource URI prefixes.
#[derive(Debug)]
pub(crate) struct PrefixMatcher {
    prefixes: Vec<Box<str>>,
}

impl PrefixMatcher {
    pub(crate) fn new(field: &str, prefixes: &[String]) -> Result<Option<Self>, PolicyConfigError> {
        if prefixes.is_empty() {
            return Ok(None);
        }
        if prefixes.iter().any(String::is_empty) {
            return Err(PolicyConfigError::new(
                field,
                "",
                "an empty prefix would match every URI; list no prefix to match any resource",
            ));
        }
        Ok(Some(Self {
            prefixes: prefixes
                .iter()
                .map(|prefix| Box::from(prefix.as_str()))
                .collect(),
        }))
    }

    /// Matches `uri` against the prefixes.
    ///
    /// URIs are compared as sent. A URI with a dot segment (`.` or `..`, also
    /// percent-encoded) could escape a prefix once the upstream resolves it, so it
    /// never matches an allow rule and always matches a deny rule.
    pub(crate) fn is_match(&self, uri: &str, action: Action) -> bool {
        if has_dot_segment(uri) {
            return action == Action::Deny;
        }
        self.prefixes
            .iter()
            .any(|prefix| uri.starts_with(&**prefix))
    }
}

fn has_dot_segment(uri: &str) -> bool {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    path.split(['/', '\\']).any(is_dot_segment)
}

/// Returns true for `.` and `..`, with each dot written plainly or as `%2e`.
fn is_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut dots = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'.' {
            index += 1;
        } else if bytes.len() - index >= 3 && bytes[index..index + 3].eq_ignore_ascii_case(b"%2e") {
            index += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

/// Client address ranges.
#[derive(Debug)]
pub(crate) struct NetMatcher {
    nets: Vec<IpNet>,
}

impl NetMatcher {
    pub(crate) fn new(field: &str, ranges: &[String]) -> Result<Option<Self>, PolicyConfigError> {
        if ranges.is_empty() {
            return Ok(None);
        }
        let mut nets = Vec::with_capacity(ranges.len());
        for range in ranges {
            let net = match range.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match range.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(PolicyConfigError::new(
                            field,
                            range,
                            "must be an address range in CIDR form, for example 10.0.0.0/8",
                        ));
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(Some(Self { nets }))
    }

    /// Matches an address that is already normalized (IPv4-mapped IPv6 as IPv4).
    pub(crate) fn is_match(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(patterns: &[&str]) -> NameMatcher {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        NameMatcher::new("f", &patterns).unwrap().unwrap()
    }

    #[test]
    fn names_match_exact_and_glob() {
        let matcher = names(&["echo", "read_*"]);
        assert!(matcher.is_match("echo"));
        assert!(matcher.is_match("read_file"));
        assert!(!matcher.is_match("echo2"));
        assert!(!matcher.is_match("write_file"));
    }

    #[test]
    fn glob_shapes_agree_with_globset() {
        let patterns = ["*", "read_*", "*_file", "r?ad_*", "{a,b}*", "tools/*"];
        let names = [
            "read_file",
            "rxad_x",
            "b",
            "tools/call",
            "write_file",
            "",
            "notes/x",
        ];
        for pattern in patterns {
            let ours = NameMatcher::new("f", &[pattern.to_owned()])
                .unwrap()
                .unwrap();
            let reference = Glob::new(pattern).unwrap().compile_matcher();
            for name in names {
                assert_eq!(
                    ours.is_match(name),
                    reference.is_match(name),
                    "{pattern} {name}"
                );
            }
        }
    }

    #[test]
    fn empty_list_is_no_condition() {
        assert!(NameMatcher::new("f", &[]).unwrap().is_none());
    }

    #[test]
    fn bad_glob_names_field() {
        let error = NameMatcher::new("policy.rules[0].tools", &["a[".to_owned()]).unwrap_err();
        assert_eq!(error.field, "policy.rules[0].tools");
        assert_eq!(error.value, "a[");
    }

    #[test]
    fn dot_segments_fail_closed() {
        let matcher = PrefixMatcher::new("f", &["file:///public/".to_owned()])
            .unwrap()
            .unwrap();
        assert!(matcher.is_match("file:///public/a.txt", Action::Allow));
        for uri in [
            "file:///public/../secret",
            "file:///public/%2E%2E/secret",
            "file:///public/./a",
        ] {
            assert!(!matcher.is_match(uri, Action::Allow), "{uri}");
            assert!(matcher.is_match(uri, Action::Deny), "{uri}");
        }
        assert!(matcher.is_match("file:///public/a..b", Action::Allow));
    }

    #[test]
    fn nets_accept_bare_addresses() {
        let ranges = ["10.0.0.0/8".to_owned(), "::1".to_owned()];
        let matcher = NetMatcher::new("f", &ranges).unwrap().unwrap();
        assert!(matcher.is_match("10.1.2.3".parse().unwrap()));
        assert!(matcher.is_match("::1".parse().unwrap()));
        assert!(!matcher.is_match("11.0.0.1".parse().unwrap()));
        assert!(NetMatcher::new("f", &["10.0.0.0/33".to_owned()]).is_err());
    }
}
