//! The Shadowcat reverse proxy for the Model Context Protocol.
//!
//! The `shadowcat` binary is a thin command line over this library: [`config`] reads
//! `shadowcat.toml`, [`server::Proxy`] binds and serves, and [`pipeline`] contains the
//! request stages of the MCP endpoint.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod example_server;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod server;
pub mod session;
pub mod upstream;
