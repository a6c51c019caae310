//! Streamable HTTP upstreams, through a pooled hyper client.

use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::sync::Arc;

use super::UpstreamError;
use crate::auth::UpstreamCredential;

/// Request headers that are never copied from the client to the upstream.
///
/// Hop-by-hop headers belong to one connection. `Authorization`, `Cookie` and
/// `Proxy-Authorization` are the client's credentials for the proxy and never leave it.
/// `Host` and `Content-Length` are set for the upstream request itself, and
/// `Mcp-Session-Id` is translated from the proxy's id to the upstream's.
const STRIPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "proxy-authorization",
    "cookie",
    "mcp-session-id",
    "forwarded",
    "x-forwarded-for",
];

/// Response headers that are never copied from the upstream to the client.
const STRIPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "mcp-session-id",
];

/// A pooled client for one Streamable HTTP upstream endpoint.
#[derive(Clone)]
pub struct HttpUpstream {
    client: Client<HttpConnector, Body>,
    uri: Uri,
    extra_headers: HeaderMap,
    credential: Option<Arc<UpstreamCredential>>,
    request_timeout: Duration,
}

impl HttpUpstream {
    /// Builds a client for `uri` with the given timeouts and extra headers, such as a
    /// static upstream credential.
    pub fn new(
        uri: Uri,
        connect_timeout: Duration,
        request_timeout: Duration,
        extra_headers: HeaderMap,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            client,
            uri,
            extra_headers,
            credential: None,
            request_timeout,
        }
    }

    /// Sets the credential presented to the upstream on every request.
    pub fn with_credential(mut self, credential: UpstreamCredential) -> Self {
        self.credential = match credential {
            UpstreamCredential::None => None,
            other => Some(Arc::new(other)),
        };
        self
    }

    /// Returns the upstream endpoint.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Sends a request to the upstream and returns its response with a streaming body.
    ///
    /// `client_headers` are filtered: hop-by-hop headers and client credentials are
    /// dropped, `Mcp-Param-*` and the other MCP headers pass untouched. `session` is the
    /// upstream's own session id, if the request belongs to a legacy session.
    ///
    /// # Errors
    ///
    /// Returns [`UpstreamError::Timeout`] when the response headers do not arrive within
    /// the request timeout, and [`UpstreamError::Unreachable`] for connection failures.
    pub async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut request = Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .body(body)
            .map_err(|error| UpstreamError::Internal(error.to_string()))?;
        let headers = request.headers_mut();
        copy_request_headers(client_headers, headers);
        for (name, value) in &self.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(credential) = &self.credential {
            match credential.authorization().await {
                Ok(Some((name, value))) => {
                    headers.insert(name, value);
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(UpstreamError::Failed(format!(
                        "could not obtain the upstream credential: {error}"
                    )));
                }
            }
        }
        if let Some(session) = session {
            headers.insert(
                HeaderName::from_static(shadowcat_core::mcp::HEADER_SESSION_ID),
                session.clone(),
            );
        }

        let response = tokio::time::timeout(self.request_timeout, self.client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|error| {
                if error.is_connect() {
                    UpstreamError::Unreachable(error.to_string())
                } else {
                    UpstreamError::Failed(error.to_string())
                }
            })?;
        Ok(response.map(Body::new))
    }
}

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !STRIPPED_REQUEST_HEADERS.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Copies an upstream response's headers for the client, dropping hop-by-hop headers,
/// cookies and the upstream's session id, and marking event streams as unbuffered for
/// intermediaries such as nginx.
pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(upstream.len() + 1);
    for (name, value) in upstream {
        if !STRIPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let is_event_stream = upstream
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if is_event_stream {
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_headers_are_stripped() {
        let mut client = HeaderMap::new();
        client.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        client.insert(header::COOKIE, HeaderValue::from_static("sid=1"));
        client.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        client.insert("mcp-param-region", HeaderValue::from_static("eu"));
        client.insert("mcp-method", HeaderValue::from_static("tools/call"));
        let mut upstream = HeaderMap::new();
        copy_request_headers(&client, &mut upstream);
        assert!(upstream.get(header::AUTHORIZATION).is_none());
        assert!(upstream.get(header::COOKIE).is_none());
        assert!(upstream.get(header::CONNECTION).is_none());
        assert_eq!(upstream["mcp-param-region"], "eu");
        assert_eq!(upstream["mcp-method"], "tools/call");
    }

    #[test]
    fn event_streams_are_marked_unbuffered() {
        let mut upstream = HeaderMap::new();
        upstream.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        upstream.insert("mcp-session-id", HeaderValue::from_static("upstream-id"));
        let headers = client_response_headers(&upstream);
        assert_eq!(headers["x-accel-buffering"], "no");
        assert!(headers.get("mcp-session-id").is_none());
    }
}
