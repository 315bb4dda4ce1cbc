//! Finding, or starting throwaway, PostgreSQL and NATS JetStream servers for the test suite and
//! the benchmarks. Throwaway servers live in temp dirs and are stopped and removed on drop, also
//! when the tests failed or the run was interrupted.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::sys;

pub const DATABASE_URL_VAR: &str = "SPHAROS_TEST_DATABASE_URL";
pub const NATS_URL_VAR: &str = "SPHAROS_TEST_NATS_URL";
pub const NATS_SERVER_BIN_VAR: &str = "SPHAROS_NATS_SERVER_BIN";

const DEFAULT_PG: &str = "127.0.0.1:5432";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_NATS: &str = "127.0.0.1:4222";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// A superuser PostgreSQL URL and a NATS JetStream URL, plus whatever we had to start for them.
pub struct Backends {
    pub database_url: String,
    pub nats_url: String,
    /// The `nats-server` executable (one outbox test runs a private server of its own).
    pub nats_server_bin: PathBuf,
    _nats: Option<ThrowawayNats>,
    _postgres: Option<ThrowawayPostgres>,
}

impl Backends {
    /// Use `$SPHAROS_TEST_*` or the servers on their usual local ports, else start throwaway ones
    /// (installing the Debian packages when the binaries are missing). `force_throwaway` ignores
    /// both the variables and running servers.
    pub fn prepare(force_throwaway: bool) -> Result<Self> {
        let nats_server_bin = nats_server_bin()?;
        let (database_url, postgres) = postgres(force_throwaway)?;
        check_postgres(&database_url)?;
        sys::bail_if_interrupted()?;
        let (nats_url, nats) = nats(force_throwaway, &nats_server_bin)?;
        Ok(Backends {
            database_url,
            nats_url,
            nats_server_bin,
            _nats: nats,
            _postgres: postgres,
        })
    }

    /// Point a test run at these servers.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env(DATABASE_URL_VAR, &self.database_url)
            .env(NATS_URL_VAR, &self.nats_url)
            .env(NATS_SERVER_BIN_VAR, &self.nats_server_bin);
        // Tests that look `nats-server` up on PATH find the same one.
        if let Some(dir) = self.nats_server_bin.parent() {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
                if let Ok(path) = std::env::join_paths(dirs) {
                    cmd.env("PATH", path);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- PostgreSQL

fn postgres(force_throwaway: bool) -> Result<(String, Option<ThrowawayPostgres>)> {
    if force_throwaway {
        eprintln!(
            "xtask: PostgreSQL: --force-throwaway given, ignoring ${DATABASE_URL_VAR} and running servers"
        );
    } else {
        if let Some(url) = env_nonempty(DATABASE_URL_VAR) {
            eprintln!(
                "xtask: PostgreSQL: using {} (from ${DATABASE_URL_VAR})",
                sys::redact_url(&url)
            );
            return Ok((url, None));
        }
        if postgres_answers_on_default_port() {
            eprintln!("xtask: PostgreSQL: using {DEFAULT_PG} ({DEFAULT_PG_URL})");
            return Ok((DEFAULT_PG_URL.to_string(), None));
        }
        eprintln!("xtask: PostgreSQL: nothing answers on {DEFAULT_PG}");
    }
    let pg = ThrowawayPostgres::start()?;
    Ok((pg.url(), Some(pg)))
}

fn postgres_answers_on_default_port() -> bool {
    let addr: SocketAddr = DEFAULT_PG.parse().expect("a literal socket address");
    if !sys::tcp_answers(addr, Duration::from_secs(1)) {
        return false;
    }
    let Some(pg_isready) = find_pg_tool("pg_isready") else {
        return true; // something listens; the SELECT 1 check below tells whether it is PostgreSQL
    };
    let ready = Command::new(pg_isready)
        .args(["-h", "127.0.0.1", "-p", "5432", "-t", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        eprintln!(
            "xtask: PostgreSQL: {DEFAULT_PG} answers TCP but pg_isready says it is not accepting connections"
        );
    }
    ready
}

/// `SELECT 1` through psql, so a wrong URL or role fails here with a clear message rather than
/// in every test. Skipped (with a note) when there is no psql.
pub fn check_postgres(url: &str) -> Result<()> {
    let Some(psql) = find_pg_tool("psql") else {
        eprintln!("xtask: PostgreSQL: no psql found, skipping the SELECT 1 check");
        return Ok(());
    };
    let out = sys::output_checked(
        Command::new(psql)
            .arg(url)
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(
                "SELECT 1, current_setting('server_version'), \
                 (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            )
            .env("PGCONNECT_TIMEOUT", "10"),
    )
    .with_context(|| {
        format!(
            "PostgreSQL at {} does not answer SELECT 1",
            sys::redact_url(url)
        )
    })?;
    let fields: Vec<&str> = out.trim().split('|').collect();
    let version = fields.get(1).copied().unwrap_or("?");
    if fields.first() != Some(&"1") {
        bail!("unexpected answer to SELECT 1 from PostgreSQL: {out:?}");
    }
    if fields.get(2) == Some(&"t") {
        eprintln!("xtask: PostgreSQL: SELECT 1 ok (server {version}, superuser)");
    } else {
        eprintln!(
            "xtask: warning: PostgreSQL: SELECT 1 ok (server {version}) but the role is not a superuser; \
             the tests CREATE DATABASE and roles and may fail"
        );
    }
    Ok(())
}

/// Run one SQL statement as the URL's role (CREATE/DROP DATABASE for the benchmarks).
pub fn psql_exec(url: &str, sql: &str) -> Result<()> {
    psql_query(url, sql).map(drop)
}

/// Runs `sql` with psql and returns what it printed (unaligned, tuples only).
pub fn psql_query(url: &str, sql: &str) -> Result<String> {
    let psql =
        find_pg_tool("psql").context("psql not found (apt-get install -y postgresql-client)")?;
    sys::output_checked(
        Command::new(psql)
            .arg(url)
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10"),
    )
}

/// Debian keeps the server tools in /usr/lib/postgresql/<major>/bin, newest major first.
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((major, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    let mut dirs = vec![PathBuf::from("/usr/local/bin")];
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs
}

pub fn find_pg_tool(name: &str) -> Option<PathBuf> {
    sys::find_program(name, &pg_bin_dirs())
}

struct PgBins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

/// initdb and pg_ctl from one installation (pg_ctl starts the `postgres` that sits beside it).
fn find_pg_bins() -> Option<PgBins> {
    let initdb = find_pg_tool("initdb")?;
    let real_dir = std::fs::canonicalize(&initdb)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let pg_ctl = real_dir
        .map(|d| d.join("pg_ctl"))
        .filter(|p| sys::is_executable(p))
        .or_else(|| find_pg_tool("pg_ctl"))?;
    Some(PgBins { initdb, pg_ctl })
}

/// The OS user the throwaway cluster runs as: PostgreSQL refuses to run as root.
#[derive(Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

fn postgres_os_user() -> Result<Option<OsUser>> {
    if !sys::is_root() {
        return Ok(None); // run as ourselves
    }
    let lookup = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if lookup("-u").is_none() {
        eprintln!(
            "xtask: PostgreSQL: creating the system user `postgres` (initdb refuses to run as root)"
        );
        sys::output_checked(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ]))
        .context("cannot create the `postgres` OS user")?;
    }
    match (lookup("-u"), lookup("-g")) {
        (Some(uid), Some(gid)) => Ok(Some(OsUser { uid, gid })),
        _ => bail!("cannot look up the uid/gid of the `postgres` OS user"),
    }
}

struct ThrowawayPostgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    user: Option<OsUser>,
    port: u16,
    /// Set once `pg_ctl start` was attempted: only then is there a server to stop.
    started: bool,
    // Last: removed after the server stopped.
    dir: TempDir,
}

impl ThrowawayPostgres {
    fn start() -> Result<Self> {
        let bins = match find_pg_bins() {
            Some(bins) => bins,
            None => {
                eprintln!(
                    "xtask: PostgreSQL: initdb/pg_ctl not found; installing Debian's postgresql"
                );
                sys::apt_install(&["postgresql"])?;
                find_pg_bins()
                    .context("initdb/pg_ctl still not found after installing postgresql")?
            }
        };
        let user = postgres_os_user()?;
        // In /tmp rather than $TMPDIR when we switch users: postgres must be able to reach it.
        let base = if user.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("spharos-pg-")
            .tempdir_in(base)
            .context("cannot create a temp dir for PostgreSQL")?;
        if let Some(u) = user {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid))
                .with_context(|| format!("cannot chown {} to postgres", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let port = sys::free_port()?;
        eprintln!(
            "xtask: starting throwaway PostgreSQL on 127.0.0.1:{port} (initdb {}, data in {})",
            bins.initdb.display(),
            dir.path().display()
        );
        let mut pg = ThrowawayPostgres {
            pg_ctl: bins.pg_ctl,
            data,
            user,
            port,
            started: false,
            dir,
        };

        let mut initdb = pg.command(&bins.initdb);
        initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        sys::output_checked(&mut initdb).context("initdb failed")?;
        sys::bail_if_interrupted()?;

        // pg_ctl hands -o to a shell: quote the socket dir.
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            pg.dir.path().display()
        );
        let mut start = pg.command(&pg.pg_ctl);
        start
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        pg.started = true;
        if let Err(e) = sys::output_checked(&mut start) {
            bail!(
                "pg_ctl start failed: {e:#}\n--- end of its log:\n{}",
                sys::tail(&log, 30)
            );
        }
        pg.wait_ready(Duration::from_secs(30))?;
        eprintln!("xtask: PostgreSQL: throwaway server ready on 127.0.0.1:{port}");
        Ok(pg)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A command for a PostgreSQL tool, run as the cluster's OS user from inside its temp dir.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some(u) = self.user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let pg_isready = find_pg_tool("pg_isready");
        let deadline = Instant::now() + timeout;
        loop {
            sys::bail_if_interrupted()?;
            let ready = match &pg_isready {
                Some(tool) => Command::new(tool)
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "2"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                None => sys::tcp_answers(addr, Duration::from_millis(500)),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("throwaway PostgreSQL on {addr} not ready after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        eprintln!(
            "xtask: stopping throwaway PostgreSQL on 127.0.0.1:{}",
            self.port
        );
        let mut stop = self.command(&self.pg_ctl);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        if let Err(e) = sys::output_checked(&mut stop) {
            // Already gone (e.g. killed with us) is fine; a live one must not keep the dir busy.
            eprintln!("xtask: warning: pg_ctl stop: {e:#}");
            if let Some(pid) = std::fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            {
                sys::signal(pid, "KILL");
            }
        }
        // `dir` (the TempDir) is removed when this struct's fields drop, right after this.
    }
}

// ---------------------------------------------------------------- NATS

fn nats(force_throwaway: bool, bin: &Path) -> Result<(String, Option<ThrowawayNats>)> {
    if force_throwaway {
        eprintln!(
            "xtask: NATS: --force-throwaway given, ignoring ${NATS_URL_VAR} and running servers"
        );
    } else {
        if let Some(url) = env_nonempty(NATS_URL_VAR) {
            eprintln!(
                "xtask: NATS: using {} (from ${NATS_URL_VAR})",
                sys::redact_url(&url)
            );
            if let Some((host, port)) = sys::url_host_port(&url, 4222) {
                let addr = (host.as_str(), port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .with_context(|| {
                        format!("cannot resolve {host}:{port} from ${NATS_URL_VAR}")
                    })?;
                let info = nats_info(addr).with_context(|| {
                    format!(
                        "NATS at {} (${NATS_URL_VAR}) does not answer",
                        sys::redact_url(&url)
                    )
                })?;
                report_jetstream(&info);
            }
            return Ok((url, None));
        }
        let addr: SocketAddr = DEFAULT_NATS.parse().expect("a literal socket address");
        match nats_info(addr) {
            Ok(info) => {
                eprintln!("xtask: NATS: using {DEFAULT_NATS} ({DEFAULT_NATS_URL})");
                report_jetstream(&info);
                return Ok((DEFAULT_NATS_URL.to_string(), None));
            }
            Err(e) => eprintln!("xtask: NATS: nothing usable on {DEFAULT_NATS} ({e:#})"),
        }
    }
    let nats = ThrowawayNats::start(bin)?;
    Ok((nats.url(), Some(nats)))
}

/// Connect and read the server's `INFO {...}` greeting (parsed JSON).
fn nats_info(addr: SocketAddr) -> Result<serde_json::Value> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .with_context(|| format!("no greeting from {addr}"))?;
    let json = line
        .strip_prefix("INFO ")
        .with_context(|| format!("{addr} does not speak NATS (greeting {:?})", line.trim()))?;
    serde_json::from_str(json.trim()).with_context(|| format!("bad INFO from {addr}"))
}

fn report_jetstream(info: &serde_json::Value) {
    let version = info.get("version").and_then(|v| v.as_str()).unwrap_or("?");
    if info.get("jetstream").and_then(|v| v.as_bool()) == Some(true) {
        eprintln!("xtask: NATS: server {version}, JetStream enabled");
    } else {
        eprintln!(
            "xtask: warning: NATS server {version} does not announce JetStream; tests need `nats-server -js`"
        );
    }
}

/// `$SPHAROS_NATS_SERVER_BIN`, else `nats-server` on PATH or in the usual dirs, else install it.
fn nats_server_bin() -> Result<PathBuf> {
    if let Some(bin) = env_nonempty(NATS_SERVER_BIN_VAR) {
        let bin = PathBuf::from(bin);
        if sys::is_executable(&bin) {
            return Ok(bin);
        }
        eprintln!(
            "xtask: warning: ${NATS_SERVER_BIN_VAR}={} is not an executable; looking for nats-server",
            bin.display()
        );
    }
    let dirs = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from);
    if let Some(bin) = sys::find_program("nats-server", &dirs) {
        return Ok(bin);
    }
    eprintln!("xtask: NATS: nats-server not found; installing Debian's nats-server");
    sys::apt_install(&["nats-server"])?;
    sys::find_program("nats-server", &dirs)
        .context("nats-server still not found after installing it")
}

struct ThrowawayNats {
    child: Child,
    port: u16,
    log: PathBuf,
    // Last: removed after the server stopped.
    _dir: TempDir,
}

impl ThrowawayNats {
    fn start(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("spharos-nats-")
            .tempdir()
            .context("cannot create a temp dir for NATS")?;
        let port = sys::free_port()?;
        let log = dir.path().join("nats-server.log");
        let log_file = File::create(&log).context("cannot create the NATS log file")?;
        eprintln!(
            "xtask: starting throwaway NATS on 127.0.0.1:{port} ({})",
            bin.display()
        );
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("cannot share the NATS log file")?,
            )
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut nats = ThrowawayNats {
            child,
            port,
            log,
            _dir: dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            sys::bail_if_interrupted()?;
            if let Ok(Some(status)) = nats.child.try_wait() {
                bail!(
                    "nats-server exited early ({status})\n--- end of its log:\n{}",
                    sys::tail(&nats.log, 30)
                );
            }
            if let Ok(info) = nats_info(addr) {
                report_jetstream(&info);
                eprintln!("xtask: NATS: throwaway server ready on {addr}");
                return Ok(nats);
            }
            if Instant::now() > deadline {
                bail!(
                    "throwaway NATS on {addr} not ready after 20s\n--- end of its log:\n{}",
                    sys::tail(&nats.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for ThrowawayNats {
    fn drop(&mut self) {
        eprintln!("xtask: stopping throwaway NATS on 127.0.0.1:{}", self.port);
        let (_, graceful) = sys::terminate(&mut self.child, Duration::from_secs(10));
        if !graceful {
            eprintln!("xtask: warning: nats-server ignored SIGTERM; killed it");
        }
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
