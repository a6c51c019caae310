//! The Shadowcat reverse proxy for the Model Context Protocol.

pub mod example_server;
