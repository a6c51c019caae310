//! Per-route authentication rules: anonymous access and required scopes.

use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};

use super::config::{AuthConfigError, RouteConfig};

/// Requirements of one route: anonymous access and scopes.
#[derive(Debug, Default)]
pub(crate) struct RouteRule {
    pub(crate) anonymous: bool,
    pub(crate) scopes: Vec<String>,
    /// `scopes` joined by spaces, for the `scope` challenge parameter.
    pub(crate) scope_text: Option<Arc<str>>,
}

/// Route rules in configuration order. The first matching path wins.
pub(crate) struct RouteTable {
    rules: Vec<(GlobMatcher, RouteRule)>,
    fallback: RouteRule,
}

impl RouteTable {
    pub(crate) fn new(configs: &[RouteConfig]) -> Result<Self, AuthConfigError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let matcher = GlobBuilder::new(&config.path)
                .literal_separator(true)
                .build()
                .map_err(|error| {
                    AuthConfigError::invalid(
                        format!("auth.routes[{index}].path"),
                        &config.path,
                        format!("invalid glob: {error}"),
                    )
                })?
                .compile_matcher();
            let scope_text =
                (!config.scopes.is_empty()).then(|| Arc::from(config.scopes.join(" ")));
            let rule = RouteRule {
                anonymous: config.anonymous,
                scopes: config.scopes.clone(),
                scope_text,
            };
            rules.push((matcher, rule));
        }
        Ok(Self {
            rules,
            fallback: RouteRule::default(),
        })
    }

    /// Returns the rule for `route`, or the default (credentials required, no scope).
    pub(crate) fn rule(&self, route: &str) -> &RouteRule {
        self.rules
            .iter()
            .find(|(matcher, _)| matcher.is_match(route))
            .map_or(&self.fallback, |(_, rule)| rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, anonymous: bool) -> RouteConfig {
        RouteConfig {
            path: path.to_owned(),
            anonymous,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let table =
            RouteTable::new(&[route("/public/admin", false), route("/public/**", true)]).unwrap();
        assert!(!table.rule("/public/admin").anonymous);
        assert!(table.rule("/public/a/b").anonymous);
        assert!(!table.rule("/mcp").anonymous);
    }

    #[test]
    fn star_does_not_cross_slash() {
        let table = RouteTable::new(&[route("/open/*", true)]).unwrap();
        assert!(table.rule("/open/x").anonymous);
        assert!(!table.rule("/open/x/y").anonymous);
    }
}
