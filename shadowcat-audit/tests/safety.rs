//! What reaches the log: escaping, redaction, and security alerts.

mod common;

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use common::{base_time, config_in, read_lines, read_records};
use shadowcat_audit::{
    AuditConfig, AuditEvent, AuditRecord, AuditWriter, AuthFailureReason, DetectorConfig,
    DetectorsConfig, EventKind, HashedField, Outcome, log_files, verify,
};
use shadowcat_core::{CallContext, Principal, RequestId, SessionId};

const HOSTILE: &str = "a\nb\rc\u{1b}[2J\u{1b}]0;pwned\u{7}\"}\n{\"kind\":\"auth.success\"\\\u{9b}31m\u{2028}\u{202e}\t\u{0}end";

#[tokio::test]
async fn hostile_fields_stay_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditWriter::new(config_in(dir.path())).spawn().unwrap();
    let events = [
        AuditEvent::new(EventKind::AuthFailure {
            reason: AuthFailureReason::Malformed,
            user_agent: Some(HOSTILE.into()),
        }),
        AuditEvent::new(EventKind::RequestCompleted {
            method: HOSTILE.into(),
            target: Some(HOSTILE.into()),
            status: 200,
            latency_us: 1,
            outcome: Outcome::Ok,
            error_code: None,
        })
        .with_subject(HOSTILE),
        AuditEvent::new(EventKind::ProxyStopped {
            reason: HOSTILE.into(),
        }),
    ];
    for event in events {
        audit.submit(event).await.unwrap();
    }
    audit.shutdown().await.unwrap();

    let files = log_files(dir.path(), "audit").unwrap();
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.iter().filter(|byte| **byte == b'\n').count(), 3);
    assert!(!bytes.contains(&0x1b), "raw ESC in the file");
    assert!(!bytes.contains(&b'\r'), "raw CR in the file");
    assert!(!bytes.contains(&0x00), "raw NUL in the file");
    let text = String::from_utf8(bytes).unwrap();
    for forbidden in ['\u{9b}', '\u{2028}', '\u{202e}'] {
        assert!(!text.contains(forbidden), "raw {forbidden:?} in the file");
    }

    for line in read_lines(&files) {
        let record = AuditRecord::parse(&line).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        for text in string_values(&value) {
            assert!(!text.contains('\u{1b}'), "ESC survives decoding: {text:?}");
            assert!(!text.contains('\u{9b}'), "CSI survives decoding: {text:?}");
        }
        assert_ne!(record.kind.name(), "auth.success");
    }
    let records = read_records(&files);
    let user_agent = records[0]["user_agent"].as_str().unwrap();
    assert!(
        user_agent.starts_with("a\nb\rc\u{fffd}[2J"),
        "{user_agent:?}"
    );
    assert!(
        user_agent.contains("\u{2028}\u{202e}\t\u{0}end"),
        "{user_agent:?}"
    );
    assert_eq!(verify(&files, None).unwrap().records, 3);
}

/// Returns every string value of a record, decoded.
fn string_values(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(text) => vec![text.clone()],
        serde_json::Value::Object(members) => members.values().flat_map(string_values).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn canary_secrets_never_reach_the_file() {
    const SALT: &str = "salt-canary-6b1f0e2d9c8a7f34";
    const SUBJECT: &str = "canary-subject-5e9d";
    const TOOL: &str = "canary-tool-0c3b";
    const AGENT: &str = "canary-agent-71aa";
    const LIMIT_KEY: &str = "canary-limit-key-44f2";

    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let salt_file = secrets.path().join("salt");
    std::fs::write(&salt_file, format!("{SALT}\n")).unwrap();
    let config = AuditConfig {
        hashed_fields: vec![
            HashedField::Subject,
            HashedField::ClientIp,
            HashedField::SessionId,
            HashedField::Target,
            HashedField::UserAgent,
        ],
        hash_salt_file: Some(salt_file),
        detectors: DetectorsConfig {
            rejections_per_subject: DetectorConfig {
                enabled: true,
                threshold: NonZeroU64::new(1).unwrap(),
                window: Duration::from_secs(60),
            },
            ..DetectorsConfig::default()
        },
        ..config_in(dir.path())
    };
    let audit = AuditWriter::new(config).spawn().unwrap();
    let redactor = audit.redactor().clone();

    let mut principal = Principal::anonymous();
    principal.subject = SUBJECT.to_owned();
    let mut context = CallContext::new(
        RequestId::from_u64(0xfeed),
        "198.51.100.23".parse().unwrap(),
        "POST",
        Arc::from("/mcp"),
    );
    context.principal = Some(Arc::new(principal));
    let session = SessionId::mint();
    context.session_id = Some(session);

    let events = [
        AuditEvent::new(EventKind::RequestCompleted {
            method: "tools/call".into(),
            target: Some(TOOL.into()),
            status: 200,
            latency_us: 5,
            outcome: Outcome::Ok,
            error_code: None,
        }),
        AuditEvent::new(EventKind::AuthFailure {
            reason: AuthFailureReason::Expired,
            user_agent: Some(AGENT.into()),
        }),
        AuditEvent::new(EventKind::RatelimitLimited {
            tier: "per_subject".into(),
            key_hash: redactor.hash_field(LIMIT_KEY).into(),
            hits: 3,
        }),
    ];
    for event in events {
        audit.submit(event.with_context(&context)).await.unwrap();
    }
    audit.shutdown().await.unwrap();

    let files = log_files(dir.path(), "audit").unwrap();
    let text = read_lines(&files).join("\n");
    let session_text = session.to_string();
    for canary in [
        SALT,
        SUBJECT,
        TOOL,
        AGENT,
        LIMIT_KEY,
        "198.51.100.23",
        session_text.as_str(),
    ] {
        assert!(!text.contains(canary), "{canary} leaked into the log");
    }

    let records = read_records(&files);
    assert_eq!(records[0]["subject"], redactor.hash_field(SUBJECT).as_str());
    assert_eq!(records[0]["target"], redactor.hash_field(TOOL).as_str());
    assert_eq!(
        records[0]["client_ip"],
        redactor.hash_field("198.51.100.23").as_str()
    );
    assert_eq!(
        records[1]["user_agent"],
        redactor.hash_field(AGENT).as_str()
    );
    assert_eq!(
        records[2]["key_hash"],
        redactor.hash_field(LIMIT_KEY).as_str()
    );
    assert_eq!(records[0]["request_id"], "000000000000feed");
    // The rejection detector fired on the subject, and its alert is hashed too.
    assert_eq!(records[3]["kind"], "security.alert");
    assert_eq!(records[3]["subject"], redactor.hash_field(SUBJECT).as_str());
}

#[tokio::test]
async fn detector_fires_once_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        detectors: DetectorsConfig {
            auth_failures_per_ip: DetectorConfig {
                enabled: true,
                threshold: NonZeroU64::new(3).unwrap(),
                window: Duration::from_secs(60),
            },
            ..DetectorsConfig::default()
        },
        ..config_in(dir.path())
    };
    let audit = AuditWriter::new(config).spawn().unwrap();
    let failure = |ip: &str, offset_secs: u64| {
        AuditEvent::new(EventKind::AuthFailure {
            reason: AuthFailureReason::InvalidSignature,
            user_agent: None,
        })
        .with_client_ip(ip.parse().unwrap())
        .at(base_time() + Duration::from_secs(offset_secs))
    };

    let schedule = [
        ("192.0.2.1", 0, 3),
        ("192.0.2.1", 30, 10),
        ("192.0.2.2", 30, 2),
        ("192.0.2.1", 100, 3),
    ];
    for (ip, offset, count) in schedule {
        for _ in 0..count {
            audit.submit(failure(ip, offset)).await.unwrap();
        }
    }
    audit.shutdown().await.unwrap();

    let records = read_records(&log_files(dir.path(), "audit").unwrap());
    let alerts: Vec<(u64, &serde_json::Value)> = records
        .iter()
        .filter(|record| record["kind"] == "security.alert")
        .map(|record| (record["seq"].as_u64().unwrap(), record))
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].0, 4, "the first alert follows the third failure");
    assert_eq!(alerts[1].0, 3 + 1 + 10 + 2 + 3 + 1);
    for (_, alert) in &alerts {
        assert_eq!(alert["client_ip"], "192.0.2.1");
        assert_eq!(alert["detector"], "auth_failures_per_ip");
        assert_eq!(alert["threshold"], 3);
        assert_eq!(alert["window_ms"], 60_000);
    }
    assert_eq!(alerts[0].1["count"], 3);
    assert_eq!(audit.metrics().alerts_auth_failures_per_ip, 2);
    assert_eq!(audit.metrics().alerts_rejections_per_subject, 0);
}
