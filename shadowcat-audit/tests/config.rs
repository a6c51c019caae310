//! The `[audit]` section as operators write it in TOML.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::Deserialize;
use shadowcat_audit::{AuditConfig, Fsync, HashedField, Mode, Rotation};

#[derive(Deserialize)]
struct ProxyConfig {
    audit: AuditConfig,
}

#[test]
fn documented_defaults_parse_to_default() {
    let text = r#"
        [audit]
        file = true
        dir = "audit"
        prefix = "audit"
        rotation = "daily"
        max_file_bytes = 67108864
        stdout = false
        mode = "lossless"
        queue_capacity = 8192
        backpressure_timeout = "5s"
        fsync = "1s"
        hashed_fields = []
        checkpoint_every = 10000

        [audit.detectors]
        max_tracked_keys = 10000
        auth_failures_per_ip = { enabled = true, threshold = 20, window = "1m" }
        rejections_per_subject = { enabled = true, threshold = 100, window = "1m" }
    "#;
    let parsed: ProxyConfig = toml::from_str(text).unwrap();
    assert_eq!(parsed.audit, AuditConfig::default());
}

#[test]
fn custom_section_parses() {
    let text = r#"
        [audit]
        dir = "/var/log/shadowcat"
        rotation = "size"
        max_file_bytes = 1048576
        mode = "lossy"
        fsync = "always"
        backpressure_timeout = "250ms"
        hashed_fields = ["subject", "client_ip"]
        signing_key = "/etc/shadowcat/audit.pem"
        checkpoint_every = 500

        [audit.detectors.auth_failures_per_ip]
        threshold = 5
        window = "30s"
    "#;
    let audit = toml::from_str::<ProxyConfig>(text).unwrap().audit;
    audit.validate().unwrap();
    assert_eq!(audit.rotation, Rotation::Size);
    assert_eq!(audit.mode, Mode::Lossy);
    assert_eq!(audit.fsync, Fsync::Always);
    assert_eq!(audit.backpressure_timeout, Duration::from_millis(250));
    assert_eq!(
        audit.hashed_fields,
        [HashedField::Subject, HashedField::ClientIp]
    );
    assert_eq!(audit.checkpoint_every, NonZeroU64::new(500).unwrap());
    assert_eq!(audit.detectors.auth_failures_per_ip.threshold.get(), 5);
    assert!(audit.detectors.auth_failures_per_ip.enabled);
}

#[test]
fn toml_errors_name_the_key() {
    let error = toml::from_str::<ProxyConfig>("[audit]\nqueue_capacity = 0\n")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("queue_capacity"), "{error}");

    let error = toml::from_str::<ProxyConfig>("[audit]\nmode = \"best_effort\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("best_effort"), "{error}");

    let error = toml::from_str::<ProxyConfig>("[audit]\nfsync = \"often\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("\"often\""), "{error}");
}
