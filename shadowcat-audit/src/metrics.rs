//! Counters of the audit writer and their Prometheus text form.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::event::Detector;

/// Upper bounds of the write-latency histogram buckets, in seconds.
pub const WRITE_LATENCY_BOUNDS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// Shared counters, updated by callers (drops, unavailability) and the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    written: AtomicU64,
    dropped: AtomicU64,
    unreported_drops: AtomicU64,
    unavailable: AtomicU64,
    alerts: [AtomicU64; 2],
    write_errors: AtomicU64,
    checkpoints: AtomicU64,
    latency_buckets: [AtomicU64; WRITE_LATENCY_BOUNDS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
}

impl Metrics {
    pub(crate) fn record_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported_drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the drops not yet reported in an `audit.dropped` record.
    pub(crate) fn take_unreported_drops(&self) -> u64 {
        if self.unreported_drops.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.unreported_drops.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn record_unavailable(&self) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_written(&self, records: u64) {
        self.written.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn record_alert(&self, detector: Detector) {
        let index = match detector {
            Detector::AuthFailuresPerIp => 0,
            Detector::RejectionsPerSubject => 1,
        };
        self.alerts[index].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_write_error(&self) -> u64 {
        self.write_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record_checkpoint(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_write_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = WRITE_LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.latency_buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, queue_depth: usize, queue_capacity: usize) -> MetricsSnapshot {
        let mut cumulative = 0;
        let buckets = self.latency_buckets.each_ref().map(|bucket| {
            cumulative += bucket.load(Ordering::Relaxed);
            cumulative
        });
        MetricsSnapshot {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queue_depth: queue_depth as u64,
            queue_capacity: queue_capacity as u64,
            audit_unavailable: self.unavailable.load(Ordering::Relaxed),
            alerts_auth_failures_per_ip: self.alerts[0].load(Ordering::Relaxed),
            alerts_rejections_per_subject: self.alerts[1].load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            write_latency: LatencyHistogram {
                cumulative_counts: buckets,
                count: self.latency_count.load(Ordering::Relaxed),
                sum: Duration::from_nanos(self.latency_sum_nanos.load(Ordering::Relaxed)),
            },
        }
    }
}

/// A point-in-time copy of the writer's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Records written to every output, including writer-made records (alerts, drops,
    /// checkpoints).
    pub written: u64,
    /// Records dropped because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Records waiting in the queue.
    pub queue_depth: u64,
    /// Queue capacity.
    pub queue_capacity: u64,
    /// Lossless `submit` calls that failed (timeout or stopped writer).
    pub audit_unavailable: u64,
    /// `security.alert` records raised by the `auth_failures_per_ip` detector.
    pub alerts_auth_failures_per_ip: u64,
    /// `security.alert` records raised by the `rejections_per_subject` detector.
    pub alerts_rejections_per_subject: u64,
    /// Failed write, sync or rotation attempts (each is retried).
    pub write_errors: u64,
    /// Signed checkpoints written.
    pub checkpoints: u64,
    /// Time per batch write, including the sync when one is due.
    pub write_latency: LatencyHistogram,
}

/// A cumulative latency histogram with the bounds of [`WRITE_LATENCY_BOUNDS`].
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// Observations at or below each bound.
    pub cumulative_counts: [u64; WRITE_LATENCY_BOUNDS.len()],
    /// All observations.
    pub count: u64,
    /// Sum of all observations.
    pub sum: Duration,
}

impl MetricsSnapshot {
    /// Appends the counters to `out` in the Prometheus text exposition format, with names
    /// prefixed `shadowcat_audit_`.
    pub fn render_prometheus(&self, out: &mut String) {
        let counters = [
            (
                "records_written_total",
                "Audit records written.",
                self.written,
            ),
            (
                "records_dropped_total",
                "Audit records dropped.",
                self.dropped,
            ),
            (
                "unavailable_total",
                "Lossless submissions that failed, so the request failed closed.",
                self.audit_unavailable,
            ),
            (
                "write_errors_total",
                "Failed audit writes, each retried.",
                self.write_errors,
            ),
            (
                "checkpoints_total",
                "Signed audit checkpoints written.",
                self.checkpoints,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP shadowcat_audit_{name} {help}");
            let _ = writeln!(out, "# TYPE shadowcat_audit_{name} counter");
            let _ = writeln!(out, "shadowcat_audit_{name} {value}");
        }

        let gauges = [
            (
                "queue_depth",
                "Audit records waiting in the queue.",
                self.queue_depth,
            ),
            (
                "queue_capacity",
                "Capacity of the audit queue.",
                self.queue_capacity,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP shadowcat_audit_{name} {help}");
            let _ = writeln!(out, "# TYPE shadowcat_audit_{name} gauge");
            let _ = writeln!(out, "shadowcat_audit_{name} {value}");
        }

        let _ = writeln!(
            out,
            "# HELP shadowcat_audit_alerts_total Security alerts raised."
        );
        let _ = writeln!(out, "# TYPE shadowcat_audit_alerts_total counter");
        for (detector, value) in [
            (
                Detector::AuthFailuresPerIp,
                self.alerts_auth_failures_per_ip,
            ),
            (
                Detector::RejectionsPerSubject,
                self.alerts_rejections_per_subject,
            ),
        ] {
            let _ = writeln!(
                out,
                "shadowcat_audit_alerts_total{{detector=\"{detector}\"}} {value}"
            );
        }

        let histogram = &self.write_latency;
        let _ = writeln!(
            out,
            "# HELP shadowcat_audit_write_seconds Time to write one batch of audit records."
        );
        let _ = writeln!(out, "# TYPE shadowcat_audit_write_seconds histogram");
        for (bound, count) in WRITE_LATENCY_BOUNDS.iter().zip(histogram.cumulative_counts) {
            let _ = writeln!(
                out,
                "shadowcat_audit_write_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "shadowcat_audit_write_seconds_bucket{{le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(
            out,
            "shadowcat_audit_write_seconds_sum {}",
            histogram.sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "shadowcat_audit_write_seconds_count {}",
            histogram.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_lists_every_metric() {
        let metrics = Metrics::default();
        metrics.record_drop();
        metrics.record_written(5);
        metrics.record_alert(Detector::AuthFailuresPerIp);
        metrics.record_write_latency(Duration::from_micros(300));
        metrics.record_write_latency(Duration::from_secs(10));

        let mut out = String::new();
        metrics.snapshot(2, 8).render_prometheus(&mut out);

        for line in [
            "shadowcat_audit_records_written_total 5",
            "shadowcat_audit_records_dropped_total 1",
            "shadowcat_audit_queue_depth 2",
            "shadowcat_audit_queue_capacity 8",
            "shadowcat_audit_unavailable_total 0",
            "shadowcat_audit_alerts_total{detector=\"auth_failures_per_ip\"} 1",
            "shadowcat_audit_write_seconds_bucket{le=\"0.00025\"} 0",
            "shadowcat_audit_write_seconds_bucket{le=\"0.0005\"} 1",
            "shadowcat_audit_write_seconds_bucket{le=\"2.5\"} 1",
            "shadowcat_audit_write_seconds_bucket{le=\"+Inf\"} 2",
            "shadowcat_audit_write_seconds_count 2",
        ] {
            assert!(
                out.lines().any(|candidate| candidate == line),
                "missing {line}:\n{out}"
            );
        }
    }

    #[test]
    fn unreported_drops_are_taken_once() {
        let metrics = Metrics::default();
        metrics.record_drop();
        metrics.record_drop();
        assert_eq!(metrics.take_unreported_drops(), 2);
        assert_eq!(metrics.take_unreported_drops(), 0);
        assert_eq!(metrics.snapshot(0, 1).dropped, 2);
    }
}
