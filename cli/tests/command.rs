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

/// `ngit-sync ping` with a real nats-server and two connector processes on two "hosts" (as
/// two containers of `--scale connector=2` are): both are listed, and `--here` finds only the
/// caller's own, so one broken replica is not covered by a healthy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_lists_every_replica_and_here_finds_only_this_hosts_own() -> anyhow::Result<()> {
    let nats = ngit_sync_test_support::NatsServer::start().await?;
    let mut workers = Vec::new();
    for host in ["alpha", "beta"] {
        workers.push(
            tokio::process::Command::new(BIN)
                .args(["run", "connector"])
                .env("NATS_URL", nats.url())
                .env("HOSTNAME", host)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let ping = |host: &str, here: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["ping", "connector"])
            .env("NATS_URL", nats.url())
            .env("HOSTNAME", host);
        if here {
            cmd.arg("--here");
        }
        cmd.output().expect("runs")
    };
    eventually(Duration::from_secs(20), "both replicas answer", || async {
        let out = ping("alpha", false);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success() && stdout.contains("host=alpha") && stdout.contains("host=beta")
    })
    .await?;
    assert!(ping("beta", true).status.success());
    let elsewhere = ping("gamma", true);
    assert!(!elsewhere.status.success(), "no connector runs on gamma");
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        stderr.contains("gamma") && stderr.contains("2 elsewhere"),
        "{stderr}"
    );

    // A replica that dies takes its host's health with it.
    workers[1].kill().await?;
    eventually(Duration::from_secs(10), "beta's check fails", || async {
        !ping("beta", true).status.success()
    })
    .await?;
    assert!(ping("alpha", true).status.success());
    Ok(())
}
