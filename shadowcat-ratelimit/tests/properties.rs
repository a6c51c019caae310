//! Property tests of the limiter math on a fake clock.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use shadowcat_core::CallContext;
use shadowcat_ratelimit::{Decision, RateLimiter};

/// One step: advance the clock, then check a call from client `client` to tool `tool`
/// that is repeated `repeat` times in one batch.
#[derive(Debug, Clone)]
struct Step {
    advance_ms: u64,
    client: u8,
    tool: u8,
    repeat: u8,
}

fn steps(max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    let step =
        (0u64..1_500, 0u8..3, 0u8..2, 1u8..4).prop_map(|(advance_ms, client, tool, repeat)| Step {
            advance_ms,
            client,
            tool,
            repeat,
        });
    proptest::collection::vec(step, 1..max_len)
}

fn step_ctx(step: &Step) -> CallContext {
    let calls: Vec<String> = (0..step.repeat)
        .map(|i| tool_call(u64::from(i), &format!("tool-{}", step.tool)))
        .collect();
    ctx(&format!("192.0.2.{}", step.client + 1), &batch(&calls))
}

fn multi_tier_config() -> serde_json::Value {
    json!({"tiers": {
        "ip": quota(120, "1m", 4),
        "tool": quota(60, "1m", 3),
        "global": quota(600, "1m", 8),
    }})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Over any run, a key is never granted more than `burst + elapsed / interval` units.
    #[test]
    fn admitted_never_exceeds_burst_plus_refill(
        steps in steps(60),
        requests in 1u32..120,
        burst in 1u32..6,
    ) {
        let (limiter, clock) = limiter(json!({"tiers": {"ip": quota(requests, "1m", burst)}}));
        let interval_nanos = 60_000_000_000u128 / u128::from(requests);
        let mut elapsed = 0u128;
        let mut admitted: HashMap<u8, u128> = HashMap::new();

        for step in &steps {
            clock.advance(Duration::from_millis(step.advance_ms));
            elapsed += u128::from(step.advance_ms) * 1_000_000;
            let ctx = step_ctx(step);
            let cost = limiter.cost(&ctx);
            if limiter.check(&ctx, &cost).is_allowed() {
                *admitted.entry(step.client).or_default() += u128::from(cost.traffic());
            }
            let used = admitted.get(&step.client).copied().unwrap_or_default();
            let bound = u128::from(burst) + elapsed / interval_nanos;
            prop_assert!(used <= bound, "client {} used {used} > bound {bound}", step.client);
        }
    }

    /// A rejected check leaves no trace: a limiter that never saw the rejected checks
    /// decides every later check the same way.
    #[test]
    fn rejected_check_changes_no_state(steps in steps(60)) {
        let (all, all_clock) = limiter(multi_tier_config());
        let (allowed_only, allowed_clock) = limiter(multi_tier_config());

        for step in &steps {
            all_clock.advance(Duration::from_millis(step.advance_ms));
            allowed_clock.advance(Duration::from_millis(step.advance_ms));
            let ctx = step_ctx(step);

            // Only the checks `all` allowed reach `allowed_only`.
            if let Decision::Allowed(expected) = all.check_request(&ctx) {
                let Decision::Allowed(actual) = allowed_only.check_request(&ctx) else {
                    return Err(TestCaseError::fail(format!("{step:?} allowed by one limiter only")));
                };
                prop_assert_eq!(expected.tightest, actual.tightest);
            }
        }

        // Both limiters hold the same budget for every client and tool.
        for client in 0..3 {
            for tool in 0..2 {
                let probe = Step { advance_ms: 0, client, tool, repeat: 1 };
                let ctx = step_ctx(&probe);
                for _ in 0..10 {
                    prop_assert_eq!(
                        all.check_request(&ctx).is_allowed(),
                        allowed_only.check_request(&ctx).is_allowed(),
                        "client {} tool {}", client, tool
                    );
                }
            }
        }
    }

    /// Traffic from other clients never changes what one client is allowed.
    #[test]
    fn independent_keys_never_interfere(steps in steps(60)) {
        let section = json!({"tiers": {"ip": quota(120, "1m", 3)}});
        let (shared, shared_clock) = limiter(section.clone());
        let (alone, alone_clock) = limiter(section);

        for step in &steps {
            shared_clock.advance(Duration::from_millis(step.advance_ms));
            alone_clock.advance(Duration::from_millis(step.advance_ms));
            let ctx = step_ctx(step);
            let in_shared = shared.check_request(&ctx);
            if step.client == 0 {
                let in_alone = alone.check_request(&ctx);
                prop_assert_eq!(in_shared.is_allowed(), in_alone.is_allowed());
                if let (Decision::Limited(a), Decision::Limited(b)) = (&in_shared, &in_alone) {
                    prop_assert_eq!(a.retry_after, b.retry_after);
                }
            }
        }
    }
}
