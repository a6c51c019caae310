//! The service built by [`PreAuthLayer`](super::PreAuthLayer).

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::USER_AGENT;
use http::{Request, Response};
use tower::Service;
use tower::util::Either;
use tower::util::future::EitherResponseFuture;

use super::{ClientIp, PreAuthRejection};
use crate::clock::{Clock, DefaultClock};
use crate::decision::Decision;
use crate::limiter::MultiTierLimiter;
use crate::response::RejectionRenderer;
use crate::store::{InMemoryStore, KeyedStore};

/// Set once the first request without a [`ClientIp`] extension has been logged.
static MISSING_CLIENT_IP_LOGGED: AtomicBool = AtomicBool::new(false);

/// Checks each request's client address before passing it on.
pub struct PreAuthService<Inner, C: Clock = DefaultClock, S: KeyedStore = InMemoryStore> {
    inner: Inner,
    limiter: Arc<MultiTierLimiter<C, S>>,
    renderer: Arc<RejectionRenderer>,
}

impl<Inner, C: Clock, S: KeyedStore> PreAuthService<Inner, C, S> {
    pub(super) fn new(
        inner: Inner,
        limiter: Arc<MultiTierLimiter<C, S>>,
        renderer: Arc<RejectionRenderer>,
    ) -> Self {
        Self {
            inner,
            limiter,
            renderer,
        }
    }
}

impl<Inner: Clone, C: Clock, S: KeyedStore> Clone for PreAuthService<Inner, C, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            renderer: Arc::clone(&self.renderer),
        }
    }
}

impl<Inner, C, S, ReqBody, ResBody> Service<Request<ReqBody>> for PreAuthService<Inner, C, S>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Clock,
    S: KeyedStore,
    ResBody: From<Vec<u8>>,
{
    type Response = Response<ResBody>;
    type Error = Inner::Error;
    type Future = EitherResponseFuture<Inner::Future, Rejected<ResBody, Inner::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(ClientIp(client_ip)) = request.extensions().get::<ClientIp>().copied() else {
            if !MISSING_CLIENT_IP_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!("request has no ClientIp extension; pre-auth limit not applied");
            }
            return pass(&mut self.inner, request);
        };

        let limited = match self.limiter.check_pre_auth(client_ip) {
            Decision::Limited(limited) => limited,
            // A pre-auth charge costs 1, which every burst admits, so only Allowed is left.
            Decision::Allowed(_) | Decision::CostTooHigh(_) => {
                return pass(&mut self.inner, request);
            }
        };

        let user_agent = request
            .headers()
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok());
        let response = self.renderer.limited(&limited, &[], false, user_agent);
        let (mut parts, body) = response.into_parts();
        parts.extensions.insert(PreAuthRejection(limited));
        let response = Response::from_parts(parts, ResBody::from(body));

        let reject = Reject {
            response: Some(response),
            error: PhantomData,
        };
        Either::<&mut Inner, _>::Right(reject).call(request)
    }
}

/// The future of a prepared rejection.
type Rejected<ResBody, Error> = Ready<Result<Response<ResBody>, Error>>;

/// Forwards `request` to the inner service.
fn pass<Inner, ReqBody, ResBody>(
    inner: &mut Inner,
    request: Request<ReqBody>,
) -> EitherResponseFuture<Inner::Future, Rejected<ResBody, Inner::Error>>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Vec<u8>>,
{
    Either::<&mut Inner, Reject<ResBody, Inner::Error>>::Left(inner).call(request)
}

/// A one-shot service that returns a prepared response.
struct Reject<ResBody, Error> {
    response: Option<Response<ResBody>>,
    error: PhantomData<fn() -> Error>,
}

impl<ReqBody, ResBody, Error> Service<Request<ReqBody>> for Reject<ResBody, Error>
where
    ResBody: From<Vec<u8>>,
{
    type Response = Response<ResBody>;
    type Error = Error;
    type Future = Rejected<ResBody, Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<ReqBody>) -> Self::Future {
        // `call` runs once per `Reject`; the fallback only keeps it total.
        let response = self
            .response
            .take()
            .unwrap_or_else(|| Response::new(ResBody::from(Vec::new())));
        ready(Ok(response))
    }
}
