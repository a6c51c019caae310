//! Rejections shaped so an MCP client can act on them: an HTTP status and a JSON-RPC
//! error that carries the request's id.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use shadowcat_audit::RejectReason;
use shadowcat_core::{JsonRpcBody, JsonRpcId, MessageKind, error_response};

use super::audit;

/// Builds a rejection with a JSON-RPC error body for one message id, tagged with its
/// audit reason.
pub fn single(
    reason: RejectReason,
    status: StatusCode,
    id: Option<&JsonRpcId>,
    code: i32,
    message: &str,
    data: Option<Value>,
) -> Response {
    audit::rejected(error(status, id, code, message, data), reason)
}

/// Builds a rejection for a whole parsed body, tagged with its audit reason. See
/// [`errors_for_body`] for its shape.
pub fn for_body(
    reason: RejectReason,
    status: StatusCode,
    body: &JsonRpcBody,
    code: i32,
    message: &str,
    data: Option<Value>,
) -> Response {
    audit::rejected(errors_for_body(status, body, code, message, data), reason)
}

/// Builds an error response with a JSON-RPC error body for one message id.
pub fn error(
    status: StatusCode,
    id: Option<&JsonRpcId>,
    code: i32,
    message: &str,
    data: Option<Value>,
) -> Response {
    json_response(status, &error_response(id, code, message, data))
}

/// Builds an error response for a whole parsed body.
///
/// A single request gets one error with its id, and a batch gets an array with one
/// error per request. A body of notifications and responses alone gets an empty body,
/// because nothing in it expects a response.
pub fn errors_for_body(
    status: StatusCode,
    body: &JsonRpcBody,
    code: i32,
    message: &str,
    data: Option<Value>,
) -> Response {
    let errors: Vec<Value> = body
        .messages()
        .iter()
        .filter(|message| message.kind == MessageKind::Request)
        .map(|request| error_response(request.id.as_ref(), code, message, data.clone()))
        .collect();
    if errors.is_empty() {
        return empty(status);
    }
    if body.is_batch() {
        json_response(status, &Value::Array(errors))
    } else {
        let error = errors.into_iter().next().expect("errors is not empty");
        json_response(status, &error)
    }
}

/// Builds a response with no body.
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Builds a JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).expect("a JSON value always serializes");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn batch_gets_one_error_per_request() {
        let body = JsonRpcBody::parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"x","method":"b"}]"#,
        )
        .unwrap();
        let response = errors_for_body(StatusCode::NOT_FOUND, &body, -32001, "gone", None);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let json = body_json(response).await;
        assert_eq!(json[0]["id"], 1);
        assert_eq!(json[1]["id"], "x");
        assert_eq!(json.as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn notification_gets_empty_body() {
        let body = JsonRpcBody::parse(br#"{"jsonrpc":"2.0","method":"n"}"#).unwrap();
        let response = errors_for_body(StatusCode::TOO_MANY_REQUESTS, &body, -32000, "x", None);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.is_empty());
    }
}
