//! Cost of the proxy's first look at a modern `tools/call`: parsing the JSON-RPC body
//! once and validating the mirrored MCP headers against it.
//!
//! Ids: `parse/tools_call_parse` (parse only) and
//! `parse/tools_call_parse_and_validate` (parse, era classification and header
//! validation, as the pipeline does for every modern POST).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowcat_core::JsonRpcBody;
use shadowcat_core::mcp::{self, Era, HeaderField};

/// A typical modern `tools/call` body, as the load generator of `cargo xtask bench` sends.
const TOOLS_CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"xtask-bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// Raw values of `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`, as they arrive.
const VERSION: &[u8] = b"2026-07-28";
const METHOD: &[u8] = b"tools/call";
const NAME: &[u8] = b"echo";

fn parse_and_validate(body: &[u8], version: &[u8], method: &[u8], name: &[u8]) -> bool {
    let Ok(parsed) = JsonRpcBody::parse(body) else {
        return false;
    };
    let version = HeaderField::from_values(std::iter::once(version));
    if mcp::classify(version, parsed.messages()) != Era::Modern {
        return false;
    }
    let [message] = parsed.messages() else {
        return false;
    };
    mcp::validate_modern(
        version,
        HeaderField::from_values(std::iter::once(method)),
        HeaderField::from_values(std::iter::once(name)),
        message,
    )
    .is_ok()
}

fn bench_parse(c: &mut Criterion) {
    // A bench that measures a rejected request would report a misleading number.
    assert!(parse_and_validate(TOOLS_CALL, VERSION, METHOD, NAME));

    let mut group = c.benchmark_group("parse");
    group.bench_function("tools_call_parse", |b| {
        b.iter(|| JsonRpcBody::parse(black_box(TOOLS_CALL)))
    });
    group.bench_function("tools_call_parse_and_validate", |b| {
        b.iter(|| {
            parse_and_validate(
                black_box(TOOLS_CALL),
                black_box(VERSION),
                black_box(METHOD),
                black_box(NAME),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
