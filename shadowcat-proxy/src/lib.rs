//! The Shadowcat reverse proxy for the Model Context Protocol.

pub mod auth;
pub mod example_server;
pub mod policy;
