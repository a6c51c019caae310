//! The proxy's own Prometheus metrics: requests by method and status, upstream latency,
//! and active sessions.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the upstream latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// JSON-RPC methods counted under their own label; any other method is counted as
/// `other`, so a client cannot create unbounded label values.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Returns the metric label for a method: itself if known, else `other`.
pub fn method_label(method: Option<&str>) -> &'static str {
    match method {
        None => "none",
        Some(method) => KNOWN_METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("other"),
    }
}

/// Counters and histograms of the proxy itself.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    upstream_errors: AtomicU64,
}

impl ProxyMetrics {
    /// Counts one completed request.
    pub fn count_request(&self, http_method: &'static str, method: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .entry((http_method, method, status))
            .or_default() += 1;
    }

    /// Records the time the upstream took to start its response.
    pub fn observe_upstream_latency(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        // Each sample is counted in its own bucket only; rendering adds them up into
        // Prometheus's cumulative buckets.
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts one upstream failure.
    pub fn count_upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the metrics in Prometheus text format.
    pub fn render(&self, active_sessions: usize, out: &mut String) {
        out.push_str("# HELP shadowcat_requests_total Requests answered, by HTTP method, JSON-RPC method and status.\n");
        out.push_str("# TYPE shadowcat_requests_total counter\n");
        for ((http_method, method, status), count) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "shadowcat_requests_total{{http_method=\"{http_method}\",method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }

        out.push_str("# HELP shadowcat_upstream_latency_seconds Time until the upstream starts its response.\n");
        out.push_str("# TYPE shadowcat_upstream_latency_seconds histogram\n");
        let mut cumulative = 0;
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "shadowcat_upstream_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "shadowcat_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "shadowcat_upstream_latency_seconds_sum {sum}");
        let _ = writeln!(out, "shadowcat_upstream_latency_seconds_count {count}");

        out.push_str("# HELP shadowcat_upstream_errors_total Upstream failures: unreachable, timed out or failed.\n");
        out.push_str("# TYPE shadowcat_upstream_errors_total counter\n");
        let _ = writeln!(
            out,
            "shadowcat_upstream_errors_total {}",
            self.upstream_errors.load(Ordering::Relaxed)
        );

        out.push_str("# HELP shadowcat_active_sessions Live legacy sessions.\n");
        out.push_str("# TYPE shadowcat_active_sessions gauge\n");
        let _ = writeln!(out, "shadowcat_active_sessions {active_sessions}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("x\"}evil")), "other");
    }

    #[test]
    fn render_includes_counts_and_histogram() {
        let metrics = ProxyMetrics::default();
        metrics.count_request("POST", "tools/call", 200);
        metrics.observe_upstream_latency(Duration::from_millis(3));
        let mut out = String::new();
        metrics.render(2, &mut out);
        assert!(out.contains(
            "shadowcat_requests_total{http_method=\"POST\",method=\"tools/call\",status=\"200\"} 1"
        ));
        assert!(out.contains("shadowcat_upstream_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("shadowcat_upstream_latency_seconds_bucket{le=\"0.0025\"} 0"));
        // Buckets are cumulative: a larger bound counts the same sample again.
        assert!(out.contains("shadowcat_upstream_latency_seconds_bucket{le=\"0.01\"} 1"));
        assert!(out.contains("shadowcat_active_sessions 2"));
    }
}
