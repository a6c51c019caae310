//! Multi-tier GCRA rate limiting for MCP traffic.
