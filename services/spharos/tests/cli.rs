//! The binary as a user runs it: exit codes, `config print`, `tenant token`, and `serve` on the
//! embedded default becoming ready and stopping cleanly on SIGTERM.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn spharos(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spharos"));
    c.current_dir(dir);
    // The developer's environment must not leak into these tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("SPHAROS__") || k == "SPHAROS_CONFIG" {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((code, body))
}

#[test]
fn an_unknown_target_exits_64_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spharos(dir.path())
        .args(["serve", "--target", "bogus"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown target \"bogus\""), "{err}");
    assert!(
        err.contains("valid targets: all, member, points, coupon, privacy, billing"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing may start before the check"
    );
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spharos(dir.path())
        .args(["serve"])
        .env("SPHAROS__DATABASE__URL", "mysql://nope")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[grpc]\nlisten = \"nowhere\"\n").expect("write");
    let out = spharos(dir.path())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grpc.listen"));

    let out = spharos(dir.path())
        .args(["serve", "--no-such-flag"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64), "usage errors are 64 too");
}

#[test]
fn config_print_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spharos(dir.path())
        .args(["config", "print"])
        .env(
            "SPHAROS__DATABASE__URL",
            "postgres://app:s3cret@db:5432/spharos",
        )
        .env("SPHAROS__GRPC__LISTEN", "0.0.0.0:7000")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(
        text.contains("0.0.0.0:7000"),
        "environment overrides defaults: {text}"
    );
}

#[test]
fn tenant_token_mints_a_jwt_with_the_generated_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "0190f2c4-6f1e-7000-8000-000000000001";
    let out = spharos(dir.path())
        .args([
            "tenant",
            "token",
            "--tenant",
            tenant,
            "--permission",
            "pii:unmask",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a compact JWS: {token}");
    assert!(dir.path().join("data/keys/signing.pem").exists());

    let out = spharos(dir.path())
        .args(["tenant", "token", "--tenant", "not-a-uuid"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serve_with_no_configuration_becomes_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, http) = (free_port(), free_port());
    let started = Instant::now();
    let mut child = spharos(dir.path())
        .args(["serve"])
        .env("SPHAROS__GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
        .env("SPHAROS__HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(30) {
        if let Some((200, body)) = http_get(http, "/readyz") {
            assert_eq!(body.trim(), "ready");
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ready, "not ready within 30 s");
    assert_eq!(http_get(http, "/healthz").map(|r| r.0), Some(200));
    let (code, metrics) = http_get(http, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("spharos_outbox_lag_seconds{service=\"member\"}"),
        "the member relay reports its lag: {metrics}"
    );
    assert!(
        dir.path().join("data/member.db").exists(),
        "embedded SQLite under ./data"
    );

    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serve --demo` on the embedded default until the demo tenant is printed, then SIGTERM.
fn run_demo_once(dir: &Path) {
    use std::io::{BufRead, BufReader};
    let (grpc, http) = (free_port(), free_port());
    let mut child = spharos(dir)
        .args(["serve", "--demo"])
        .env("SPHAROS__GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
        .env("SPHAROS__HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("API 토큰 (token)") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the demo tenant is printed within 60 s");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("waits");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn keys_generate_and_rotate_rewrap_the_demo_tenant_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing stored yet: nothing to do, and no database is created for it.
    let out = spharos(dir.path())
        .args(["keys", "rotate"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 data keys re-wrapped"));
    assert!(!dir.path().join("data/member.db").exists());

    run_demo_once(dir.path());

    let new_key = dir.path().join("new.key");
    let out = spharos(dir.path())
        .args(["keys", "generate", "--out"])
        .arg(&new_key)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let hex = std::fs::read_to_string(&new_key).expect("written");
    assert_eq!(hex.len(), 64);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new_key)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads a master key");
    }
    // A key in use is never overwritten.
    let out = spharos(dir.path())
        .args(["keys", "generate", "--out"])
        .arg(&new_key)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(std::fs::read_to_string(&new_key).expect("kept"), hex);

    let old_key = dir.path().join("data/keys/master.key");
    let rotate = |previous: bool| {
        let mut c = spharos(dir.path());
        c.args(["keys", "rotate"])
            .env("SPHAROS__CRYPTO__MASTER_KEY_FILE", &new_key);
        if previous {
            c.env("SPHAROS__CRYPTO__PREVIOUS_MASTER_KEY_FILES", &old_key);
        }
        let out = c.output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // Without the old key configured the demo tenant's data key cannot be opened.
    let (code, _) = rotate(false);
    assert_eq!(code, Some(1), "an unopenable data key fails the rotation");
    let (code, out) = rotate(true);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("member: 재암호화 1 / re-wrapped 1"), "{out}");
    // Done once: the new key alone now opens it.
    let (code, out) = rotate(false);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("member: 재암호화 0 / re-wrapped 0, 이미 최신 1"),
        "{out}"
    );
}
