//! Developer and CI entry points for the Spharos workspace. `cargo xtask test` runs the whole
//! suite against a real PostgreSQL and NATS JetStream (found locally or started as throwaways);
//! `cargo xtask bench ...` measures release builds of `spharos` from the outside; `cargo xtask
//! crdgen` regenerates the operator's CRD YAML.
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
    about = "Spharos developer and CI tasks: the one test entry, the benchmarks, the CRD generator.",
    after_help = "Examples:\n  cargo xtask test\n  cargo xtask bench points --postgres --clients 32\n  cargo xtask crdgen"
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
    #[command(
        after_help = "Examples:\n  cargo xtask bench startup\n  cargo xtask bench member --postgres --clients 32\n  cargo xtask bench points --postgres --clients 32 --duration 10\n  cargo xtask bench coupon --postgres --clients 32 --duration 10 --quantity 5000"
    )]
    Bench {
        #[command(subcommand)]
        task: bench::BenchTask,
    },
    /// Regenerate the MembershipTenant CRD YAML from the operator's Rust types.
    #[command(
        long_about = "Regenerate charts/spharos/crds/membershiptenants.yaml from the Rust types of \
                      the operator (`cargo run -p spharos-operator --bin crdgen`). With --check, \
                      only compare and fail when the file has drifted (the test suite checks the \
                      same).",
        after_help = "Examples:\n  cargo xtask crdgen\n  cargo xtask crdgen --check"
    )]
    Crdgen {
        /// Compare instead of writing; exit 1 when the checked-in YAML differs.
        #[arg(long)]
        check: bool,
    },
}

/// Where the generated CRD lives (the chart installs it from there).
const CRD_PATH: &str = "charts/spharos/crds/membershiptenants.yaml";

/// `cargo xtask crdgen [--check]`.
fn crdgen(check: bool) -> Result<ExitCode> {
    let mut cmd = Command::new(sys::cargo());
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "spharos-operator",
        "--bin",
        "crdgen",
    ])
    .current_dir(sys::workspace_root())
    .stderr(Stdio::inherit());
    eprintln!("xtask: {}", sys::describe(&cmd));
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!("crdgen failed ({})", out.status);
    }
    let path = sys::workspace_root().join(CRD_PATH);
    let current = std::fs::read(&path).unwrap_or_default();
    if check {
        if current == out.stdout {
            eprintln!("xtask: {CRD_PATH} is up to date");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("xtask: {CRD_PATH} has drifted from the Rust types; run `cargo xtask crdgen`");
        return Ok(ExitCode::FAILURE);
    }
    if current == out.stdout {
        eprintln!("xtask: {CRD_PATH} unchanged");
    } else {
        std::fs::write(&path, &out.stdout)?;
        eprintln!("xtask: wrote {CRD_PATH}");
    }
    Ok(ExitCode::SUCCESS)
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
        Task::Crdgen { check } => crdgen(check),
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
