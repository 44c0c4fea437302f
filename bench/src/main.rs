//! `ngit-sync-bench`: runs one scenario and prints its figures as one JSON line on stdout and a
//! summary on stderr; `ngit-sync-bench seed` publishes a corpus to running relays.

use std::process::ExitCode;

use clap::Parser;
use ngit_sync_bench::args::{Cli, Command};
use ngit_sync_bench::{scenario, seed};

#[tokio::main]
async fn main() -> ExitCode {
    // Quiet unless TEST_LOG is set: stdout is for the JSON, stderr for progress.
    ngit_sync_test_support::init_tracing();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Seed(args)) if args.check => match seed::check(args).await {
            Ok(report) => {
                // One line a script can read: `related=.. missing=.. unrelated=..`.
                println!(
                    "related={} missing={} unrelated={}",
                    report.related, report.missing, report.unrelated
                );
                if !report.complete() {
                    return ExitCode::FAILURE;
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        Some(Command::Seed(args)) => seed::run(args).await.map(|report| {
            println!(
                "{}",
                serde_json::to_string(&report).expect("a seed report serializes")
            );
        }),
        None => scenario::run(&cli.bench).await.map(|report| {
            println!("{}", report.to_json());
            eprint!("{}", report.summary());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ngit-sync-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
