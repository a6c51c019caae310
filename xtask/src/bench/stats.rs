//! Latency statistics of one load run: nearest-rank percentiles and the points of a
//! percentile curve for the plot.

use std::collections::BTreeMap;
use std::time::Duration;

/// Percentiles reported for every load run, in percent.
pub(crate) const REPORTED_PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// Counts and latencies of one load run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunStats {
    /// Responses with a 2xx status, read to the end.
    pub(crate) ok: u64,
    /// Responses with any other status, read to the end, counted by status code.
    pub(crate) error_statuses: BTreeMap<u16, u64>,
    /// Requests that failed without a response (connect, write or read errors).
    pub(crate) transport_errors: u64,
    /// Measured time from the first request to the end of the last response.
    pub(crate) elapsed: Duration,
    /// Latency of every 2xx response in nanoseconds, sorted ascending.
    pub(crate) latencies_ns: Vec<u64>,
}

impl RunStats {
    /// Builds the stats from unsorted latencies and sorts them.
    pub(crate) fn new(
        ok: u64,
        error_statuses: BTreeMap<u16, u64>,
        transport_errors: u64,
        elapsed: Duration,
        mut latencies_ns: Vec<u64>,
    ) -> Self {
        latencies_ns.sort_unstable();
        Self {
            ok,
            error_statuses,
            transport_errors,
            elapsed,
            latencies_ns,
        }
    }

    /// Returns the number of responses with a non-2xx status.
    pub(crate) fn error_responses(&self) -> u64 {
        self.error_statuses.values().sum()
    }

    /// Returns the non-2xx statuses as `429 x 12, 503 x 1`, or `none`.
    pub(crate) fn error_summary(&self) -> String {
        if self.error_statuses.is_empty() {
            return "none".to_owned();
        }
        self.error_statuses
            .iter()
            .map(|(status, count)| format!("{status} x {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Returns successful responses per second over the measured time.
    pub(crate) fn requests_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// Returns the latency at percentile `p` (0 to 100) in microseconds, or `None` when
    /// the run has no successful response.
    pub(crate) fn percentile_us(&self, p: f64) -> Option<f64> {
        percentile(&self.latencies_ns, p).map(|ns| ns as f64 / 1_000.0)
    }
}

/// Returns the nearest-rank percentile `p` (0 to 100) of ascending `sorted` values: the
/// smallest value with at least `p` percent of the values at or below it.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The small tolerance keeps float error (99.9 computed as 99.90000000000001) from
    // moving the rank one sample up.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len() - 1);
    Some(sorted[index])
}

/// Highest percentile the curve goes to: beyond it a run of a few seconds has too few
/// samples for the tail to mean anything.
const CURVE_MAX_PERCENTILE: f64 = 99.99;

/// Returns `(percentile, latency in microseconds)` points of a latency percentile curve,
/// spaced evenly on the `1 / (1 - p)` axis that the plot uses, up to the highest
/// percentile that at least one sample supports.
pub(crate) fn percentile_curve(sorted: &[u64]) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    // Position x on the axis is -log10(1 - p/100): 0 for p = 0, 1 for p = 90, 2 for 99.
    let sample_limit = 100.0 * (1.0 - 1.0 / sorted.len() as f64);
    let top = sample_limit.clamp(0.0, CURVE_MAX_PERCENTILE);
    let x_max = -(1.0 - top / 100.0).log10();
    let steps = 60;
    (0..=steps)
        .map(|step| {
            let x = x_max * f64::from(step) / f64::from(steps);
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            let latency = percentile(sorted, p).unwrap_or_default();
            (p, latency as f64 / 1_000.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 90.0), Some(90));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 99.9), Some(100));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
    }

    #[test]
    fn percentile_of_small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 34.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 33.0), Some(1));
    }

    #[test]
    fn run_stats_sorts_and_computes_rate() {
        let errors = BTreeMap::from([(429, 3), (503, 1)]);
        let latencies = vec![4_000, 1_000, 3_000, 2_000];
        let stats = RunStats::new(4, errors, 0, Duration::from_secs(2), latencies);
        assert_eq!(stats.error_responses(), 4);
        assert_eq!(stats.error_summary(), "429 x 3, 503 x 1");
        assert_eq!(stats.latencies_ns, [1_000, 2_000, 3_000, 4_000]);
        assert_eq!(stats.requests_per_second(), 2.0);
        assert_eq!(stats.percentile_us(50.0), Some(2.0));
        assert_eq!(stats.percentile_us(99.0), Some(4.0));
    }

    #[test]
    fn run_stats_without_time_has_zero_rate() {
        let stats = RunStats::default();
        assert_eq!(stats.requests_per_second(), 0.0);
        assert_eq!(stats.percentile_us(50.0), None);
        assert_eq!(stats.error_summary(), "none");
    }

    #[test]
    fn curve_is_monotonic_and_bounded_by_samples() {
        let values: Vec<u64> = (1..=1_000).map(|v| v * 1_000).collect();
        let curve = percentile_curve(&values);
        assert_eq!(curve.first().unwrap().0, 0.0);
        let (last_p, last_latency) = *curve.last().unwrap();
        assert!((last_p - 99.9).abs() < 1e-9, "last percentile {last_p}");
        assert_eq!(last_latency, 999.0);
        for pair in curve.windows(2) {
            assert!(pair[0].0 < pair[1].0);
            assert!(pair[0].1 <= pair[1].1);
        }
    }

    #[test]
    fn curve_of_empty_run_is_empty() {
        assert!(percentile_curve(&[]).is_empty());
    }
}
