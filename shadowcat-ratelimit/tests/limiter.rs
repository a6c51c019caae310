//! Behaviour of `MultiTierLimiter` through its public API, on a fake clock.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use http::HeaderMap;
use serde_json::json;
use shadowcat_core::{Principal, SessionId};
use shadowcat_ratelimit::{
    Decision, LimitKey, LimitReason, Limited, RATELIMIT, RATELIMIT_POLICY, RateLimiter, SlotKind,
    Tier, apply_rate_limit_headers,
};

fn expect_limited(decision: Decision) -> Limited {
    match decision {
        Decision::Limited(limited) => limited,
        other => panic!("expected Limited, got {other:?}"),
    }
}

fn allowed_count(limiter: &TestLimiter, ctx: &shadowcat_core::CallContext, max: u32) -> u32 {
    let cost = limiter.cost(ctx);
    let mut count = 0;
    while count < max && limiter.check(ctx, &cost).is_allowed() {
        count += 1;
    }
    count
}

#[test]
fn binding_tier_is_the_one_that_rejects() {
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1m", 10),
        "tool": quota(60, "1m", 2),
    }}));
    let ctx = ctx("192.0.2.1", &tool_call(1, "search"));
    assert_eq!(allowed_count(&limiter, &ctx, 10), 2);

    let limited = expect_limited(limiter.check_request(&ctx));
    assert_eq!(limited.tier, Tier::Tool);
    assert_eq!(
        limited.key,
        LimitKey::Target {
            method: "tools/call".into(),
            name: "search".into()
        }
    );
    assert_eq!(limited.reason, LimitReason::Rate);
    assert_eq!(limited.retry_after, Duration::from_secs(1));
}

#[test]
fn binding_tier_has_the_longest_wait() {
    // Both tiers are empty after one call. The subject tier refills in 60 s and the ip
    // tier in 1 s, so the subject tier binds, and its wait is long enough for both.
    let (limiter, clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1m", 1),
        "subject": quota(1, "1m", 1),
    }}));
    let ctx = with_subject(ctx("192.0.2.1", &request(1, "tools/list")), "alice");
    assert!(limiter.check_request(&ctx).is_allowed());

    let limited = expect_limited(limiter.check_request(&ctx));
    assert_eq!(limited.tier, Tier::Subject);
    assert_eq!(limited.retry_after, Duration::from_secs(60));
    assert!(matches!(limited.key, LimitKey::Subject { .. }));

    clock.advance(limited.retry_after);
    assert!(limiter.check_request(&ctx).is_allowed());
}

#[test]
fn allowed_reports_tightest_tier() {
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(100, "1m", 20),
        "tool": quota(30, "1m", 5),
    }}));
    let ctx = ctx("192.0.2.1", &tool_call(1, "search"));
    let Decision::Allowed(allowed) = limiter.check_request(&ctx) else {
        panic!("first call is allowed");
    };
    let tightest = allowed.tightest.unwrap();
    assert_eq!(tightest.tier, Tier::Tool);
    assert_eq!(tightest.remaining, 4);
    assert_eq!(tightest.reset, Duration::from_secs(2));

    let mut headers = HeaderMap::new();
    apply_rate_limit_headers(&mut headers, &allowed);
    assert_eq!(headers[RATELIMIT_POLICY], "\"tool\";q=30;w=60");
    assert_eq!(headers[RATELIMIT], "\"tool\";r=4;t=2");
}

#[test]
fn batch_charges_each_target_its_sum() {
    let (limiter, _clock) = limiter(json!({"tiers": {"tool": quota(60, "1m", 3)}}));
    let body = batch(&[
        tool_call(1, "a"),
        tool_call(2, "a"),
        tool_call(3, "b"),
        tool_call(4, "a"),
        tool_call(5, "b"),
    ]);
    let batch_ctx = ctx("192.0.2.1", &body);
    let cost = limiter.cost(&batch_ctx);
    assert_eq!(cost.calls(), 5);
    assert_eq!(cost.traffic(), 5);
    assert_eq!(cost.target_costs().collect::<Vec<_>>(), vec![3, 2]);
    assert!(limiter.check(&batch_ctx, &cost).is_allowed());

    // Tool a has used its burst of 3; tool b has 1 left.
    let a = ctx("192.0.2.1", &tool_call(6, "a"));
    let b = ctx("192.0.2.1", &tool_call(7, "b"));
    assert_eq!(expect_limited(limiter.check_request(&a)).tier, Tier::Tool);
    assert_eq!(allowed_count(&limiter, &b, 5), 1);
}

#[test]
fn batch_costs_sum_on_subject_tier() {
    let (limiter, _clock) = limiter(json!({"tiers": {"subject": quota(60, "1m", 4)}}));
    let body = batch(&[
        request(1, "tools/list"),
        request(2, "prompts/list"),
        request(3, "ping"),
    ]);
    let batch_ctx = with_subject(ctx("192.0.2.1", &body), "alice");
    assert!(limiter.check_request(&batch_ctx).is_allowed());
    let single = with_subject(ctx("192.0.2.1", &request(4, "ping")), "alice");
    assert_eq!(allowed_count(&limiter, &single, 5), 1);
}

#[test]
fn notifications_cost_only_ip_and_global() {
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1m", 3),
        "global": quota(60, "1m", 100),
        "subject": quota(60, "1m", 1),
        "mcp_method": quota(60, "1m", 1),
    }}));
    let body = batch(&[
        notification("notifications/initialized"),
        notification("notifications/progress"),
    ]);
    let notes = with_subject(ctx("192.0.2.1", &body), "alice");
    let cost = limiter.cost(&notes);
    assert_eq!(cost.traffic(), 2);
    assert_eq!(cost.calls(), 0);
    assert_eq!(cost.method_costs().count(), 0);
    assert!(limiter.check(&notes, &cost).is_allowed());

    // The subject and method tiers are untouched: a request still passes them.
    let call = with_subject(ctx("192.0.2.1", &request(1, "tools/list")), "alice");
    assert!(limiter.check_request(&call).is_allowed());

    // The ip tier counted all three messages.
    let one_note = with_subject(
        ctx("192.0.2.1", &notification("notifications/progress")),
        "alice",
    );
    assert_eq!(
        expect_limited(limiter.check_request(&one_note)).tier,
        Tier::Ip
    );
}

#[test]
fn request_without_body_costs_one() {
    let (limiter, _clock) = limiter(json!({"tiers": {"route": quota(60, "1m", 2)}}));
    let get = ctx("192.0.2.1", "");
    let cost = limiter.cost(&get);
    assert_eq!((cost.traffic(), cost.calls()), (1, 1));
    assert_eq!(allowed_count(&limiter, &get, 5), 2);
    let limited = expect_limited(limiter.check_request(&get));
    assert_eq!(
        limited.key,
        LimitKey::Route {
            method: "POST",
            path: "/mcp".into()
        }
    );
}

#[test]
fn ipv6_clients_share_their_prefix() {
    let (limiter, _clock) = limiter(json!({"tiers": {"ip": quota(60, "1m", 1)}}));
    let first = ctx("2001:db8:1:2::1", &request(1, "ping"));
    let same_64 = ctx("2001:db8:1:2:aaaa::9", &request(1, "ping"));
    let other_64 = ctx("2001:db8:1:3::1", &request(1, "ping"));
    assert!(limiter.check_request(&first).is_allowed());
    let limited = expect_limited(limiter.check_request(&same_64));
    match limited.key {
        LimitKey::Ip { net, .. } => assert_eq!(net.to_string(), "2001:db8:1:2::/64"),
        other => panic!("expected an ip key, got {other:?}"),
    }
    assert!(limiter.check_request(&other_64).is_allowed());
}

#[test]
fn ipv6_prefix_is_configurable() {
    let (limiter, _clock) =
        limiter(json!({"ipv6_prefix": 128, "tiers": {"ip": quota(60, "1m", 1)}}));
    assert!(
        limiter
            .check_request(&ctx("2001:db8::1", &request(1, "ping")))
            .is_allowed()
    );
    assert!(
        limiter
            .check_request(&ctx("2001:db8::2", &request(1, "ping")))
            .is_allowed()
    );
}

#[test]
fn mapped_ipv4_shares_the_ipv4_bucket() {
    let (limiter, _clock) = limiter(json!({"tiers": {"ip": quota(60, "1m", 1)}}));
    assert!(
        limiter
            .check_request(&ctx("::ffff:192.0.2.9", &request(1, "ping")))
            .is_allowed()
    );
    let limited = expect_limited(limiter.check_request(&ctx("192.0.2.9", &request(1, "ping"))));
    match limited.key {
        LimitKey::Ip { net, .. } => assert_eq!(net.to_string(), "192.0.2.9/32"),
        other => panic!("expected an ip key, got {other:?}"),
    }
    assert!(
        limiter
            .check_request(&ctx("192.0.2.10", &request(1, "ping")))
            .is_allowed()
    );
}

#[test]
fn subject_overrides_apply_per_subject() {
    let (limiter, _clock) = limiter(json!({"tiers": {"subject": {
        "requests": 60, "per": "1m", "burst": 1,
        "overrides": {"gold-customer": quota(600, "1m", 5)},
    }}}));
    let gold = with_subject(ctx("192.0.2.1", &request(1, "ping")), "gold-customer");
    let basic = with_subject(ctx("192.0.2.2", &request(1, "ping")), "basic-customer");
    assert_eq!(allowed_count(&limiter, &gold, 10), 5);
    assert_eq!(allowed_count(&limiter, &basic, 10), 1);
    let limited = expect_limited(limiter.check_request(&gold));
    assert_eq!(limited.policy.unwrap().burst.get(), 5);
    assert_eq!(limited.retry_after, Duration::from_millis(100));
}

#[test]
fn tool_overrides_apply_per_tool() {
    let (limiter, _clock) = limiter(json!({"tiers": {"tool": {
        "requests": 30, "per": "1m", "burst": 5,
        "overrides": {"expensive_search": quota(5, "1m", 1)},
    }}}));
    let expensive = ctx("192.0.2.1", &tool_call(1, "expensive_search"));
    let cheap = ctx("192.0.2.1", &tool_call(1, "echo"));
    assert_eq!(allowed_count(&limiter, &expensive, 10), 1);
    assert_eq!(allowed_count(&limiter, &cheap, 10), 5);
    let limited = expect_limited(limiter.check_request(&expensive));
    assert_eq!(limited.retry_after, Duration::from_secs(12));
}

#[test]
fn overrides_on_ip_tier_are_rejected() {
    let section = json!({"tiers": {"ip": {
        "requests": 1, "per": "1s", "burst": 1,
        "overrides": {"192.0.2.1": quota(5, "1s", 5)},
    }}});
    let error = shadowcat_ratelimit::MultiTierLimiter::new(&config(section))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("tiers.ip.overrides"), "{error}");
    assert!(error.contains("192.0.2.1"), "{error}");
}

#[test]
fn weights_scale_the_cost() {
    let (limiter, _clock) = limiter(json!({
        "tiers": {"subject": quota(60, "1m", 10)},
        "weights": {"methods": {"tools/list": 2}, "tools": {"expensive_search": 4}},
    }));
    let list = with_subject(ctx("192.0.2.1", &request(1, "tools/list")), "alice");
    let search = with_subject(ctx("192.0.2.1", &tool_call(2, "expensive_search")), "alice");
    let echo = with_subject(ctx("192.0.2.1", &tool_call(3, "echo")), "alice");
    assert_eq!(limiter.cost(&list).calls(), 2);
    assert_eq!(limiter.cost(&search).calls(), 4);
    assert_eq!(limiter.cost(&echo).calls(), 1);
    // 10 = 4 + 4 + 2; nothing is left for another list.
    assert!(limiter.check_request(&search).is_allowed());
    assert!(limiter.check_request(&search).is_allowed());
    assert!(limiter.check_request(&list).is_allowed());
    assert!(!limiter.check_request(&echo).is_allowed());
}

#[test]
fn cost_above_burst_is_permanent() {
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1m", 10),
        "tool": quota(60, "1m", 2),
    }}));
    let body = batch(&[tool_call(1, "a"), tool_call(2, "a"), tool_call(3, "a")]);
    let too_big = ctx("192.0.2.1", &body);
    match limiter.check_request(&too_big) {
        Decision::CostTooHigh(rejection) => {
            assert_eq!(rejection.tier, Tier::Tool);
            assert_eq!(rejection.cost, 3);
            assert_eq!(rejection.policy.burst.get(), 2);
        }
        other => panic!("expected CostTooHigh, got {other:?}"),
    }
    // Nothing was charged: the ip tier still has its whole burst of 10.
    let ping = ctx("192.0.2.1", &request(9, "ping"));
    assert_eq!(allowed_count(&limiter, &ping, 20), 10);
    let metrics = limiter.snapshot();
    assert_eq!(metrics.tier(Tier::Tool).unwrap().cost_too_high, 1);
}

#[test]
fn rejection_charges_no_other_tier() {
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1m", 5),
        "global": quota(60, "1m", 5),
        "tool": quota(60, "1m", 1),
    }}));
    let call = ctx("192.0.2.1", &tool_call(1, "a"));
    assert!(limiter.check_request(&call).is_allowed());
    for _ in 0..20 {
        assert_eq!(
            expect_limited(limiter.check_request(&call)).tier,
            Tier::Tool
        );
    }
    // ip and global were charged once, so 4 more requests pass both.
    let ping = ctx("192.0.2.1", &request(2, "ping"));
    assert_eq!(allowed_count(&limiter, &ping, 10), 4);
}

#[test]
fn retry_after_is_honest() {
    // One request every 6 s, so waits are not whole seconds after partial refills.
    let (limiter, clock) = limiter(json!({"tiers": {"ip": quota(10, "1m", 2)}}));
    let call = ctx("192.0.2.1", &request(1, "ping"));
    assert_eq!(allowed_count(&limiter, &call, 5), 2);
    clock.advance(Duration::from_millis(2_500));

    let limited = expect_limited(limiter.check_request(&call));
    assert_eq!(limited.retry_after, Duration::from_millis(3_500));
    assert_eq!(limited.retry_after_secs(), 4);

    clock.advance(Duration::from_secs(3));
    assert!(
        !limiter.check_request(&call).is_allowed(),
        "3 s is too early"
    );
    clock.advance(Duration::from_secs(1));
    assert!(limiter.check_request(&call).is_allowed(), "4 s is enough");
}

#[test]
fn retry_after_covers_weighted_cost() {
    let (limiter, clock) = limiter(json!({
        "tiers": {"subject": quota(60, "1m", 5)},
        "weights": {"tools": {"heavy": 3}},
    }));
    let heavy = with_subject(ctx("192.0.2.1", &tool_call(1, "heavy")), "alice");
    assert!(limiter.check_request(&heavy).is_allowed());
    let limited = expect_limited(limiter.check_request(&heavy));
    assert_eq!(limited.retry_after, Duration::from_secs(1));
    clock.advance(Duration::from_secs(limited.retry_after_secs()));
    assert!(limiter.check_request(&heavy).is_allowed());
}

#[test]
fn anonymous_callers_skip_subject_tier() {
    let (limiter, _clock) = limiter(json!({"tiers": {"subject": quota(60, "1m", 1)}}));
    let mut anonymous = ctx("192.0.2.1", &request(1, "ping"));
    anonymous.principal = Some(std::sync::Arc::new(Principal::anonymous()));
    assert_eq!(allowed_count(&limiter, &anonymous, 5), 5);
}

#[test]
fn sessions_are_limited_separately() {
    let (limiter, _clock) = limiter(json!({"tiers": {"session": quota(60, "1m", 1)}}));
    let first = SessionId::mint();
    let a = with_session(ctx("192.0.2.1", &request(1, "ping")), first);
    let b = with_session(ctx("192.0.2.1", &request(1, "ping")), SessionId::mint());
    assert!(limiter.check_request(&a).is_allowed());
    assert_eq!(
        expect_limited(limiter.check_request(&a)).key,
        LimitKey::Session(first)
    );
    assert!(limiter.check_request(&b).is_allowed());
}

#[test]
fn shared_overflow_bucket_past_key_cap() {
    let (limiter, _clock) = limiter(json!({
        "max_keys_per_tier": 2,
        "tiers": {"ip": quota(60, "1m", 2)},
    }));
    for ip in ["192.0.2.1", "192.0.2.2"] {
        let Decision::Allowed(allowed) = limiter.check_request(&ctx(ip, &request(1, "ping")))
        else {
            panic!("tracked keys are allowed");
        };
        assert_eq!(allowed.overflow, None);
    }

    // New keys now share one bucket with a burst of 2.
    let Decision::Allowed(first) = limiter.check_request(&ctx("192.0.2.3", &request(1, "ping")))
    else {
        panic!("overflow bucket has room");
    };
    let notice = first.overflow.expect("first overflow use carries a notice");
    assert_eq!(notice.tier, Tier::Ip);
    let Decision::Allowed(second) = limiter.check_request(&ctx("192.0.2.4", &request(1, "ping")))
    else {
        panic!("overflow bucket has room");
    };
    assert_eq!(second.overflow, None, "notices are coalesced");

    let limited = expect_limited(limiter.check_request(&ctx("192.0.2.5", &request(1, "ping"))));
    assert_eq!(limited.key, LimitKey::Overflow);

    // Tracked keys keep their own buckets.
    assert!(
        limiter
            .check_request(&ctx("192.0.2.1", &request(1, "ping")))
            .is_allowed()
    );

    let metrics = limiter.snapshot();
    let ip = metrics.tier(Tier::Ip).unwrap();
    assert_eq!(ip.tracked_keys, 2);
    assert_eq!(ip.overflow, 2);
}

#[test]
fn reject_mode_refuses_new_keys_past_cap() {
    let (limiter, _clock) = limiter(json!({
        "max_keys_per_tier": 1,
        "overflow": "reject",
        "evict_interval": "30s",
        "tiers": {"ip": quota(60, "1m", 2)},
    }));
    assert!(
        limiter
            .check_request(&ctx("192.0.2.1", &request(1, "ping")))
            .is_allowed()
    );
    let limited = expect_limited(limiter.check_request(&ctx("192.0.2.2", &request(1, "ping"))));
    assert_eq!(limited.reason, LimitReason::KeyCapacity);
    assert_eq!(limited.retry_after, Duration::from_secs(30));
    assert!(matches!(limited.key, LimitKey::Ip { .. }));
}

#[test]
fn eviction_waits_for_full_buckets() {
    let (limiter, clock) = limiter(json!({"tiers": {"ip": quota(60, "1m", 3)}}));
    let call = ctx("192.0.2.1", &request(1, "ping"));
    assert_eq!(allowed_count(&limiter, &call, 5), 3);

    // Two seconds refill two of three: the key must stay, or eviction would hand out a
    // fresh burst.
    clock.advance(Duration::from_secs(2));
    limiter.evict_idle();
    assert_eq!(limiter.snapshot().tier(Tier::Ip).unwrap().tracked_keys, 1);
    assert_eq!(allowed_count(&limiter, &call, 5), 2);

    // Three seconds after the last charge the bucket is full and the key can go.
    clock.advance(Duration::from_secs(3));
    limiter.evict_idle();
    assert_eq!(limiter.snapshot().tier(Tier::Ip).unwrap().tracked_keys, 0);
    assert_eq!(allowed_count(&limiter, &call, 5), 3);
}

#[test]
fn permits_release_on_drop() {
    let (limiter, _clock) = limiter(json!({"concurrency": {
        "in_flight_total": 3,
        "in_flight_per_subject": 1,
        "streams_per_subject": 1,
    }}));
    let alice = jwt_principal("alice");
    let bob = jwt_principal("bob");
    let held = limiter
        .try_acquire(SlotKind::Request, Some(&alice))
        .unwrap();
    let limited = limiter
        .try_acquire(SlotKind::Request, Some(&alice))
        .unwrap_err();
    assert_eq!(limited.tier, Tier::InFlight);
    assert_eq!(limited.reason, LimitReason::Concurrency);
    assert_eq!(limited.retry_after_secs(), 1);
    assert!(limited.policy.is_none());

    let bob_permit = limiter.try_acquire(SlotKind::Request, Some(&bob)).unwrap();
    let stream = limiter.try_acquire(SlotKind::Stream, Some(&alice)).unwrap();
    assert_eq!(limiter.snapshot().in_flight, 2);
    assert_eq!(limiter.snapshot().streams, 1);

    drop(held);
    assert_eq!(limiter.snapshot().in_flight, 1);
    let again = limiter
        .try_acquire(SlotKind::Request, Some(&alice))
        .unwrap();
    drop((again, bob_permit, stream));
    let metrics = limiter.snapshot();
    assert_eq!((metrics.in_flight, metrics.streams), (0, 0));
    assert_eq!(metrics.tier(Tier::InFlight).unwrap().limited, 1);
}

#[test]
fn total_concurrency_caps_everyone() {
    let (limiter, _clock) = limiter(json!({"concurrency": {"streams_total": 2}}));
    let permits: Vec<_> = (0..2)
        .map(|_| limiter.try_acquire(SlotKind::Stream, None).unwrap())
        .collect();
    let limited = limiter.try_acquire(SlotKind::Stream, None).unwrap_err();
    assert_eq!(limited.tier, Tier::Streams);
    assert_eq!(limited.key, LimitKey::Global);
    drop(permits);
    assert!(limiter.try_acquire(SlotKind::Stream, None).is_ok());
}

#[test]
fn session_creation_has_its_own_budget() {
    let (limiter, clock) = limiter(json!({"sessions": {
        "ip": quota(2, "1m", 2),
        "subject": quota(1, "1m", 1),
    }}));
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let alice = jwt_principal("alice");
    assert!(
        limiter
            .check_session_creation(ip, Some(&alice))
            .is_allowed()
    );
    let limited = expect_limited(limiter.check_session_creation(ip, Some(&alice)));
    assert_eq!(limited.tier, Tier::SessionCreateSubject);

    // The rejected attempt charged nothing: the ip budget still has one session.
    assert!(limiter.check_session_creation(ip, None).is_allowed());
    let limited = expect_limited(limiter.check_session_creation(ip, None));
    assert_eq!(limited.tier, Tier::SessionCreateIp);
    assert_eq!(limited.retry_after, Duration::from_secs(30));

    clock.advance(Duration::from_secs(60));
    assert!(
        limiter
            .check_session_creation(ip, Some(&alice))
            .is_allowed()
    );
}

#[test]
fn auth_failures_block_before_auth() {
    let (limiter, _clock) = limiter(json!({
        "pre_auth": quota(600, "1m", 100),
        "auth_failures": quota(3, "1m", 3),
    }));
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    assert!(limiter.has_pre_auth());
    for _ in 0..3 {
        assert!(limiter.check_pre_auth(ip).is_allowed());
        assert!(limiter.record_auth_failure(ip).is_allowed());
    }
    let limited = expect_limited(limiter.check_pre_auth(ip));
    assert_eq!(limited.tier, Tier::AuthFailure);
    assert_eq!(limited.retry_after, Duration::from_secs(20));
    assert!(
        limiter
            .check_pre_auth("192.0.2.2".parse().unwrap())
            .is_allowed()
    );
}

#[test]
fn repeated_rejections_are_coalesced_for_audit() {
    let (limiter, clock) = limiter(json!({
        "audit_window": "10s",
        "tiers": {"ip": quota(1, "1h", 1)},
    }));
    let call = ctx("192.0.2.1", &request(1, "ping"));
    assert!(limiter.check_request(&call).is_allowed());
    assert_eq!(
        expect_limited(limiter.check_request(&call))
            .audit
            .unwrap()
            .suppressed,
        0
    );
    for _ in 0..5 {
        assert_eq!(expect_limited(limiter.check_request(&call)).audit, None);
    }
    // Another client is audited on its own.
    let other = ctx("192.0.2.2", &request(1, "ping"));
    assert!(limiter.check_request(&other).is_allowed());
    assert!(
        expect_limited(limiter.check_request(&other))
            .audit
            .is_some()
    );

    clock.advance(Duration::from_secs(10));
    let next = expect_limited(limiter.check_request(&call));
    assert_eq!(next.audit.unwrap().suppressed, 5);
    assert_eq!(limiter.snapshot().audit_suppressed, 5);
}

#[test]
fn audit_ids_hide_ip_and_subject() {
    let (limiter, _clock) = limiter(json!({"tiers": {"ip": quota(1, "1h", 1)}}));
    let call = ctx("192.0.2.1", &request(1, "ping"));
    assert!(limiter.check_request(&call).is_allowed());
    let limited = expect_limited(limiter.check_request(&call));
    let text = limited.key.to_string();
    assert!(!text.contains("192.0.2"), "{text}");
    assert_eq!(text, limiter.ip_audit_id("192.0.2.1".parse().unwrap()));
    assert!(limiter.subject_audit_id("alice").starts_with("subject:"));
    assert!(!limiter.subject_audit_id("alice").contains("alice"));
}

#[test]
fn metrics_count_checks_and_limits() {
    let (limiter, _clock) = limiter(json!({"tiers": {"ip": quota(60, "1m", 1)}}));
    let call = ctx("192.0.2.1", &request(1, "ping"));
    limiter.check_request(&call);
    limiter.check_request(&call);
    let metrics = limiter.snapshot();
    assert_eq!(metrics.checks, 2);
    assert_eq!(metrics.allowed, 1);
    assert_eq!(metrics.tier(Tier::Ip).unwrap().limited, 1);
    let mut text = String::new();
    metrics.render_prometheus(&mut text);
    assert!(
        text.contains("shadowcat_ratelimit_limited_total{tier=\"ip\"} 1"),
        "{text}"
    );
}

#[test]
fn contended_checks_use_exact_budget() {
    // Four clients race for a global burst of 100 with 40 each on the ip tier. Every
    // rejection at the global tier refunds an ip charge, so the global budget must end
    // exactly used up, with no client above its own burst.
    let (limiter, _clock) = limiter(json!({"tiers": {
        "ip": quota(60, "1h", 40),
        "global": quota(60, "1h", 100),
    }}));
    let limiter = std::sync::Arc::new(limiter);
    let handles: Vec<_> = (1..=4)
        .map(|client| {
            let limiter = std::sync::Arc::clone(&limiter);
            std::thread::spawn(move || {
                let call = ctx(&format!("192.0.2.{client}"), &request(1, "ping"));
                let cost = limiter.cost(&call);
                (0..1_000)
                    .filter(|_| limiter.check(&call, &cost).is_allowed())
                    .count()
            })
        })
        .collect();
    let admitted: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(admitted.iter().sum::<usize>(), 100, "{admitted:?}");
    for count in &admitted {
        assert!(*count <= 40, "{admitted:?}");
    }
}
