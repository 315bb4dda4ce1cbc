//! End-to-end tests of the binary against the real member service, served in-process.
//!
//! Each test that needs a target starts the member module on SQLite and the in-process bus in a
//! temporary directory (as `services/member/tests/api` does), serves it on a free loopback port
//! and mints a token for a fresh tenant. Besides the CLI, exit codes and the JSON output, the
//! tests check what the run left in the service: the seeded store and the members it signed up.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use spharos_kit::TenantId;
use spharos_kit::auth::TokenSigner;
use spharos_kit::paging::PageRequest;
use spharos_kit::platform::Platform;
use spharos_kit::testing::{self, TestBackend};
use spharos_member::MemberApp;
use spharos_member::domain::member::MemberFilter;
use spharos_member::domain::store::StoreFilter;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The member service on a free loopback port, with a token for one fresh tenant.
struct Server {
    endpoint: String,
    tenant: TenantId,
    token: String,
    app: MemberApp,
    platform: Platform,
    /// The SQLite database lives here; kept for the whole test.
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stops the gRPC server, outbox relay, consumer and grade schedule.
        self.platform.shutdown.cancel();
    }
}

impl Server {
    async fn start() -> Self {
        let (settings, dir) = testing::settings(TestBackend::Sqlite).await;
        let (platform, signer) = testing::platform(settings).await;
        let mut routes = tonic::service::RoutesBuilder::default();
        let (_module, app) = spharos_member::module(&platform, &mut routes)
            .await
            .expect("the member module starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr: SocketAddr = listener.local_addr().expect("bound address");
        let shutdown = platform.shutdown.clone();
        tokio::spawn(async move {
            spharos_kit::grpc::serve(listener, routes.routes(), shutdown)
                .await
                .expect("the gRPC server runs");
        });
        let tenant = TenantId::generate();
        let token = signer.mint(tenant, "loadtest", &[], 600);
        Self {
            endpoint: format!("http://{addr}"),
            tenant,
            token,
            app,
            platform,
            _dir: dir,
        }
    }

    /// Members of the test's tenant, counted over every page.
    async fn member_count(&self) -> u64 {
        let mut count = 0;
        let mut token = String::new();
        loop {
            let page = PageRequest::parse(1000, &token).expect("valid page");
            let (members, next) = self
                .app
                .list_members(self.tenant, MemberFilter::default(), page)
                .await
                .expect("members listed");
            count += members.len() as u64;
            if next.is_empty() {
                return count;
            }
            token = next;
        }
    }

    /// Codes of the stores of the test's tenant.
    async fn store_codes(&self) -> Vec<String> {
        let page = PageRequest::parse(1000, "").expect("valid page");
        let (stores, _) = self
            .app
            .list_stores(self.tenant, StoreFilter::default(), page)
            .await
            .expect("stores listed");
        stores.into_iter().map(|s| s.code).collect()
    }
}

async fn loadtest(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_spharos-loadtest"))
        .args(args)
        .env_remove("SPHAROS_TOKEN")
        .kill_on_drop(true)
        .output()
        .await
        .expect("runs")
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("json written")).expect("valid json")
}

fn phase_names(report: &serde_json::Value) -> Vec<&str> {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_scenario_runs_and_writes_json() {
    let server = Server::start().await;
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("nested/member.json");
    let out = loadtest(&[
        "member",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token,
        "--clients",
        "4",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--seed-members",
        "20",
        "--json",
        json.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(stdout.starts_with("phase "), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("join ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("find ")), "{stdout}");
    assert!(stderr.contains(": members 20, stores 1"), "{stderr}");
    // Not a TTY: plain progress lines, no carriage returns.
    assert!(
        stderr.contains("join (warm-up): 1.0s") || stderr.contains("join: "),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "{stderr}");

    let report = read_json(&json);
    assert_eq!(report["scenario"], "member");
    assert_eq!(report["seed"]["created"]["members"], 20);
    assert_eq!(phase_names(&report), ["join", "find"]);
    for phase in report["phases"].as_array().expect("phases") {
        assert!(phase["ok"].as_u64().unwrap_or(0) > 0, "{phase}");
        assert_eq!(phase["errors"], serde_json::json!({}), "{phase}");
        assert!(phase["latency_ms"]["p99"].as_f64().is_some(), "{phase}");
    }

    // The service holds the seeded store and every sign-up: the seed, the measured joins and
    // the warm-up joins (sent but not recorded), so strictly more than the first two.
    let store_code = report["seed"]["ids"]["store_code"]
        .as_str()
        .expect("store code");
    assert_eq!(server.store_codes().await, [store_code]);
    let measured_joins = report["phases"][0]["ok"].as_u64().expect("join ok");
    let members = server.member_count().await;
    assert!(
        members > 20 + measured_joins,
        "{members} members in the service, {measured_joins} measured joins"
    );
}

/// More clients than requests due, so every request finds a free client at its slot however
/// slow the debug-build service is; the driver's own tests cover falling behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_reports_the_schedule() {
    let server = Server::start().await;
    let out = loadtest(&[
        "member",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token,
        "--clients",
        "8",
        "--connections",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--seed-members",
        "5",
        "--rate",
        "5",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("join target rate: 5.0 req/s, 5 scheduled, 5 sent"),
        "{stdout}"
    );
    assert!(
        stdout.contains("find target rate: 5.0 req/s, 5 scheduled, 5 sent"),
        "{stdout}"
    );
    // No warm-up, every scheduled sign-up sent: exactly the seed plus the 5 joins.
    assert_eq!(server.member_count().await, 5 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_fails_the_seed_with_exit_1() {
    let server = Server::start().await;
    // Not a JWT at all, and a well-formed token signed by a key the service does not know.
    let foreign = TokenSigner::generate().mint(server.tenant, "loadtest", &[], 600);
    for (token, reason) in [
        ("wrong", "invalid token"),
        (foreign.as_str(), "token signed by an unknown key"),
    ] {
        let out = loadtest(&[
            "member",
            "--endpoint",
            &server.endpoint,
            "--token",
            token,
            "--duration",
            "1",
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "seed: CreateStore failed: UNAUTHENTICATED: {reason}"
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(server.store_codes().await.is_empty());
    assert_eq!(server.member_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_exits_1_with_one_line() {
    // A port that was free a moment ago: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = loadtest(&["member", "--endpoint", &endpoint, "--token", "any.token"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach {endpoint}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_partial_results_and_exits_130() {
    let server = Server::start().await;
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("partial.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spharos-loadtest"))
        .args([
            "member",
            "--endpoint",
            &server.endpoint,
            "--token",
            &server.token,
            "--clients",
            "2",
            "--duration",
            "60",
            "--warmup",
            "0",
            "--seed-members",
            "20",
            "--json",
            json.to_str().expect("utf-8"),
        ])
        .env_remove("SPHAROS_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let pid = child.id().expect("pid").to_string();

    // Collect stderr, and interrupt once the first progress line of the measured join phase
    // shows it under way (seeding takes a while on a debug build).
    let stderr = child.stderr.take().expect("piped stderr");
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
            let _ = line_tx.send(line);
        }
        all
    });
    let joining = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = line_rx.recv().await {
            if line.starts_with("join: ") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if joining {
        let kill = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(kill.success());
    } else {
        let _ = child.start_kill();
    }
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops soon after Ctrl-C")
        .expect("output");
    let stderr = reader.await.expect("stderr reader");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(joining, "the join phase never started\n{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("join ")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("find ")), "{stdout}");

    // The partial results are written too, and the service holds what they report.
    let report = read_json(&json);
    assert_eq!(phase_names(&report), ["join"]);
    let joins = report["phases"][0]["ok"].as_u64().expect("join ok");
    assert!(joins > 0, "{report}");
    let members = server.member_count().await;
    assert!(
        members >= 20 + joins,
        "{members} members in the service, {joins} joins reported"
    );
}

#[tokio::test]
async fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(
        loadtest(&["member", "--token", "any.token"])
            .await
            .status
            .code(),
        Some(64)
    );
    assert_eq!(
        loadtest(&[
            "member",
            "--endpoint",
            "http://127.0.0.1:1",
            "--token",
            "any.token",
            "--rate",
            "-3"
        ])
        .await
        .status
        .code(),
        Some(64)
    );
    assert_eq!(loadtest(&["nonsense"]).await.status.code(), Some(64));
    let help = loadtest(&["member", "--help"]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Example"));
    assert_eq!(loadtest(&["--version"]).await.status.code(), Some(0));
}
