//! Process, path and signal plumbing shared by `test` and `bench`.
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The pid of the long-running child we are waiting on (0: none). A SIGTERM sent to xtask alone
/// (CI timeouts do that) is forwarded to it, so that we get control back and can clean up.
static FOREGROUND: AtomicU32 = AtomicU32::new(0);
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Turn SIGINT/SIGTERM/SIGHUP into a flag instead of death, so that every guard's `Drop` runs.
pub fn install_signal_handler() {
    let installed = ctrlc::set_handler(|| {
        if !INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("xtask: interrupted; stopping and cleaning up");
        }
        let pid = FOREGROUND.load(Ordering::SeqCst);
        if pid != 0 {
            signal(pid, "TERM");
        }
    });
    if let Err(e) = installed {
        eprintln!(
            "xtask: warning: cannot handle Ctrl-C ({e}); an interrupt may leave temp dirs behind"
        );
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn bail_if_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Spawn `cmd` with inherited stdio, wait for it, and forward termination signals to it meanwhile.
pub fn run_foreground(cmd: &mut Command) -> Result<ExitStatus> {
    bail_if_interrupted()?;
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    FOREGROUND.store(child.id(), Ordering::SeqCst);
    let status = child.wait();
    FOREGROUND.store(0, Ordering::SeqCst);
    status.with_context(|| format!("waiting for {}", describe(cmd)))
}

/// Like `run_foreground`, but a non-zero exit is an error.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = run_foreground(cmd)?;
    if !status.success() {
        bail!("{} failed ({})", describe(cmd), status);
    }
    Ok(())
}

/// Run `cmd` to completion capturing its output; a non-zero exit is an error carrying stderr.
pub fn output_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line for messages, with passwords in URL arguments redacted.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&redact_url(&arg.to_string_lossy()));
    }
    s
}

/// The exit code to hand back for a child's status (128 + signal when it was killed).
pub fn exit_code(status: ExitStatus) -> ExitCode {
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let signal = status.signal().unwrap_or(0);
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
}

/// `kill -<sig> <pid>`; std has no safe way to send anything but SIGKILL.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGTERM, then SIGKILL after `grace`. Returns the exit status and whether it stopped in time.
pub fn terminate(child: &mut Child, grace: Duration) -> (Option<ExitStatus>, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (Some(status), true);
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), true),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    (child.wait().ok(), false)
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    // `cargo xtask` (cargo run) sets CARGO_MANIFEST_DIR for the run too: the checkout it was
    // invoked in. The compile-time value is only the fallback, because checkouts sharing one
    // CARGO_TARGET_DIR (CI clones and the working tree) can run a binary built in another.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask's manifest dir always has the workspace root as parent")
        .to_path_buf()
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The cargo that runs us (so `cargo +toolchain xtask` stays on that toolchain).
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `name` on `$PATH`, else in the first of `extra_dirs` that has it.
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port the kernel just gave us on 127.0.0.1 (free now; tiny race until the user binds it).
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free ports (all bound at once, so they cannot collide with each other).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot bind a free port on 127.0.0.1")?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .context("local_addr of a bound socket")?
            .port();
    }
    Ok(ports)
}

pub fn tcp_answers(addr: SocketAddr, timeout: Duration) -> bool {
    std::net::TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Effective uid, from /proc (no libc call needed).
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn is_root() -> bool {
    euid() == Some(0)
}

/// `apt-get install -y` the Debian packages (with one `apt-get update` per run first).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "{} missing and xtask is not root; install it with: sudo apt-get install -y {}",
            packages.join(", "),
            packages.join(" ")
        );
    }
    if find_program("apt-get", &[]).is_none() {
        bail!(
            "{} missing and there is no apt-get to install it",
            packages.join(", ")
        );
    }
    eprintln!(
        "xtask: installing Debian package(s): {}",
        packages.join(" ")
    );
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        run_checked(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()),
        )?;
    }
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `scheme://user:secret@host/...` with the secret replaced, for printing.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// The same URL pointing at database `name` (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let query = after.find('?').map_or("", |q| &after[q..]);
    format!("{}/{name}{query}", &url[..scheme_end + authority_end])
}

/// `host:port` of the first server in a `nats://` or `postgres://` URL, if it names one.
pub fn url_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = &url[url.find("://")? + 3..];
    let rest = rest.split(',').next()?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next()?;
    if host_port.is_empty() {
        return None;
    }
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((host_port.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn swaps_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "bench_1"),
            "postgres://postgres@127.0.0.1:5432/bench_1"
        );
        assert_eq!(
            with_database("postgres://u@h:1/x?sslmode=disable", "b"),
            "postgres://u@h:1/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "b"), "postgres://u@h/b");
    }

    #[test]
    fn finds_host_and_port() {
        assert_eq!(
            url_host_port("nats://127.0.0.1:4222", 4222),
            Some(("127.0.0.1".into(), 4222))
        );
        assert_eq!(
            url_host_port("nats://u:p@h", 4222),
            Some(("h".into(), 4222))
        );
        assert_eq!(
            url_host_port("nats://a:1,nats://b:2", 4222),
            Some(("a".into(), 1))
        );
        assert_eq!(
            url_host_port("nats://[::1]:5", 4222),
            Some(("::1".into(), 5))
        );
    }
}
