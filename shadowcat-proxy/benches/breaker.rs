//! Circuit breaker and load balancer hot paths.
//!
//! Run with `cargo bench -p shadowcat-proxy --bench breaker`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shadowcat_proxy::upstream::resilience::{
    BalancePolicy, Balancer, BalancerConfig, BreakerConfig, CircuitBreaker, ReplicaSpec,
};

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

criterion_group!(benches, closed_breaker, balancer_pick);
criterion_main!(benches);
