//! Tamper-evident, non-blocking security audit trail for MCP traffic.
