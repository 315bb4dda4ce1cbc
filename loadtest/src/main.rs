//! `spharos-loadtest`: load generator for the Spharos gRPC APIs.
//!
//! Flow of a run: parse the command line (exit 64 on a usage error), connect to the endpoint
//! (exit 1 if unreachable), let the scenario seed its data (exit 1 if that fails), run each
//! measured phase through the generic driver, let the scenario check the service's state
//! against what the run did, print the table and the checks to stdout and, with `--json`, write
//! the whole result; exit 1 if a check failed. Progress goes to stderr once a second. Ctrl-C
//! ends the current phase early, skips the checks, prints what was measured and exits 130.
//!
//! Modules: [`cli`] (flags), [`connect`] (channels, bearer token), [`driver`] (closed loop and
//! fixed-rate pacing, warm-up, progress), [`scenario`] (the [`scenario::Scenario`] trait and the
//! scenarios), [`report`] (histogram percentiles, table, JSON), [`phone`] (unique phone numbers).
#![forbid(unsafe_code)]

mod cli;
mod connect;
mod driver;
mod phone;
mod report;
mod scenario;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, CommonArgs};
use crate::connect::Pool;
use crate::driver::Load;
use crate::report::Verification;
use crate::report::{RunConfig, RunReport};
use crate::scenario::Scenario;

/// Exit code for usage errors (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Exit code for an unreachable target, a failed seed or a failed output.
const EXIT_FAILURE: u8 = 1;
/// Exit code after Ctrl-C (128 + SIGINT); the results measured so far are still printed.
const EXIT_INTERRUPTED: u8 = 130;

/// The run was interrupted by Ctrl-C.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print to stdout and are not errors.
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadtest")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("spharos-loadtest: cannot start the tokio runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for stray tasks (a client stuck past its deadline) at shutdown.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spharos-loadtest: {error:#}");
            if error.is::<Interrupted>() {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: finishing the current phase early");
            on_signal.cancel();
        }
    });

    match cli.command {
        Command::Member(args) => {
            let common = args.common;
            let pool = connect(&common).await?;
            let scenario =
                scenario::member::MemberScenario::new(pool.clone(), args.seed_members as usize);
            let extra = BTreeMap::from([(
                "seed_members".to_owned(),
                serde_json::json!(args.seed_members),
            )]);
            run_scenario(Box::new(scenario), &common, &pool, extra, &cancel).await
        }
        Command::Points(args) => {
            let common = args.common;
            let pool = connect(&common).await?;
            let options = scenario::points::PointsOptions {
                seed_members: args.seed_members as usize,
                seed_amount_krw: args.seed_amount_krw,
                spend_points: args.spend_points,
                phases: args.phases.clone(),
            };
            let scenario = scenario::points::PointsScenario::new(pool.clone(), options);
            let extra = BTreeMap::from([
                (
                    "seed_members".to_owned(),
                    serde_json::json!(args.seed_members),
                ),
                (
                    "seed_amount_krw".to_owned(),
                    serde_json::json!(args.seed_amount_krw),
                ),
                (
                    "spend_points".to_owned(),
                    serde_json::json!(args.spend_points),
                ),
                ("phases".to_owned(), serde_json::json!(args.phases)),
            ]);
            run_scenario(Box::new(scenario), &common, &pool, extra, &cancel).await
        }
        Command::Coupon(args) => {
            let common = args.common;
            let pool = connect(&common).await?;
            let options = scenario::coupon::CouponOptions {
                quantity: args.quantity,
                repeat_percent: args.repeat_percent,
                claim_after_sold_out: args.claim_after_sold_out,
            };
            let scenario = scenario::coupon::CouponScenario::new(pool.clone(), options);
            let extra = BTreeMap::from([
                ("quantity".to_owned(), serde_json::json!(args.quantity)),
                (
                    "repeat_percent".to_owned(),
                    serde_json::json!(args.repeat_percent),
                ),
                (
                    "claim_after_sold_out".to_owned(),
                    serde_json::json!(args.claim_after_sold_out),
                ),
            ]);
            run_scenario(Box::new(scenario), &common, &pool, extra, &cancel).await
        }
    }
}

/// Opens the connections (`--connections`, at most one per client).
async fn connect(common: &CommonArgs) -> anyhow::Result<Pool> {
    let connections = common.connections.min(common.clients) as usize;
    Pool::connect(
        &common.endpoint,
        &common.token,
        connections,
        Duration::from_secs(common.timeout),
    )
    .await
}

/// Seeds, runs every phase, prints and writes the results.
async fn run_scenario(
    mut scenario: Box<dyn Scenario>,
    common: &CommonArgs,
    pool: &Pool,
    scenario_config: BTreeMap<String, serde_json::Value>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mode = common.rate.map_or_else(
        || "closed loop".to_owned(),
        |r| format!("fixed rate {} req/s", report::format_rate(r)),
    );
    eprintln!(
        "{}: {} client(s) over {} connection(s) to {}, {mode}, warm-up {}s, {}s per phase",
        scenario.name(),
        common.clients,
        pool.connections(),
        common.endpoint,
        common.warmup,
        common.duration
    );

    eprintln!("seeding ...");
    let seed = tokio::select! {
        seed = scenario.seed() => seed?,
        () = cancel.cancelled() => return Err(Interrupted.into()),
    };
    let created: Vec<String> = seed
        .created
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    eprintln!("seeded in {:.1}s: {}", seed.seconds, created.join(", "));

    let load = Load {
        clients: common.clients as usize,
        warmup: Duration::from_secs(common.warmup),
        duration: Duration::from_secs(common.duration),
        rate: common.rate,
        request_timeout: Duration::from_secs(common.timeout),
    };
    let mut phases = Vec::new();
    for phase in scenario.phases() {
        if cancel.is_cancelled() {
            break;
        }
        phases.push(driver::run_phase(&phase, &load, cancel).await);
    }

    print!("{}", report::render_table(&phases));
    // A check that cannot run still leaves the measurements written (below), then fails.
    let (verification, verify_error) = if cancel.is_cancelled() {
        (Verification::default(), None)
    } else {
        eprintln!("checking ...");
        tokio::select! {
            checked = scenario.verify(&phases) => match checked {
                Ok(verification) => (verification, None),
                Err(error) => (Verification::default(), Some(error)),
            },
            () = cancel.cancelled() => (Verification::default(), None),
        }
    };
    print!("{}", report::render_verification(&verification));
    let run = RunReport {
        tool: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        scenario: scenario.name().to_owned(),
        started_unix_ms,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        config: RunConfig {
            endpoint: common.endpoint.clone(),
            clients: common.clients,
            connections: u32::try_from(pool.connections()).unwrap_or(u32::MAX),
            warmup_seconds: common.warmup,
            duration_seconds: common.duration,
            rate_rps: common.rate,
            request_timeout_seconds: common.timeout,
            scenario: scenario_config,
        },
        seed,
        phases,
        verification,
    };
    if let Some(path) = &common.json {
        report::write_json(path, &run)?;
        eprintln!("wrote {}", path.display());
    }
    if cancel.is_cancelled() {
        return Err(Interrupted.into());
    }
    if let Some(error) = verify_error {
        return Err(error);
    }
    let failed = run.verification.failed();
    if !failed.is_empty() {
        bail!("consistency check failed: {}", failed.join(", "));
    }
    // A phase of only expected refusals (a sold-out rush) did what it should.
    if let Some(dead) = run
        .phases
        .iter()
        .find(|p| p.ok == 0 && p.rejected_count() == 0 && p.requests > 0)
    {
        let codes: Vec<String> = dead
            .errors
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        bail!(
            "phase {}: no request succeeded ({})",
            dead.name,
            codes.join(", ")
        );
    }
    Ok(())
}
