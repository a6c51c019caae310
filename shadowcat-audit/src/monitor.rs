//! Sliding-window security detectors, run on the writer thread.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use crate::config::{DetectorConfig, DetectorsConfig};
use crate::event::{AuditEvent, Detector, EventKind};

/// Buckets per window. An event counts for between 15/16 of the window and all of it.
const BUCKETS: u64 = 16;

/// Counts events per key and raises `security.alert` events.
///
/// Windows are measured in event time, so replayed or fake-clock events behave the same
/// as live ones.
#[derive(Debug)]
pub(crate) struct Monitor {
    auth_failures: Option<WindowSet<IpAddr>>,
    rejections: Option<WindowSet<String>>,
}

impl Monitor {
    pub(crate) fn new(config: &DetectorsConfig) -> Self {
        let max_keys = config.max_tracked_keys.get();
        Self {
            auth_failures: WindowSet::new(
                Detector::AuthFailuresPerIp,
                &config.auth_failures_per_ip,
                max_keys,
            ),
            rejections: WindowSet::new(
                Detector::RejectionsPerSubject,
                &config.rejections_per_subject,
                max_keys,
            ),
        }
    }

    /// Counts `event` and returns an alert when it makes a key cross its threshold, at
    /// most once per key per window.
    pub(crate) fn observe(&mut self, event: &AuditEvent) -> Option<AuditEvent> {
        let now_ms = event.time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });

        match &event.kind {
            EventKind::AuthFailure { .. } => {
                let detectors = self.auth_failures.as_mut()?;
                let client_ip = event.client_ip?;
                let count = detectors.observe(&client_ip, now_ms, 1)?;
                let alert = detectors.alert(event, count).with_client_ip(client_ip);
                Some(alert)
            }
            EventKind::RequestRejected { .. }
            | EventKind::AuthzDeny { .. }
            | EventKind::RatelimitLimited { .. } => {
                let weight = match event.kind {
                    EventKind::RatelimitLimited { hits, .. } => hits.max(1),
                    _ => 1,
                };
                let detectors = self.rejections.as_mut()?;
                let subject = event.subject.as_ref()?;
                let count = detectors.observe(subject.as_str(), now_ms, weight)?;
                let mut alert = detectors.alert(event, count);
                alert.subject = Some(subject.clone());
                Some(alert)
            }
            _ => None,
        }
    }
}

/// One detector: a window per key.
#[derive(Debug)]
struct WindowSet<K> {
    detector: Detector,
    threshold: u64,
    window_ms: u64,
    bucket_ms: u64,
    max_keys: usize,
    windows: HashMap<K, Window>,
    last_prune_bucket: Option<u64>,
}

impl<K: Hash + Eq> WindowSet<K> {
    fn new(detector: Detector, config: &DetectorConfig, max_keys: usize) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let window_ms = u64::try_from(config.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(BUCKETS);
        Some(Self {
            detector,
            threshold: config.threshold.get(),
            window_ms,
            bucket_ms: window_ms / BUCKETS,
            max_keys,
            windows: HashMap::new(),
            last_prune_bucket: None,
        })
    }

    /// Adds `weight` events for `key` at `now_ms` and returns the window count when an
    /// alert is due.
    fn observe<Q>(&mut self, key: &Q, now_ms: u64, weight: u64) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let bucket = now_ms / self.bucket_ms;
        if !self.windows.contains_key(key) {
            if self.windows.len() >= self.max_keys {
                self.prune(bucket);
            }
            if self.windows.len() >= self.max_keys {
                // NOTE: under a flood of distinct keys the newest keys go uncounted until
                // older ones have been idle for a whole window.
                return None;
            }
            self.windows.insert(key.to_owned(), Window::new(bucket));
        }
        let window = self.windows.get_mut(key)?;

        let count = window.add(bucket, weight);
        let quiet = window
            .last_alert_ms
            .is_none_or(|last| now_ms >= last.saturating_add(self.window_ms));
        if count >= self.threshold && quiet {
            window.last_alert_ms = Some(now_ms);
            return Some(count);
        }
        None
    }

    /// Forgets keys with no event in the last window, at most once per bucket interval
    /// so a full table does not cost a scan per event.
    fn prune(&mut self, bucket: u64) {
        if self.last_prune_bucket == Some(bucket) {
            return;
        }
        self.last_prune_bucket = Some(bucket);
        self.windows
            .retain(|_, window| window.head.saturating_add(BUCKETS) > bucket);
    }

    fn alert(&self, cause: &AuditEvent, count: u64) -> AuditEvent {
        let mut alert = AuditEvent::new(EventKind::SecurityAlert {
            detector: self.detector,
            count,
            threshold: self.threshold,
            window_ms: self.window_ms,
        })
        .at(cause.time);
        alert.request_id = cause.request_id;
        alert
    }
}

/// Event counts of one key in the last [`BUCKETS`] bucket intervals.
#[derive(Debug)]
struct Window {
    counts: [u64; BUCKETS as usize],
    head: u64,
    last_alert_ms: Option<u64>,
}

impl Window {
    fn new(bucket: u64) -> Self {
        Self {
            counts: [0; BUCKETS as usize],
            head: bucket,
            last_alert_ms: None,
        }
    }

    /// Adds `weight` to `bucket` and returns the count over the window.
    fn add(&mut self, bucket: u64, weight: u64) -> u64 {
        if bucket > self.head {
            let advance = bucket - self.head;
            if advance >= BUCKETS {
                self.counts = [0; BUCKETS as usize];
            } else {
                for step in 1..=advance {
                    self.counts[((self.head + step) % BUCKETS) as usize] = 0;
                }
            }
            self.head = bucket;
        }
        // An event older than the window (out-of-order delivery) no longer counts.
        if self.head - bucket < BUCKETS {
            let slot = &mut self.counts[(bucket % BUCKETS) as usize];
            *slot = slot.saturating_add(weight);
        }
        self.counts
            .iter()
            .fold(0u64, |sum, count| sum.saturating_add(*count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuthFailureReason;
    use std::num::NonZeroU64;
    use std::time::{Duration, SystemTime};

    fn config(threshold: u64) -> DetectorsConfig {
        let detector = DetectorConfig {
            enabled: true,
            threshold: NonZeroU64::new(threshold).unwrap(),
            window: Duration::from_secs(60),
        };
        DetectorsConfig {
            auth_failures_per_ip: detector.clone(),
            rejections_per_subject: detector,
            ..DetectorsConfig::default()
        }
    }

    fn failure(ip: &str, at: SystemTime) -> AuditEvent {
        AuditEvent::new(EventKind::AuthFailure {
            reason: AuthFailureReason::InvalidSignature,
            user_agent: None,
        })
        .with_client_ip(ip.parse().unwrap())
        .at(at)
    }

    #[test]
    fn old_events_leave_the_window() {
        let mut monitor = Monitor::new(&config(3));
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(monitor.observe(&failure("192.0.2.1", start)).is_none());
        assert!(monitor.observe(&failure("192.0.2.1", start)).is_none());
        // Two minutes later the first two no longer count.
        let later = start + Duration::from_secs(120);
        assert!(monitor.observe(&failure("192.0.2.1", later)).is_none());
        assert!(monitor.observe(&failure("192.0.2.1", later)).is_none());
        assert!(monitor.observe(&failure("192.0.2.1", later)).is_some());
    }

    #[test]
    fn keys_are_counted_apart() {
        let mut monitor = Monitor::new(&config(2));
        let now = UNIX_EPOCH + Duration::from_secs(5_000);
        assert!(monitor.observe(&failure("192.0.2.1", now)).is_none());
        assert!(monitor.observe(&failure("192.0.2.2", now)).is_none());
        let alert = monitor.observe(&failure("192.0.2.2", now)).unwrap();
        assert_eq!(alert.client_ip(), Some("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn limited_hits_weigh_by_count() {
        let mut monitor = Monitor::new(&config(10));
        let event = AuditEvent::new(EventKind::RatelimitLimited {
            tier: "per_subject".into(),
            key_hash: "h:00".into(),
            hits: 10,
        })
        .with_subject("alice");
        let alert = monitor.observe(&event).unwrap();
        assert_eq!(alert.subject(), Some("alice"));
        assert!(matches!(
            alert.kind(),
            EventKind::SecurityAlert { count: 10, .. }
        ));
    }

    #[test]
    fn full_table_skips_new_keys_until_prune() {
        let mut detectors = config(100);
        detectors.max_tracked_keys = 2.try_into().unwrap();
        let mut monitor = Monitor::new(&detectors);
        let start = UNIX_EPOCH + Duration::from_secs(10_000);
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            monitor.observe(&failure(ip, start));
        }
        let table = &monitor.auth_failures.as_ref().unwrap().windows;
        assert_eq!(table.len(), 2);

        monitor.observe(&failure("192.0.2.3", start + Duration::from_secs(600)));
        let table = &monitor.auth_failures.as_ref().unwrap().windows;
        assert_eq!(table.len(), 1);
        assert!(table.contains_key(&"192.0.2.3".parse::<IpAddr>().unwrap()));
    }
}
