//! RFC 9728 OAuth 2.0 Protected Resource Metadata.

use serde_json::{Map, Value};

use super::config::{AuthConfigError, ResourceMetadataConfig};

/// Path of the metadata document under the resource's origin (RFC 9728 section 3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The protected resource metadata document and where the proxy serves it.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    document: Value,
    url: String,
    paths: Vec<String>,
}

impl ResourceMetadata {
    /// Builds the document from `[auth.resource_metadata]`.
    ///
    /// # Errors
    ///
    /// Returns [`AuthConfigError::Invalid`] when `resource` is not an absolute URL.
    pub fn from_config(config: &ResourceMetadataConfig) -> Result<Self, AuthConfigError> {
        let resource = reqwest::Url::parse(&config.resource).map_err(|error| {
            AuthConfigError::invalid(
                "auth.resource_metadata.resource",
                &config.resource,
                format!("must be an absolute URL: {error}"),
            )
        })?;

        // RFC 9728 section 3.1: the well-known segment goes between the host and the
        // resource's path, and a terminating slash of that path is dropped.
        let resource_path = resource.path().trim_end_matches('/');
        let suffixed_path = format!("{WELL_KNOWN_PATH}{resource_path}");
        let url = match &config.metadata_url {
            Some(url) => url.clone(),
            None => {
                let mut well_known = resource.clone();
                well_known.set_path(&suffixed_path);
                well_known.to_string()
            }
        };
        let mut paths = vec![WELL_KNOWN_PATH.to_owned()];
        if suffixed_path != WELL_KNOWN_PATH {
            paths.push(suffixed_path);
        }

        let mut document = Map::new();
        document.insert("resource".to_owned(), Value::from(config.resource.clone()));
        if !config.authorization_servers.is_empty() {
            document.insert(
                "authorization_servers".to_owned(),
                Value::from(config.authorization_servers.clone()),
            );
        }
        if !config.scopes_supported.is_empty() {
            document.insert(
                "scopes_supported".to_owned(),
                Value::from(config.scopes_supported.clone()),
            );
        }
        document.insert(
            "bearer_methods_supported".to_owned(),
            Value::from(config.bearer_methods_supported.clone()),
        );
        if let Some(name) = &config.resource_name {
            document.insert("resource_name".to_owned(), Value::from(name.clone()));
        }

        Ok(Self {
            document: Value::Object(document),
            url,
            paths,
        })
    }

    /// Returns the JSON document to serve with `Content-Type: application/json`.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Returns the document's URL, named in `resource_metadata` of every challenge.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the request paths that serve the document: always
    /// `/.well-known/oauth-protected-resource`, and for a resource with a path such as
    /// `/mcp` also the path-suffixed `/.well-known/oauth-protected-resource/mcp`.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(resource: &str) -> ResourceMetadataConfig {
        ResourceMetadataConfig {
            resource: resource.to_owned(),
            authorization_servers: vec!["https://idp.example.com".to_owned()],
            scopes_supported: vec!["mcp:read".to_owned()],
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            metadata_url: None,
        }
    }

    #[test]
    fn path_resource_gets_suffixed_url() {
        let metadata =
            ResourceMetadata::from_config(&config("https://mcp.example.com/mcp")).unwrap();
        assert_eq!(
            metadata.url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata.paths(),
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp"
            ]
        );
        let document = metadata.document();
        assert_eq!(document["resource"], "https://mcp.example.com/mcp");
        assert_eq!(
            document["authorization_servers"][0],
            "https://idp.example.com"
        );
        assert_eq!(document["scopes_supported"][0], "mcp:read");
        assert_eq!(document["bearer_methods_supported"][0], "header");
    }

    #[test]
    fn origin_resource_gets_plain_url() {
        let metadata = ResourceMetadata::from_config(&config("https://mcp.example.com/")).unwrap();
        assert_eq!(
            metadata.url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(metadata.paths(), ["/.well-known/oauth-protected-resource"]);
    }
}
