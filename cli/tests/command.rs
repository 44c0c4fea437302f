//! The `ngit-sync` binary as an operator runs it: `up` with no arguments, and bad configuration.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ngit_sync_test_support::{eventually, free_port, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_ngit-sync");

#[tokio::test]
async fn up_with_no_arguments_serves_metrics_and_stops_on_sigterm_within_10s() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut child = tokio::process::Command::new(BIN)
        .arg("up")
        .current_dir(dir.path())
        // Only the metrics port is pinned, so parallel tests do not collide; everything else is default.
        .env("NGIT_SYNC_METRICS_ADDR", &metrics)
        .env_remove("NATS_URL")
        .env_remove("NGIT_SYNC_HOME_RELAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let addr = metrics.parse()?;
    eventually(Duration::from_secs(30), "/metrics answers", || async {
        matches!(http_get(addr, "/metrics").await, Ok((200, body)) if body.contains("ngit_sync_relays_tracked_total"))
    })
    .await?;
    assert!(
        dir.path().join("data").join("nats").is_dir(),
        "a local nats-server keeps its store under ./data"
    );
    assert!(
        dir.path().join("data").join("home-relay").is_dir(),
        "the embedded home relay keeps its store under ./data"
    );

    let pid = child.id().expect("running").to_string();
    let sent = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?
        .success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(status.success(), "clean exit, got {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    Ok(())
}

fn up_with(var: &str, value: &str) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("up")
        .env(var, value)
        .env("NGIT_SYNC_METRICS_ADDR", "127.0.0.1:0")
        .output()
        .expect("runs")
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("NATS_URL", "::not a url"),
        ("NGIT_SYNC_BOOTSTRAP_RELAYS", "http://x"),
        ("NGIT_SYNC_WIRE", "xml"),
    ] {
        let out = up_with(var, value);
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {var}: {stderr}");
        assert!(lines[0].contains(var), "{var} named in {stderr}");
    }
}

#[test]
fn run_of_an_unknown_service_or_with_bad_settings_exits_2() {
    let out = std::process::Command::new(BIN)
        .args(["run", "nosuch"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    let out = std::process::Command::new(BIN)
        .args(["run", "sink"])
        .env_remove("NGIT_SYNC_HOME_RELAY")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "the sink needs a home relay");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NGIT_SYNC_HOME_RELAY"));
}
