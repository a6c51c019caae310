//! Circuit breaker and load balancer hot paths.
//!
//! Run with `cargo bench -p shadowcat-proxy --bench breaker`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowcat_proxy::config::Config;
use shadowcat_proxy::upstream::resilience::{
    BalancePolicy, Balancer, BalancerConfig, BreakerConfig, CircuitBreaker, ReplicaSpec,
    SharedClock, UpstreamOutcome,
};
use shadowcat_proxy::upstream::{HttpUpstream, Member, UpstreamGroup, UpstreamKind};

fn closed_breaker(c: &mut Criterion) {
    let breaker = CircuitBreaker::new(BreakerConfig::default());
    c.bench_function("breaker/closed_acquire_success", |b| {
        b.iter(|| {
            let permit = breaker.try_acquire().expect("the breaker stays closed");
            black_box(permit.success())
        });
    });
}

fn balancer_pick(c: &mut Criterion) {
    let replicas = vec![
        ReplicaSpec::default(),
        ReplicaSpec::new(NonZeroU32::new(2).expect("2 is not zero")),
        ReplicaSpec::default(),
    ];
    for (name, policy) in [
        ("p2c", BalancePolicy::P2c),
        ("round_robin", BalancePolicy::RoundRobin),
        ("least_requests", BalancePolicy::LeastRequests),
    ] {
        let config = BalancerConfig {
            policy,
            ..BalancerConfig::default()
        };
        let balancer = Balancer::new(config, BreakerConfig::default(), replicas.clone());
        c.bench_function(&format!("balancer/pick_3_replicas/{name}"), |b| {
            b.iter(|| {
                let guard = balancer.pick(None).expect("every replica is closed");
                guard.observe(Duration::from_millis(5));
                black_box(guard.success())
            });
        });
    }
}

/// Measures the whole upstream-selection stage as a request pays for it: retry budget,
/// balancer pick, breaker admission, latency sample and outcome, on the shared clock.
fn group_pick(c: &mut Criterion) {
    let config = Config::parse(
        r#"
        [[upstreams]]
        name = "bench"
        members = [
            { url = "http://127.0.0.1:9001/mcp" },
            { url = "http://127.0.0.1:9002/mcp", weight = 2 },
            { url = "http://127.0.0.1:9003/mcp" },
        ]
        "#,
    )
    .expect("the bench config parses");
    let upstream = &config.upstreams[0];
    let members = upstream
        .members
        .iter()
        .map(|member| {
            let url = member.url.clone().expect("members have URLs");
            let http = HttpUpstream::new(
                url.parse().expect("the URL parses"),
                member.connect_timeout,
                member.request_timeout,
                http::HeaderMap::new(),
            );
            Member::new(
                url,
                UpstreamKind::Http(Box::new(http)),
                member.request_timeout,
            )
        })
        .collect();
    let group = UpstreamGroup::balanced(upstream, members, SharedClock::default(), None);
    c.bench_function("group/pick_and_finish_3_replicas", |b| {
        b.iter(|| {
            let attempt = group.pick(None).expect("every replica is available");
            attempt.finish(
                black_box(&UpstreamOutcome::Status(200)),
                Duration::from_millis(5),
            );
        });
    });
}

criterion_group!(benches, closed_breaker, balancer_pick, group_pick);
criterion_main!(benches);
