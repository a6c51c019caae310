//! A million distinct clients stay within the configured key cap.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use serde_json::json;
use shadowcat_ratelimit::{RateLimiter, Tier};

const CLIENTS: u32 = 1_000_000;
const MAX_KEYS: usize = 10_000;

#[test]
fn million_keys_stay_under_cap() {
    let (limiter, _clock) = limiter(json!({
        "max_keys_per_tier": MAX_KEYS,
        "pre_auth": quota(6000, "1m", 100_000),
    }));

    let mut allowed = 0u32;
    for client in 0..CLIENTS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client));
        if limiter.check_pre_auth(ip).is_allowed() {
            allowed += 1;
        }
    }

    let metrics = limiter.snapshot();
    let pre_auth = metrics.tier(Tier::PreAuth).unwrap();
    assert_eq!(pre_auth.tracked_keys, MAX_KEYS);
    // Every key past the cap went to the shared overflow bucket, whose burst of 100000
    // bounds what they got together.
    assert_eq!(pre_auth.overflow, u64::from(allowed) - MAX_KEYS as u64);
    assert_eq!(allowed, MAX_KEYS as u32 + 100_000);
    assert_eq!(pre_auth.limited, u64::from(CLIENTS - allowed));
}
