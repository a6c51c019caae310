//! Counters and gauges for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::decision::Tier;

/// Limiter-wide counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) checks: AtomicU64,
    pub(crate) allowed: AtomicU64,
}

impl Counters {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters and gauges of one configured tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierMetrics {
    /// The tier.
    pub tier: Tier,
    /// Requests this tier rejected for now (429).
    pub limited: u64,
    /// Requests this tier rejected for good because their cost exceeds its burst.
    pub cost_too_high: u64,
    /// Charges that went to the overflow bucket because the tier was at its key cap.
    pub overflow: u64,
    /// Keys tracked now: buckets for rate tiers, subjects holding slots for concurrency
    /// tiers.
    pub tracked_keys: usize,
}

/// A point-in-time copy of the limiter's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Checks of any kind since the limiter was built.
    pub checks: u64,
    /// Checks that were allowed.
    pub allowed: u64,
    /// One entry per configured tier, in [`Tier::ALL`] order.
    pub tiers: Vec<TierMetrics>,
    /// Requests in flight now.
    pub in_flight: u32,
    /// SSE streams open now.
    pub streams: u32,
    /// Rejections folded into a later audit record instead of getting their own.
    pub audit_suppressed: u64,
}

impl MetricsSnapshot {
    /// Returns the metrics of `tier`, if it is configured.
    pub fn tier(&self, tier: Tier) -> Option<&TierMetrics> {
        self.tiers.iter().find(|metrics| metrics.tier == tier)
    }

    /// Appends the metrics in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        counter(out, "checks_total", "Rate limit checks.", self.checks);
        counter(
            out,
            "allowed_total",
            "Rate limit checks that were allowed.",
            self.allowed,
        );
        self.per_tier(
            out,
            "limited_total",
            "counter",
            "Requests rejected with a retry time, by tier.",
            |tier| tier.limited as f64,
        );
        self.per_tier(
            out,
            "cost_too_high_total",
            "counter",
            "Requests rejected because their cost exceeds the burst, by tier.",
            |tier| tier.cost_too_high as f64,
        );
        self.per_tier(
            out,
            "overflow_total",
            "counter",
            "Charges sent to the shared overflow bucket at the key cap, by tier.",
            |tier| tier.overflow as f64,
        );
        self.per_tier(
            out,
            "tracked_keys",
            "gauge",
            "Keys tracked now, by tier.",
            |tier| tier.tracked_keys as f64,
        );
        gauge(
            out,
            "in_flight",
            "Requests in flight.",
            u64::from(self.in_flight),
        );
        gauge(
            out,
            "open_streams",
            "Open SSE streams.",
            u64::from(self.streams),
        );
        counter(
            out,
            "audit_suppressed_total",
            "Rejections folded into a later audit record.",
            self.audit_suppressed,
        );
    }

    fn per_tier(
        &self,
        out: &mut String,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&TierMetrics) -> f64,
    ) {
        let _ = writeln!(out, "# HELP shadowcat_ratelimit_{name} {help}");
        let _ = writeln!(out, "# TYPE shadowcat_ratelimit_{name} {kind}");
        for tier in &self.tiers {
            let _ = writeln!(
                out,
                "shadowcat_ratelimit_{name}{{tier=\"{}\"}} {}",
                tier.tier.as_str(),
                value(tier)
            );
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    single(out, name, "counter", help, value);
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    single(out, name, "gauge", help, value);
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP shadowcat_ratelimit_{name} {help}");
    let _ = writeln!(out, "# TYPE shadowcat_ratelimit_{name} {kind}");
    let _ = writeln!(out, "shadowcat_ratelimit_{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_labels() {
        let snapshot = MetricsSnapshot {
            checks: 5,
            allowed: 3,
            tiers: vec![TierMetrics {
                tier: Tier::Ip,
                limited: 2,
                cost_too_high: 0,
                overflow: 1,
                tracked_keys: 7,
            }],
            in_flight: 1,
            streams: 0,
            audit_suppressed: 4,
        };
        let mut out = String::new();
        snapshot.render_prometheus(&mut out);
        assert!(
            out.contains("shadowcat_ratelimit_checks_total 5\n"),
            "{out}"
        );
        assert!(
            out.contains("shadowcat_ratelimit_limited_total{tier=\"ip\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("shadowcat_ratelimit_tracked_keys{tier=\"ip\"} 7\n"),
            "{out}"
        );
        assert!(
            out.contains("shadowcat_ratelimit_overflow_total{tier=\"ip\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE shadowcat_ratelimit_in_flight gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("shadowcat_ratelimit_audit_suppressed_total 4\n"),
            "{out}"
        );
    }
}
