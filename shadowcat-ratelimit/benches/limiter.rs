//! Limiter cost per check, against a raw governor check in the same run, and memory per
//! tracked key.
//!
//! Run with `cargo bench -p shadowcat-ratelimit -- --warm-up-time 1 --measurement-time 3`.
//!
//! Memory is measured without a counting allocator, because `#[global_allocator]` needs
//! `unsafe impl GlobalAlloc` and the workspace forbids unsafe code. Instead the bench
//! reads the process's resident set (`VmRSS` in `/proc/self/status`, Linux only) before
//! and after one million keys are tracked, and divides the growth by the key count. The
//! figure includes the map's spare capacity and allocator overhead, so it is an upper
//! estimate of the store's own size. When `SHADOWCAT_BENCH_METRICS_DIR` is set, the
//! figure is also written to `limiter.json` there, as `cargo xtask bench` expects.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use criterion::Criterion;
use governor::clock::QuantaClock;
use governor::{Quota, RateLimiter as GovernorLimiter};
use serde_json::json;
use shadowcat_core::{AuthMethod, CallContext, JsonRpcBody, Principal, RequestId, SessionId};
use shadowcat_ratelimit::{MultiTierLimiter, RateLimitConfig, RateLimiter, Tier};

/// Live keys per tier in the full-check bench.
const LIVE_KEYS: u32 = 100_000;
/// Keys the timed checks cycle through, spread evenly over the live keys.
const ACTIVE_KEYS: u32 = 4_000;
/// Keys tracked for the memory estimate.
const MEMORY_KEYS: u32 = 1_000_000;

/// Builds a quota no bench loop can exhaust, so every check takes the allowed path.
fn roomy() -> serde_json::Value {
    json!({"requests": 4_000_000_000u32, "per": "1s", "burst": 4_000_000_000u32})
}

fn seven_tier_config() -> RateLimitConfig {
    let tier = roomy();
    serde_json::from_value(json!({
        "max_keys_per_tier": 1_000_000,
        "tiers": {
            "global": tier, "ip": tier, "subject": tier, "session": tier,
            "route": tier, "mcp_method": tier, "tool": tier,
        },
    }))
    .unwrap()
}

fn ip(index: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index))
}

/// Builds a `tools/call` from client `index`, with its own subject, session, route and
/// tool.
fn context(index: u32) -> CallContext {
    let body = json!({
        "jsonrpc": "2.0", "id": index, "method": "tools/call",
        "params": {"name": format!("tool-{index}")}
    })
    .to_string();
    let parsed = JsonRpcBody::parse(body.as_bytes()).unwrap();
    let mut ctx = CallContext::new(
        RequestId::next(),
        ip(index),
        "POST",
        Arc::from(format!("/mcp/{index}")),
    );
    ctx.principal = Some(Arc::new(Principal {
        subject: format!("subject-{index}"),
        issuer: None,
        client_id: None,
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    }));
    ctx.session_id = Some(SessionId::mint());
    ctx.messages = Arc::from(parsed.messages().to_vec());
    ctx
}

fn bench_checks(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("check");

    // The reference: governor's own keyed check on one hot key.
    let quota = Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX);
    let raw = GovernorLimiter::dashmap_with_clock(quota, QuantaClock::default());
    group.bench_function("governor_single_key", |bench| {
        bench.iter(|| raw.check_key(black_box(&7u64)))
    });

    // Seven governor keyed limiters with 100k keys each, one check per limiter: the work
    // a seven-tier check cannot avoid, without all-or-nothing or string keys.
    let raw_tiers: Vec<_> = (0..7)
        .map(|_| GovernorLimiter::dashmap_with_clock(quota, QuantaClock::default()))
        .collect();
    for tier in &raw_tiers {
        for key in 0..u64::from(LIVE_KEYS) {
            let _ = tier.check_key(&key);
        }
    }
    group.bench_function("governor_seven_limiters_hot_key", |bench| {
        bench.iter(|| {
            for tier in &raw_tiers {
                let _ = black_box(tier.check_key(black_box(&7u64)));
            }
        })
    });
    let mut raw_next = 0u64;
    group.bench_function("governor_seven_limiters_100k_keys", |bench| {
        bench.iter(|| {
            raw_next = (raw_next + 7919) % u64::from(ACTIVE_KEYS);
            let key = raw_next * u64::from(LIVE_KEYS / ACTIVE_KEYS);
            for tier in &raw_tiers {
                let _ = black_box(tier.check_key(black_box(&key)));
            }
        })
    });

    // The full check: every tier tracks 100k live keys. Requests come from an active set
    // spread across them, like the hot subset of known clients a proxy serves at a time.
    let limiter = MultiTierLimiter::new(&seven_tier_config()).unwrap();
    for index in 0..LIVE_KEYS {
        assert!(limiter.check_request(&context(index)).is_allowed());
    }
    let tracked = limiter.snapshot().tier(Tier::Tool).unwrap().tracked_keys;
    assert_eq!(tracked, LIVE_KEYS as usize);
    let contexts: Vec<CallContext> = (0..ACTIVE_KEYS)
        .map(|index| context(index * (LIVE_KEYS / ACTIVE_KEYS)))
        .collect();
    let costs: Vec<_> = contexts.iter().map(|ctx| limiter.cost(ctx)).collect();

    group.bench_function("seven_tiers_hot_key_check", |bench| {
        bench.iter(|| limiter.check(black_box(&contexts[7]), black_box(&costs[7])))
    });
    let mut next = 0usize;
    group.bench_function("seven_tiers_100k_keys_check", |bench| {
        bench.iter(|| {
            next = (next + 7919) % contexts.len();
            limiter.check(black_box(&contexts[next]), black_box(&costs[next]))
        })
    });
    group.bench_function("seven_tiers_100k_keys_cost_and_check", |bench| {
        bench.iter(|| {
            next = (next + 7919) % contexts.len();
            limiter.check_request(black_box(&contexts[next]))
        })
    });
    group.finish();
}

/// Reads the resident set size in bytes from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn report_memory_per_key() {
    let config: RateLimitConfig = serde_json::from_value(json!({
        "max_keys_per_tier": 2_000_000,
        "tiers": {"ip": roomy()},
    }))
    .unwrap();
    let limiter = MultiTierLimiter::new(&config).unwrap();
    let ctx_for =
        |index: u32| CallContext::new(RequestId::next(), ip(index), "GET", Arc::from("/mcp"));

    let Some(before) = resident_bytes() else {
        println!("memory per tracked key: skipped, /proc/self/status is not readable");
        return;
    };
    for index in 0..MEMORY_KEYS {
        black_box(limiter.check_request(&ctx_for(index)));
    }
    let after = resident_bytes().unwrap_or(before);
    let tracked = limiter.snapshot().tier(Tier::Ip).unwrap().tracked_keys;
    let per_key = after.saturating_sub(before) as f64 / tracked as f64;
    println!(
        "memory per tracked key: {per_key:.1} bytes (RSS growth {} KiB for {tracked} keys)",
        after.saturating_sub(before) / 1024
    );
    drop(limiter);
    write_metric_file(per_key, tracked);
}

/// Writes `limiter.json` for `cargo xtask bench` when it sets the metrics directory.
fn write_metric_file(bytes_per_key: f64, keys: usize) {
    let Some(dir) = std::env::var_os("SHADOWCAT_BENCH_METRICS_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join("limiter.json");
    let metrics = json!({ "bytes_per_key": bytes_per_key, "keys": keys });
    if let Err(error) = std::fs::write(&path, metrics.to_string()) {
        eprintln!("failed to write {}: {error}", path.display());
    }
}

fn main() {
    report_memory_per_key();
    let mut criterion = Criterion::default().configure_from_args();
    bench_checks(&mut criterion);
    criterion.final_summary();
}
