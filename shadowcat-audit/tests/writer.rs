//! The writer end to end: draining on shutdown, rotation, restarts, and both modes.

mod common;

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use common::{GatedOutput, base_time, completed, config_in, read_lines, read_records, write_log};
use shadowcat_audit::{
    AuditError, AuditWriter, Fsync, ManualClock, Mode, Rotation, log_files, verify,
};

#[tokio::test]
async fn shutdown_drains_every_accepted_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = shadowcat_audit::AuditConfig {
        queue_capacity: NonZeroUsize::new(16).unwrap(),
        fsync: Fsync::Always,
        ..config_in(dir.path())
    };
    let audit = AuditWriter::new(config).spawn().unwrap();
    for n in 0..500 {
        audit.submit(completed(n)).await.unwrap();
    }
    audit.shutdown().await.unwrap();

    let files = log_files(dir.path(), "audit").unwrap();
    let records = read_records(&files);
    assert_eq!(records.len(), 500);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["seq"], index as u64 + 1);
        assert_eq!(record["latency_us"], index as u64);
    }
    let report = verify(&files, None).unwrap();
    assert_eq!(report.records, 500);
    assert_eq!(audit.metrics().written, 500);
}

#[tokio::test]
async fn records_after_shutdown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditWriter::new(config_in(dir.path())).spawn().unwrap();
    audit.shutdown().await.unwrap();
    audit.shutdown().await.unwrap();

    assert!(matches!(
        audit.submit(completed(1)).await,
        Err(AuditError::Closed)
    ));
    audit.record(completed(2));
    let metrics = audit.metrics();
    assert_eq!(metrics.audit_unavailable, 1);
    assert_eq!(metrics.dropped, 2);
}

#[test]
fn size_rotation_keeps_records_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = shadowcat_audit::AuditConfig {
        rotation: Rotation::Size,
        max_file_bytes: NonZeroU64::new(700).unwrap(),
        ..config_in(dir.path())
    };
    let files = write_log(config, 40);

    assert!(files.len() >= 10, "only {} files", files.len());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() <= 700,
            "{} has {} bytes",
            path.display(),
            bytes.len()
        );
        assert!(bytes.ends_with(b"\n"), "{} ends mid-record", path.display());
    }
    let report = verify(&files, None).unwrap();
    assert_eq!(report.records, 40);
    assert_eq!(report.files, files.len());
}

#[test]
fn oversized_record_gets_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = shadowcat_audit::AuditConfig {
        rotation: Rotation::Size,
        max_file_bytes: NonZeroU64::new(50).unwrap(),
        ..config_in(dir.path())
    };
    let files = write_log(config, 3);
    assert_eq!(files.len(), 3);
    assert_eq!(verify(&files, None).unwrap().records, 3);
}

#[tokio::test]
async fn hourly_rotation_follows_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(base_time()));
    let config = shadowcat_audit::AuditConfig {
        rotation: Rotation::Hourly,
        ..config_in(dir.path())
    };
    let audit = AuditWriter::new(config)
        .clock(clock.clone())
        .spawn()
        .unwrap();

    for n in 0..3 {
        audit.submit(completed(n)).await.unwrap();
    }
    audit.flush().await.unwrap();
    clock.advance(Duration::from_secs(3600));
    for n in 3..5 {
        audit.submit(completed(n)).await.unwrap();
    }
    audit.flush().await.unwrap();
    clock.advance(Duration::from_secs(1800));
    audit.submit(completed(5)).await.unwrap();
    audit.shutdown().await.unwrap();

    let files = log_files(dir.path(), "audit").unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(read_lines(&files[..1]).len(), 3);
    assert_eq!(read_lines(&files[1..]).len(), 3);
    let names: Vec<_> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names[0],
        "audit-00000000000000000001-20270115T080000Z.jsonl"
    );
    assert_eq!(
        names[1],
        "audit-00000000000000000004-20270115T090000Z.jsonl"
    );
    assert_eq!(verify(&files, None).unwrap().records, 6);
}

#[test]
fn restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_log(config_in(dir.path()), 10);
    let files = write_log(config_in(dir.path()), 5);

    assert_eq!(files.len(), 2);
    let report = verify(&files, None).unwrap();
    assert_eq!(report.records, 15);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(15));

    let first = read_records(&files[..1]);
    let second = read_records(&files[1..]);
    assert_eq!(second[0]["seq"], 11);
    assert_eq!(second[0]["prev"], first[9]["hash"]);
}

#[test]
fn restart_after_partial_line_resumes_from_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(config_in(dir.path()), 5);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(b"{\"v\":1,\"seq\":6,\"ts\"");
    std::fs::write(&files[0], bytes).unwrap();

    let files = write_log(config_in(dir.path()), 3);
    assert_eq!(files.len(), 2);

    let failure = verify(&files, None).unwrap_err();
    assert_eq!(failure.path, files[0]);
    assert_eq!(failure.line, 6);
    assert_eq!(failure.problem, shadowcat_audit::Problem::Truncated);

    let report = verify(&files[1..], None).unwrap();
    assert_eq!(report.first_seq, Some(6));
    assert_eq!(report.records, 3);
}

#[test]
fn restart_refuses_a_foreign_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_log(config_in(dir.path()), 2);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(b"not a record\n");
    std::fs::write(&files[0], bytes).unwrap();

    let error = AuditWriter::new(config_in(dir.path())).spawn().unwrap_err();
    assert!(matches!(error, AuditError::Resume { .. }), "{error}");
    assert!(
        error.to_string().contains(&*files[0].to_string_lossy()),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn lossless_submit_times_out_when_writer_stalls() {
    let output = GatedOutput::default();
    let config = shadowcat_audit::AuditConfig {
        file: false,
        queue_capacity: NonZeroUsize::new(4).unwrap(),
        backpressure_timeout: Duration::from_secs(5),
        ..shadowcat_audit::AuditConfig::default()
    };
    let audit = AuditWriter::new(config)
        .line_output(Box::new(output.clone()))
        .spawn()
        .unwrap();

    let mut accepted = 0;
    let mut failure = None;
    for n in 0..100 {
        match audit.submit(completed(n)).await {
            Ok(()) => accepted += 1,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("the queue never filled");
    assert!(
        matches!(failure, AuditError::Unavailable { timeout } if timeout == Duration::from_secs(5)),
        "{failure}"
    );
    assert!(accepted >= 4, "accepted {accepted}");
    assert_eq!(audit.metrics().audit_unavailable, 1);
    assert_eq!(audit.metrics().dropped, 0);

    output.open();
    audit.shutdown().await.unwrap();
    assert_eq!(output.lines().len(), accepted);
}

#[tokio::test]
async fn lossy_mode_counts_drops_in_one_record() {
    let output = GatedOutput::default();
    let config = shadowcat_audit::AuditConfig {
        file: false,
        mode: Mode::Lossy,
        queue_capacity: NonZeroUsize::new(4).unwrap(),
        ..shadowcat_audit::AuditConfig::default()
    };
    let audit = AuditWriter::new(config)
        .line_output(Box::new(output.clone()))
        .spawn()
        .unwrap();

    for n in 0..50 {
        audit.submit(completed(n)).await.unwrap();
    }
    for n in 50..100 {
        audit.record(completed(n));
    }
    // The stalled writer keeps at most one batch (up to the queue capacity) and the
    // queue takes 4 more, so at least 92 of 100 are dropped.
    let dropped = audit.metrics().dropped;
    assert!(dropped >= 92, "dropped {dropped}");

    output.open();
    audit.shutdown().await.unwrap();

    let records: Vec<serde_json::Value> = output
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let reported: u64 = records
        .iter()
        .filter(|record| record["kind"] == "audit.dropped")
        .map(|record| record["count"].as_u64().unwrap())
        .sum();
    let completed_records = records
        .iter()
        .filter(|record| record["kind"] == "request.completed")
        .count() as u64;
    assert_eq!(reported, dropped);
    assert_eq!(completed_records + dropped, 100);
    assert_eq!(audit.metrics().audit_unavailable, 0);
}

#[tokio::test]
async fn stdout_and_file_get_the_same_lines() {
    let dir = tempfile::tempdir().unwrap();
    let output = GatedOutput::default();
    output.open();
    let audit = AuditWriter::new(config_in(dir.path()))
        .line_output(Box::new(output.clone()))
        .spawn()
        .unwrap();
    for n in 0..20 {
        audit.submit(completed(n)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let files = log_files(dir.path(), "audit").unwrap();
    assert_eq!(read_lines(&files), output.lines());
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_render_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditWriter::new(config_in(dir.path())).spawn().unwrap();
    for n in 0..3 {
        audit.submit(completed(n)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let mut text = String::new();
    audit.render_prometheus(&mut text);
    assert!(
        text.contains("shadowcat_audit_records_written_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("shadowcat_audit_queue_capacity 8192\n"),
        "{text}"
    );
    assert!(
        text.contains("shadowcat_audit_write_seconds_count "),
        "{text}"
    );
    audit.shutdown().await.unwrap();
}

/// A line output whose every write fails, like a full disk.
struct FailingOutput;

impl std::io::Write for FailingOutput {
    fn write(&mut self, _bytes: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("simulated device failure"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failing_output_reports_lost_records() {
    let config = shadowcat_audit::AuditConfig {
        file: false,
        ..shadowcat_audit::AuditConfig::default()
    };
    let audit = AuditWriter::new(config)
        .line_output(Box::new(FailingOutput))
        .spawn()
        .unwrap();
    for n in 0..5 {
        audit.submit(completed(n)).await.unwrap();
    }

    let error = audit.shutdown().await.unwrap_err();
    let AuditError::Lost { lost, reason } = &error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*lost, 5);
    assert!(reason.contains("simulated device failure"), "{reason}");
    assert!(audit.metrics().write_errors >= 3);
    assert_eq!(audit.metrics().written, 0);
    assert!(matches!(audit.flush().await, Err(AuditError::Closed)));
}
