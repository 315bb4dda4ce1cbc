//! Developer and CI entry points for the Spharos workspace. `cargo xtask test` runs the whole
//! suite against a real PostgreSQL and NATS JetStream (found locally or started as throwaways);
//! `cargo xtask bench ...` measures release builds of `spharos` from the outside.
#![forbid(unsafe_code)]

mod bench;
mod services;
mod sys;

use std::process::{Command, ExitCode, Stdio};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Exit code for a bad command line (BSD sysexits EX_USAGE), as in `spharos` itself.
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Spharos developer and CI tasks: the one test entry and the benchmarks.",
    after_help = "Example:\n  cargo xtask test"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the whole test suite against real PostgreSQL and NATS JetStream.
    #[command(
        long_about = "Run the whole workspace test suite (cargo nextest, else cargo test) against a real \
                      PostgreSQL and NATS JetStream. Uses $SPHAROS_TEST_DATABASE_URL and \
                      $SPHAROS_TEST_NATS_URL when set, else the servers on 127.0.0.1:5432 and \
                      127.0.0.1:4222, else starts throwaway ones in temp dirs (installing Debian's \
                      postgresql / nats-server when missing) and removes them afterwards. Arguments \
                      after `--` go to the test runner; the exit code is the runner's.",
        after_help = "Example:\n  cargo xtask test -- -E 'package(spharos-kit)'"
    )]
    Test(TestArgs),
    /// Benchmarks of the release `spharos` binary (results in target/bench/).
    #[command(after_help = "Example:\n  cargo xtask bench startup")]
    Bench {
        #[command(subcommand)]
        task: bench::BenchTask,
    },
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Ignore $SPHAROS_TEST_* and running servers; always start throwaway PostgreSQL and NATS.
    #[arg(long, hide = true)]
    force_throwaway: bool,
    /// Prepare and check PostgreSQL and NATS, then stop without running the tests.
    #[arg(long, hide = true)]
    services_only: bool,
    /// Passed to `cargo nextest run` (or `cargo test`).
    #[arg(last = true, value_name = "RUNNER_ARGS")]
    runner_args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors (exit 0); everything else is a usage error.
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USAGE)
            };
        }
    };
    sys::install_signal_handler();
    let result = match cli.task {
        Task::Test(args) => test(&args),
        Task::Bench { task } => bench::run(task).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn test(args: &TestArgs) -> Result<ExitCode> {
    // Dropped at the end of this function, after the runner: throwaway servers stop and their
    // temp dirs go, whatever the tests did.
    let backends = services::Backends::prepare(args.force_throwaway)?;
    if args.services_only {
        eprintln!("xtask: --services-only given: PostgreSQL and NATS are ready; not running tests");
        return Ok(ExitCode::SUCCESS);
    }

    let cargo = sys::cargo();
    let has_nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = Command::new(&cargo);
    if has_nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not installed; falling back to cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(&args.runner_args)
        .current_dir(sys::workspace_root());
    backends.apply_env(&mut cmd);
    eprintln!(
        "xtask: running {} with {}={} {}={} {}={}",
        sys::describe(&cmd),
        services::DATABASE_URL_VAR,
        sys::redact_url(&backends.database_url),
        services::NATS_URL_VAR,
        sys::redact_url(&backends.nats_url),
        services::NATS_SERVER_BIN_VAR,
        backends.nats_server_bin.display()
    );
    let status = sys::run_foreground(&mut cmd)?;
    drop(backends);
    if sys::interrupted() {
        return Ok(ExitCode::from(130));
    }
    Ok(sys::exit_code(status))
}
