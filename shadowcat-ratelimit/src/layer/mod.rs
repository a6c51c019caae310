//! The pre-authentication per-IP tower layer.
//!
//! It runs before authentication, so a flood from one address is rejected before any JWT
//! is parsed or any key is looked up. It reads the client address from the [`ClientIp`]
//! request extension, which the proxy inserts after resolving trusted proxies, and
//! checks [`MultiTierLimiter::check_pre_auth`]. Requests that then fail authentication
//! should be reported with [`MultiTierLimiter::record_auth_failure`], which this layer
//! also enforces.

mod service;

pub use service::PreAuthService;

use std::net::IpAddr;
use std::sync::Arc;

use tower::Layer;

use crate::clock::{Clock, DefaultClock};
use crate::decision::Limited;
use crate::limiter::MultiTierLimiter;
use crate::response::RejectionRenderer;
use crate::store::{InMemoryStore, KeyedStore};

/// The client address of a request, as a request extension.
///
/// The proxy inserts it once the address is resolved. Requests without it pass the
/// pre-authentication layer unchecked, and a warning is logged for the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// A response extension on rejections made by the pre-authentication layer, so an outer
/// layer can audit them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAuthRejection(pub Limited);

/// Wraps a service with the pre-authentication per-IP check.
pub struct PreAuthLayer<C: Clock = DefaultClock, S: KeyedStore = InMemoryStore> {
    limiter: Arc<MultiTierLimiter<C, S>>,
    renderer: Arc<RejectionRenderer>,
}

impl<C: Clock, S: KeyedStore> PreAuthLayer<C, S> {
    /// Builds the layer on a shared limiter and the renderer for its rejections.
    pub fn new(limiter: Arc<MultiTierLimiter<C, S>>, renderer: Arc<RejectionRenderer>) -> Self {
        Self { limiter, renderer }
    }
}

impl<C: Clock, S: KeyedStore> Clone for PreAuthLayer<C, S> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            renderer: Arc::clone(&self.renderer),
        }
    }
}

impl<Inner, C: Clock, S: KeyedStore> Layer<Inner> for PreAuthLayer<C, S> {
    type Service = PreAuthService<Inner, C, S>;

    fn layer(&self, inner: Inner) -> Self::Service {
        PreAuthService::new(inner, Arc::clone(&self.limiter), Arc::clone(&self.renderer))
    }
}
