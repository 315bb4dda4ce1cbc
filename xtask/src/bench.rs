//! `cargo xtask bench`: release builds of `spharos` measured from the outside (start-up time and
//! idle memory; the member, points and coupon scenarios driven by `spharos-loadtest`). Results
//! land in `target/bench/*.json` under the workspace.
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use tempfile::TempDir;

use crate::{services, sys};

#[derive(Debug, Subcommand)]
pub enum BenchTask {
    /// Time `spharos serve` from start to ready, and its idle memory.
    #[command(
        long_about = "Build `spharos` in release, then start `spharos serve` (embedded default: SQLite \
                      under ./data and the in-process bus) in a fresh temp dir several times. Each run \
                      polls GET /readyz every 5 ms until 200, records start→ready time, idles 3 s, reads \
                      VmRSS, and stops the server with SIGTERM. Prints min/median/max and writes \
                      target/bench/startup.json.",
        after_help = "Example:\n  cargo xtask bench startup --runs 5"
    )]
    Startup(StartupArgs),
    /// Drive the member service with `spharos-loadtest member`.
    #[command(
        long_about = "Build `spharos` and `spharos-loadtest` in release, start `spharos serve` in a temp \
                      dir (embedded SQLite and in-process bus, or PostgreSQL and NATS JetStream with \
                      --postgres), mint a token for a new tenant with `spharos tenant token`, run \
                      `spharos-loadtest member` against the gRPC port, and stop the server. The \
                      load generator writes target/bench/member.json.",
        after_help = "Example:\n  cargo xtask bench member --clients 32 --duration 30 --postgres"
    )]
    Member(MemberArgs),
    /// Drive the points service with `spharos-loadtest points`.
    #[command(
        long_about = "Build `spharos` and `spharos-loadtest` in release, start `spharos serve --target all` \
                      in a temp dir (embedded SQLite and in-process bus, or PostgreSQL and NATS \
                      JetStream with --postgres; the points module resolves members through the \
                      member module in the same process), mint a token for a new tenant with the \
                      points:admin permission (the scenario sets the tenant's points policy), run \
                      `spharos-loadtest points` (phases earn, spend, balance, pos-mixed, then the \
                      balance check) against the gRPC port, and stop the server. The load generator \
                      writes target/bench/points.json.",
        after_help = "Examples:\n  cargo xtask bench points --postgres --clients 32 --duration 10\n  cargo xtask bench points --postgres --clients 1 --duration 10 --seed-members 1000"
    )]
    Points(PointsArgs),
    /// Drive the coupon service with `spharos-loadtest coupon`.
    #[command(
        long_about = "Build `spharos` and `spharos-loadtest` in release, start `spharos serve --target all` \
                      in a temp dir (embedded, or PostgreSQL and NATS JetStream with --postgres), \
                      mint a token for a new tenant, run `spharos-loadtest coupon` (a claim rush on \
                      a template of --quantity coupons, one per member, then validate and redeem, \
                      then the issued-count check) against the gRPC port, and stop the server. The \
                      load generator writes target/bench/coupon.json.",
        after_help = "Examples:\n  cargo xtask bench coupon --postgres --clients 32 --duration 10 --quantity 5000\n  cargo xtask bench coupon --postgres --clients 1 --duration 10 --quantity 2000"
    )]
    Coupon(CouponArgs),
}

#[derive(Debug, Args)]
pub struct StartupArgs {
    /// How many cold starts to measure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct PointsArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Members the scenario signs up and spreads its calls over (loadtest default when unset).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    seed_members: Option<u32>,
    /// Only these phases of the points scenario, comma-separated (earn, spend, balance,
    /// pos-mixed); all when unset.
    #[arg(long)]
    phases: Option<String>,
}

#[derive(Debug, Args)]
pub struct CouponArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Coupons of the claimed template; pick it so the rush sells out within --duration
    /// (loadtest default when unset).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    quantity: Option<u64>,
}

/// What every loadtest-driven bench takes.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Concurrent gRPC clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// How long to drive load, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    duration: u32,
    /// Use PostgreSQL (a fresh `bench_<random>` database on the test server) and NATS JetStream
    /// instead of the embedded SQLite and in-process bus.
    #[arg(long)]
    postgres: bool,
    /// With --postgres: first measure pgbench's TPC-B-like transactions at the same client count
    /// on the same PostgreSQL (a scratch database, scale = clients), then print every phase's
    /// throughput as a ratio of it (the load-test issue's targets are such ratios).
    #[arg(long, requires = "postgres")]
    baseline: bool,
    /// HTTP/2 connections the clients share round-robin (loadtest default, one, when unset;
    /// `--connections <clients>` gives each client its own, as pgbench does).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: Option<u32>,
}

pub fn run(task: BenchTask) -> Result<()> {
    match task {
        BenchTask::Startup(args) => startup(&args),
        BenchTask::Member(args) => loadtest_bench("member", &args.load, &[], &[]),
        BenchTask::Points(args) => {
            let mut extra = Vec::new();
            if let Some(n) = args.seed_members {
                extra.extend(["--seed-members".to_owned(), n.to_string()]);
            }
            if let Some(phases) = &args.phases {
                extra.extend(["--phases".to_owned(), phases.clone()]);
            }
            // The scenario sets the tenant's points policy, a points:admin operation.
            loadtest_bench("points", &args.load, &["points:admin"], &extra)
        }
        BenchTask::Coupon(args) => {
            let mut extra = Vec::new();
            if let Some(n) = args.quantity {
                extra.extend(["--quantity".to_owned(), n.to_string()]);
            }
            loadtest_bench("coupon", &args.load, &[], &extra)
        }
    }
}

const IDLE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(5);

fn startup(args: &StartupArgs) -> Result<()> {
    // The same package set as every bench, so features unify the same way and the release
    // build is reused instead of rebuilt.
    build_release(&["spharos", "spharos-loadtest"])?;
    let bin = release_bin("spharos")?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        sys::bail_if_interrupted()?;
        let work = bench_dir()?;
        let config = write_config(work.path(), None)?;
        let (mut server, spawned) = Server::start(&bin, work.path(), &config)?;
        let ready = server.wait_ready(spawned, Duration::from_secs(60))?;
        sleep_interruptible(IDLE)?;
        let rss_kib = server.rss_kib()?;
        let (status, stop) = server.stop()?;
        let rss_mib = rss_kib as f64 / 1024.0;
        let ready_ms = ready.as_secs_f64() * 1000.0;
        let stop_ms = stop.as_secs_f64() * 1000.0;
        eprintln!(
            "xtask: run {i}/{}: ready in {ready_ms:.1} ms, idle RSS {rss_mib:.1} MiB, stopped in {stop_ms:.0} ms ({status})",
            args.runs
        );
        runs.push((ready_ms, rss_mib, stop_ms, status.success()));
    }

    let ready = Stats::of(runs.iter().map(|r| r.0));
    let rss = Stats::of(runs.iter().map(|r| r.1));
    println!();
    println!(
        "spharos serve start-up, {} cold runs (embedded SQLite + in-process bus)",
        runs.len()
    );
    println!("{:<14}{:>10}{:>10}{:>10}", "", "min", "median", "max");
    println!(
        "{:<14}{:>10.1}{:>10.1}{:>10.1}",
        "ready (ms)", ready.min, ready.median, ready.max
    );
    println!(
        "{:<14}{:>10.1}{:>10.1}{:>10.1}",
        "RSS (MiB)", rss.min, rss.median, rss.max
    );

    let report = json!({
        "benchmark": "startup",
        "binary": bin,
        "runs": runs.len(),
        "idle_seconds_before_rss": IDLE.as_secs(),
        "poll_interval_ms": POLL.as_millis() as u64,
        "unix_time": unix_time(),
        "ready_ms": ready.to_json(runs.iter().map(|r| r.0)),
        "rss_mib": rss.to_json(runs.iter().map(|r| r.1)),
        "stop_ms": runs.iter().map(|r| (r.2 * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "clean_exit": runs.iter().all(|r| r.3),
    });
    let out = write_report("startup.json", &report)?;
    println!("\nxtask: wrote {}", out.display());
    if !runs.iter().all(|r| r.3) {
        bail!("spharos did not exit cleanly on SIGTERM in every run (see the lines above)");
    }
    Ok(())
}

/// Runs `spharos-loadtest <scenario>` against a fresh release `spharos serve`, with a token of a
/// new tenant holding `permissions`; `extra` goes to the load generator as is.
fn loadtest_bench(
    scenario: &str,
    args: &LoadArgs,
    permissions: &[&str],
    extra: &[String],
) -> Result<()> {
    build_release(&["spharos", "spharos-loadtest"])?;
    let bin = release_bin("spharos")?;
    let loadtest = release_bin("spharos-loadtest")?;

    let backends = if args.postgres {
        Some(services::Backends::prepare(false)?)
    } else {
        None
    };
    // Measured before the server starts, so the two never share the cores.
    let baseline = match (&backends, args.baseline) {
        (Some(b), true) => Some(pgbench_tpcb(&b.database_url, args.clients, args.duration)?),
        _ => None,
    };
    let database = match &backends {
        Some(b) => Some(BenchDatabase::create(&b.database_url)?),
        None => None,
    };
    let external = match (&backends, &database) {
        (Some(b), Some(db)) => Some((db.url.as_str(), b.nats_url.as_str())),
        _ => None,
    };

    let work = bench_dir()?;
    let config = write_config(work.path(), external)?;
    let (mut server, spawned) = Server::start(&bin, work.path(), &config)?;
    let ready = server.wait_ready(spawned, Duration::from_secs(120))?;
    eprintln!(
        "xtask: spharos ready in {:.0} ms",
        ready.as_secs_f64() * 1000.0
    );

    let tenant = uuid::Uuid::new_v4();
    let token = mint_token(&bin, work.path(), &config, tenant, permissions)?;
    eprintln!("xtask: minted a token for tenant {tenant}");

    let report = sys::workspace_root().join(format!("target/bench/{scenario}.json"));
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let endpoint = format!("http://{}", server.grpc);
    let mut extra = extra.to_vec();
    if let Some(n) = args.connections {
        extra.extend(["--connections".to_owned(), n.to_string()]);
    }
    let mut cmd = Command::new(&loadtest);
    cmd.arg(scenario)
        .args(["--endpoint", &endpoint, "--token", &token])
        .args(["--clients", &args.clients.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(&extra)
        .arg("--json")
        .arg(&report)
        .stdin(Stdio::null());
    eprintln!(
        "xtask: running {} {scenario} --endpoint {endpoint} --clients {} --duration {} {}--json {}",
        loadtest.display(),
        args.clients,
        args.duration,
        extra.iter().map(|a| format!("{a} ")).collect::<String>(),
        report.display()
    );
    let load = sys::run_foreground(&mut cmd);
    // Read before the process ends: the most memory it held and the CPU it used (seed, warm-up
    // and phases together).
    match (server.peak_rss_kib(), server.cpu_seconds()) {
        (Ok(peak), Ok(cpu)) => eprintln!(
            "xtask: spharos peak RSS {:.1} MiB, {cpu:.1} s of CPU over the run",
            peak as f64 / 1024.0
        ),
        (Err(e), _) | (_, Err(e)) => eprintln!("xtask: warning: {e:#}"),
    }
    // How the group-commit batches went (spharos_kit::telemetry's histograms).
    match http_get(server.http, "/metrics") {
        Some((200, text)) => {
            for g in group_commits(&text) {
                eprintln!(
                    "xtask: group commit ({}): {:.0} batches, on average {:.1} writes and {:.2} ms each",
                    g.service,
                    g.batches,
                    g.writes / g.batches,
                    1000.0 * g.seconds / g.batches
                );
            }
        }
        _ => eprintln!("xtask: warning: cannot read http://{}/metrics", server.http),
    }

    let (status, _) = server.stop()?;
    if !status.success() {
        eprintln!(
            "xtask: warning: spharos exited with {status} on SIGTERM\n--- end of its log:\n{}",
            sys::tail(&server.log, 20)
        );
    }
    let kept = report.with_extension("spharos.log");
    match std::fs::copy(&server.log, &kept) {
        Ok(_) => eprintln!("xtask: the server's log is kept at {}", kept.display()),
        Err(e) => eprintln!("xtask: warning: cannot keep the server's log: {e}"),
    }
    if let Some(db) = &database {
        // The statistics keeper's work (spharos_kit::statistics), as PostgreSQL counted it.
        let sql = "SELECT coalesce(sum(analyze_count + autoanalyze_count), 0) || ' analyses of ' \
                   || count(*) FILTER (WHERE analyze_count + autoanalyze_count > 0) || ' of ' \
                   || count(*) || ' tables' FROM pg_stat_user_tables";
        match services::psql_query(&db.url, sql) {
            Ok(out) => eprintln!("xtask: PostgreSQL: statistics: {}", out.trim()),
            Err(e) => eprintln!("xtask: warning: cannot read table statistics: {e:#}"),
        }
    }
    drop(database); // before the servers in `backends` stop
    drop(backends);

    let load = load?;
    if !load.success() {
        bail!(
            "spharos-loadtest failed ({load})\n--- end of the spharos log:\n{}",
            sys::tail(&server.log, 20)
        );
    }
    eprintln!("xtask: wrote {}", report.display());
    if let Some(baseline) = baseline {
        print_ratios(&report, &baseline, args.clients)?;
    }
    Ok(())
}

/// What pgbench measured: its throughput and its transactions' latency percentiles.
struct Baseline {
    tps: f64,
    /// p50, p95, p99 in milliseconds, from pgbench's per-transaction log.
    latency_ms: [f64; 3],
}

/// pgbench's built-in TPC-B-like script (5 statements, one commit) against a scratch database:
/// the transactions per second PostgreSQL itself sustains at `clients` on this machine, and the
/// latency its transactions see (`-l`: one log line per transaction, a buffered write).
fn pgbench_tpcb(admin_url: &str, clients: u32, duration: u32) -> Result<Baseline> {
    let pgbench = services::find_pg_tool("pgbench")
        .context("pgbench not found (Debian package postgresql-client or postgresql-contrib)")?;
    let db = BenchDatabase::create(admin_url)?;
    // Scale = clients, so clients do not queue on the same branch row (as TPC-B intends).
    let mut init = Command::new(&pgbench);
    init.args(["-i", "-q", "-s", &clients.max(1).to_string()])
        .arg(&db.url)
        .stdout(Stdio::null());
    eprintln!("xtask: pgbench baseline: {}", sys::describe(&init));
    sys::run_checked(&mut init)?;
    let logs = bench_dir()?;
    let prefix = logs.path().join("pgbench_log");
    let mut run = Command::new(&pgbench);
    run.args(["-n", "-b", "tpcb-like"])
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &duration.to_string()])
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(&db.url);
    eprintln!("xtask: pgbench baseline: {}", sys::describe(&run));
    let out = run.output().context("cannot run pgbench")?;
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = parse_pgbench_tps(&text)
        .with_context(|| format!("no `tps = ...` line in pgbench's output:\n{text}"))?;
    let mut micros = Vec::new();
    for entry in std::fs::read_dir(logs.path()).context("cannot list pgbench's logs")? {
        let path = entry.context("cannot list pgbench's logs")?.path();
        let log = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        micros.extend(log.lines().filter_map(pgbench_log_latency_us));
    }
    if micros.is_empty() {
        bail!(
            "pgbench wrote no transaction log under {}",
            logs.path().display()
        );
    }
    micros.sort_unstable();
    let ms = |q: f64| percentile(&micros, q) as f64 / 1000.0;
    let latency_ms = [ms(0.50), ms(0.95), ms(0.99)];
    eprintln!(
        "xtask: pgbench baseline: {tps:.1} TPC-B-like transactions/s at {clients} clients, \
         latency p50 {:.1} / p95 {:.1} / p99 {:.1} ms over {} transactions",
        latency_ms[0],
        latency_ms[1],
        latency_ms[2],
        micros.len()
    );
    Ok(Baseline { tps, latency_ms })
}

/// A line of pgbench's transaction log (`client_id transaction_no time script_no time_epoch
/// time_us`) → its `time`, the transaction's latency in microseconds.
fn pgbench_log_latency_us(line: &str) -> Option<u64> {
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The nearest-rank `q` quantile of sorted, non-empty `values`.
fn percentile(values: &[u64], q: f64) -> u64 {
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// `tps = 1234.567890 (without initial connection time)` → 1234.56789.
fn parse_pgbench_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("tps = "))
        .find_map(|l| l["tps = ".len()..].split_whitespace().next()?.parse().ok())
}

/// One line per phase of the loadtest report: its throughput against the baseline. The
/// baseline is also written into the report, under `baseline`.
fn print_ratios(report: &Path, baseline: &Baseline, clients: u32) -> Result<()> {
    let tps = baseline.tps;
    let mut json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report).with_context(|| format!("cannot read {}", report.display()))?,
    )
    .with_context(|| format!("{} is not JSON", report.display()))?;
    let [p50, p95, p99] = baseline.latency_ms;
    json["baseline"] = serde_json::json!({
        "tool": "pgbench -b tpcb-like",
        "clients": clients,
        "tps": tps,
        "latency_ms": { "p50": p50, "p95": p95, "p99": p99 },
    });
    std::fs::write(report, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", report.display()))?;
    println!(
        "\nthroughput against pgbench TPC-B-like at {clients} clients ({tps:.1} tps; \
         latency p50 {p50:.1} / p95 {p95:.1} / p99 {p99:.1} ms):"
    );
    for phase in json["phases"].as_array().into_iter().flatten() {
        let name = phase["name"].as_str().unwrap_or("?");
        let rps = phase["throughput_rps"].as_f64().unwrap_or(0.0);
        let p99 = phase["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {name:<10} {rps:>9.1} req/s = {:>5.2} x baseline, p99 {p99:.1} ms",
            rps / tps
        );
    }
    Ok(())
}

fn build_release(packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new(sys::cargo());
    cmd.args(["build", "--release"])
        .current_dir(sys::workspace_root());
    for p in packages {
        cmd.args(["-p", p]);
    }
    eprintln!("xtask: {}", sys::describe(&cmd));
    sys::run_checked(&mut cmd)
}

fn release_bin(name: &str) -> Result<PathBuf> {
    let bin = sys::target_dir().join("release").join(name);
    if !sys::is_executable(&bin) {
        bail!("{} was not built (expected at {})", name, bin.display());
    }
    Ok(bin)
}

fn bench_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("spharos-bench-")
        .tempdir()
        .context("cannot create a temp dir for the benchmark")
}

/// A `spharos.toml` in a bench dir, and the addresses it makes the server listen on.
struct BenchConfig {
    path: PathBuf,
    grpc: SocketAddr,
    http: SocketAddr,
}

/// A config on free ports so concurrent or leftover runs never collide; PostgreSQL and NATS only
/// when given (else the embedded defaults).
fn write_config(dir: &Path, external: Option<(&str, &str)>) -> Result<BenchConfig> {
    let [grpc, http] = sys::free_ports::<2>()?;
    // A JSON string literal is a valid TOML basic string.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut toml = format!(
        "[grpc]\nlisten = {}\n\n[http]\nlisten = {}\n",
        quote(&format!("127.0.0.1:{grpc}")),
        quote(&format!("127.0.0.1:{http}"))
    );
    if let Some((database_url, nats_url)) = external {
        toml.push_str(&format!(
            "\n[database]\nurl = {}\n\n[nats]\nurl = {}\n",
            quote(database_url),
            quote(nats_url)
        ));
    }
    let path = dir.join("spharos.toml");
    std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(BenchConfig {
        path,
        grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
        http: SocketAddr::from(([127, 0, 0, 1], http)),
    })
}

/// `spharos` with our config only: `SPHAROS__*` from the caller's shell would skew the numbers.
fn spharos_command(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPHAROS__") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn mint_token(
    bin: &Path,
    dir: &Path,
    config: &BenchConfig,
    tenant: uuid::Uuid,
    permissions: &[&str],
) -> Result<String> {
    let mut cmd = spharos_command(bin, dir);
    cmd.args(["tenant", "token", "--config"])
        .arg(&config.path)
        .args(["--tenant", &tenant.to_string()]);
    for permission in permissions {
        cmd.args(["--permission", permission]);
    }
    let out = sys::output_checked(&mut cmd).context("cannot mint a tenant token")?;
    out.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
        .context("`spharos tenant token` printed no token")
}

/// A `spharos serve` child; SIGTERMed (then killed) on drop if not stopped explicitly.
struct Server {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Returns the server and the instant just before it was spawned.
    fn start(bin: &Path, dir: &Path, config: &BenchConfig) -> Result<(Server, Instant)> {
        let log = dir.join("spharos.log");
        let log_file = File::create(&log).context("cannot create the server log")?;
        let mut cmd = spharos_command(bin, dir);
        // `all` is the default; named so the points module always finds the member service
        // (it resolves members over gRPC at this process's own port) whatever the default.
        cmd.args(["serve", "--target", "all", "--config"])
            .arg(&config.path)
            .stdout(
                log_file
                    .try_clone()
                    .context("cannot share the server log")?,
            )
            .stderr(log_file);
        sys::bail_if_interrupted()?;
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", sys::describe(&cmd)))?;
        Ok((
            Server {
                child,
                http: config.http,
                grpc: config.grpc,
                log,
            },
            spawned,
        ))
    }

    /// Poll `GET /readyz` until 200; the time since `since`.
    fn wait_ready(&mut self, since: Instant, timeout: Duration) -> Result<Duration> {
        loop {
            if readyz_status(self.http) == Some(200) {
                return Ok(since.elapsed());
            }
            sys::bail_if_interrupted()?;
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "spharos serve exited before it was ready ({status})\n--- end of its log:\n{}",
                    sys::tail(&self.log, 30)
                );
            }
            if since.elapsed() > timeout {
                bail!(
                    "spharos serve not ready on http://{}/readyz after {timeout:?}\n--- end of its log:\n{}",
                    self.http,
                    sys::tail(&self.log, 30)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the process ever held (`VmHWM`).
    fn peak_rss_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in {path}"))
    }

    /// User + system CPU time of the process so far (`/proc/<pid>/stat` fields 14 and 15,
    /// in clock ticks of 1/100 s on Linux).
    fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        // The command name (field 2) may hold spaces; the fields after its ')' are plain.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .with_context(|| format!("unexpected {path}"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("no CPU time in {path}"))
        };
        // After ')': field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
        Ok((ticks(11)? + ticks(12)?) / 100.0)
    }

    /// SIGTERM and wait (10 s, then SIGKILL): the exit status and how long it took.
    fn stop(&mut self) -> Result<(ExitStatus, Duration)> {
        let asked = Instant::now();
        let (status, graceful) = sys::terminate(&mut self.child, Duration::from_secs(10));
        let took = asked.elapsed();
        let status = status.context("lost track of the spharos process")?;
        if !graceful {
            bail!(
                "spharos did not stop within 10 s of SIGTERM; killed it\n--- end of its log:\n{}",
                sys::tail(&self.log, 20)
            );
        }
        Ok((status, took))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        sys::terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// A hand-written HTTP/1.1 GET, read to the end (`Connection: close`): the status code and the
/// body, or None while nothing (good) answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: xtask-bench\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut parts = head.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    Some((parts.next()?.parse().ok()?, body.to_string()))
}

/// One service's group-commit batches, from its metrics.
#[derive(Debug, PartialEq)]
struct GroupCommit {
    service: String,
    batches: f64,
    writes: f64,
    seconds: f64,
}

/// The group-commit histograms' counts and sums in a Prometheus text exposition, by service
/// (services with at least one batch).
fn group_commits(metrics: &str) -> Vec<GroupCommit> {
    let value = |name: &str, service: &str| -> Option<f64> {
        let labels = format!("{{service=\"{service}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(labels.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    let mut services: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("spharos_group_commit_writes_count{service=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    services.sort_unstable();
    services.dedup();
    services
        .into_iter()
        .filter_map(|service| {
            Some(GroupCommit {
                service: service.to_string(),
                batches: value("spharos_group_commit_writes_count", service)?,
                writes: value("spharos_group_commit_writes_sum", service)?,
                seconds: value("spharos_group_commit_duration_seconds_sum", service)?,
            })
        })
        .filter(|g| g.batches > 0.0)
        .collect()
}

fn readyz_status(addr: SocketAddr) -> Option<u16> {
    http_get(addr, "/readyz").map(|(status, _)| status)
}

/// A `bench_<random>` database on the test PostgreSQL, dropped again on drop.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    fn create(admin_url: &str) -> Result<Self> {
        let name = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        services::psql_exec(admin_url, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("cannot create database {name}"))?;
        eprintln!("xtask: PostgreSQL: created database {name}");
        Ok(BenchDatabase {
            admin_url: admin_url.to_string(),
            url: sys::with_database(admin_url, &name),
            name,
        })
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match services::psql_exec(&self.admin_url, &sql) {
            Ok(()) => eprintln!("xtask: PostgreSQL: dropped database {}", self.name),
            Err(e) => eprintln!("xtask: warning: cannot drop database {}: {e:#}", self.name),
        }
    }
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn of(values: impl Iterator<Item = f64>) -> Stats {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Stats {
            min: v.first().copied().unwrap_or(f64::NAN),
            median,
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn to_json(&self, samples: impl Iterator<Item = f64>) -> serde_json::Value {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "min": round(self.min),
            "median": round(self.median),
            "max": round(self.max),
            "samples": samples.map(round).collect::<Vec<_>>(),
        })
    }
}

fn write_report(file: &str, report: &serde_json::Value) -> Result<PathBuf> {
    let dir = sys::workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(file);
    let text = serde_json::to_string_pretty(report).context("serialising the report")?;
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn sleep_interruptible(total: Duration) -> Result<()> {
    let end = Instant::now() + total;
    while Instant::now() < end {
        sys::bail_if_interrupted()?;
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
    Ok(())
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_commits_are_read_from_the_metrics_text() {
        let text = "# HELP spharos_group_commit_writes Writes per committed group-commit batch.\n\
                    # TYPE spharos_group_commit_writes histogram\n\
                    spharos_group_commit_writes_sum{service=\"points\"} 3200.0\n\
                    spharos_group_commit_writes_count{service=\"points\"} 200\n\
                    spharos_group_commit_writes_bucket{le=\"1.0\",service=\"points\"} 3\n\
                    spharos_group_commit_writes_sum{service=\"coupon\"} 0.0\n\
                    spharos_group_commit_writes_count{service=\"coupon\"} 0\n\
                    spharos_group_commit_duration_seconds_sum{service=\"points\"} 1.4\n\
                    spharos_group_commit_duration_seconds_count{service=\"points\"} 200\n\
                    spharos_group_commit_duration_seconds_sum{service=\"coupon\"} 0.0\n\
                    spharos_rpc_requests_total{rpc_service=\"x\"} 5\n";
        assert_eq!(
            group_commits(text),
            vec![GroupCommit {
                service: "points".into(),
                batches: 200.0,
                writes: 3200.0,
                seconds: 1.4,
            }]
        );
        assert!(group_commits("# EOF\n").is_empty());
    }

    #[test]
    fn pgbench_tps_is_read_from_its_report() {
        let out = "transaction type: <builtin: TPC-B (sort of)>\nscaling factor: 32\n\
                   number of clients: 32\nlatency average = 21.3 ms\n\
                   initial connection time = 40.1 ms\n\
                   tps = 1502.734512 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(out), Some(1502.734512));
        assert_eq!(parse_pgbench_tps("no numbers here"), None);
    }

    #[test]
    fn pgbench_log_lines_give_latencies_and_percentiles_are_nearest_rank() {
        assert_eq!(
            pgbench_log_latency_us("3 17 21874 0 1764840000 123456"),
            Some(21874)
        );
        assert_eq!(pgbench_log_latency_us("garbage"), None);
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn median_of_odd_and_even() {
        let s = Stats::of([3.0, 1.0, 2.0].into_iter());
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Stats::of([4.0, 1.0, 3.0, 2.0].into_iter());
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn config_has_both_listeners_and_optional_backends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_config(dir.path(), Some(("postgres://p@h/db", "nats://h:4222")))
            .expect("config written");
        assert_ne!(config.grpc, config.http);
        let text = std::fs::read_to_string(&config.path).expect("config readable");
        assert!(text.contains(&format!("listen = \"{}\"", config.http)));
        assert!(text.contains("[grpc]\nlisten = \"127.0.0.1:"));
        assert!(text.contains("[http]\nlisten = \"127.0.0.1:"));
        assert!(text.contains("[database]\nurl = \"postgres://p@h/db\""));
        assert!(text.contains("[nats]\nurl = \"nats://h:4222\""));
    }
}
