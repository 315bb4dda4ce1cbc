//! End-to-end tests of the binary against an in-process fake member service.
//!
//! The fake checks the bearer token, keeps phones unique (ALREADY_EXISTS on a repeat, like the
//! real service's constraint) and answers FindMember for the cards it issued, so these tests
//! cover the CLI, exit codes, seeding, both phases and the JSON output without the real server.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use spharos_proto::member::member_service_server::{MemberService, MemberServiceServer};
use spharos_proto::member::*;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

const TOKEN: &str = "test.token.value";

#[derive(Default)]
struct State {
    stores: Vec<String>,
    phones: HashSet<String>,
    cards: HashMap<String, String>,
    joins: u64,
    finds: u64,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
}

fn check_auth<T>(request: &Request<T>) -> Result<(), Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if header == Some(&format!("Bearer {TOKEN}")) {
        Ok(())
    } else {
        Err(Status::unauthenticated("bad token"))
    }
}

/// Stubs for the methods the loadtest never calls. `#[async_trait]` does not look inside macro
/// calls, so the macro writes the signature async-trait would have produced.
macro_rules! unimplemented_methods {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        $(fn $method<'life0, 'async_trait>(
            &'life0 self,
            _: Request<$req>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented(stringify!($method))) })
        })*
    };
}

#[tonic::async_trait]
impl MemberService for Fake {
    async fn create_store(
        &self,
        request: Request<CreateStoreRequest>,
    ) -> Result<Response<CreateStoreResponse>, Status> {
        check_auth(&request)?;
        let request = request.into_inner();
        if request.code.is_empty() || request.name.is_empty() {
            return Err(Status::invalid_argument("code and name are required"));
        }
        let mut state = self.state.lock().expect("lock");
        let store_id = format!("store-{}", state.stores.len());
        state.stores.push(request.code.clone());
        Ok(Response::new(CreateStoreResponse {
            store: Some(Store {
                store_id,
                code: request.code,
                ..Store::default()
            }),
        }))
    }

    async fn join_member(
        &self,
        request: Request<JoinMemberRequest>,
    ) -> Result<Response<JoinMemberResponse>, Status> {
        check_auth(&request)?;
        let request = request.into_inner();
        let digits: String = request.phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 11 || !digits.starts_with("010") || request.idempotency_key.is_empty() {
            return Err(Status::invalid_argument(format!("bad sign-up {request:?}")));
        }
        let mut state = self.state.lock().expect("lock");
        if !state
            .stores
            .iter()
            .enumerate()
            .any(|(i, _)| request.join_store_id == format!("store-{i}"))
        {
            return Err(Status::invalid_argument("unknown store"));
        }
        if !state.phones.insert(digits) {
            return Err(Status::already_exists("phone taken"));
        }
        state.joins += 1;
        let card_number = format!("{:016}", 9_000_000_000_000_000_u64 + state.joins);
        let member_id = format!("member-{}", state.joins);
        state.cards.insert(card_number.clone(), member_id.clone());
        Ok(Response::new(JoinMemberResponse {
            member: Some(Member {
                member_id: member_id.clone(),
                ..Member::default()
            }),
            card: Some(Card {
                member_id,
                card_number,
                ..Card::default()
            }),
        }))
    }

    async fn find_member(
        &self,
        request: Request<FindMemberRequest>,
    ) -> Result<Response<FindMemberResponse>, Status> {
        check_auth(&request)?;
        let Some(find_member_request::Key::CardNumber(card)) = request.into_inner().key else {
            return Err(Status::invalid_argument("card_number expected"));
        };
        let mut state = self.state.lock().expect("lock");
        state.finds += 1;
        let member_id = state
            .cards
            .get(&card)
            .cloned()
            .ok_or_else(|| Status::not_found("no such card"))?;
        Ok(Response::new(FindMemberResponse {
            member: Some(Member {
                member_id,
                ..Member::default()
            }),
        }))
    }

    unimplemented_methods! {
        get_store(GetStoreRequest) -> GetStoreResponse;
        update_store(UpdateStoreRequest) -> UpdateStoreResponse;
        list_stores(ListStoresRequest) -> ListStoresResponse;
        get_member(GetMemberRequest) -> GetMemberResponse;
        update_member(UpdateMemberRequest) -> UpdateMemberResponse;
        withdraw_member(WithdrawMemberRequest) -> WithdrawMemberResponse;
        list_members(ListMembersRequest) -> ListMembersResponse;
        issue_card(IssueCardRequest) -> IssueCardResponse;
        report_card_lost(ReportCardLostRequest) -> ReportCardLostResponse;
        replace_card(ReplaceCardRequest) -> ReplaceCardResponse;
        list_cards(ListCardsRequest) -> ListCardsResponse;
        set_grades(SetGradesRequest) -> SetGradesResponse;
        list_grades(ListGradesRequest) -> ListGradesResponse;
        evaluate_grades(EvaluateGradesRequest) -> EvaluateGradesResponse;
    }
}

/// Serves the fake on a free loopback port until the test's runtime ends.
async fn spawn_fake() -> (SocketAddr, Fake) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = Fake::default();
    let service = MemberServiceServer::new(fake.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, fake)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_scenario_runs_and_writes_json() {
    let (addr, fake) = spawn_fake().await;
    let dir = std::env::temp_dir().join(format!("spharos-loadtest-e2e-{}", uuid::Uuid::new_v4()));
    let json = dir.join("nested/member.json");
    let endpoint = format!("http://{addr}");
    let out = loadtest(&[
        "member",
        "--endpoint",
        &endpoint,
        "--token",
        TOKEN,
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

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json");
    assert_eq!(report["scenario"], "member");
    assert_eq!(report["seed"]["created"]["members"], 20);
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(
        phases
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["join", "find"]
    );
    for phase in phases {
        assert!(phase["ok"].as_u64().unwrap_or(0) > 0, "{phase}");
        assert_eq!(phase["errors"], serde_json::json!({}), "{phase}");
        assert!(phase["latency_ms"]["p99"].as_f64().is_some(), "{phase}");
    }
    let state = fake.state.lock().expect("lock");
    assert_eq!(state.stores.len(), 1);
    assert!(state.joins > 20 && state.finds > 0);
    drop(state);
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_reports_the_schedule() {
    let (addr, _fake) = spawn_fake().await;
    let endpoint = format!("http://{addr}");
    let out = loadtest(&[
        "member",
        "--endpoint",
        &endpoint,
        "--token",
        TOKEN,
        "--clients",
        "4",
        "--connections",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0",
        "--seed-members",
        "5",
        "--rate",
        "50",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("join target rate: 50.0 req/s, 100 scheduled, 100 sent"),
        "{stdout}"
    );
    assert!(
        stdout.contains("find target rate: 50.0 req/s, 100 scheduled, 100 sent"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_fails_the_seed_with_exit_1() {
    let (addr, _fake) = spawn_fake().await;
    let endpoint = format!("http://{addr}");
    let out = loadtest(&[
        "member",
        "--endpoint",
        &endpoint,
        "--token",
        "wrong",
        "--duration",
        "1",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("seed: CreateStore failed: UNAUTHENTICATED: bad token"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
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
    let out = loadtest(&["member", "--endpoint", &endpoint, "--token", TOKEN]).await;
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
    let (addr, _fake) = spawn_fake().await;
    let endpoint = format!("http://{addr}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spharos-loadtest"))
        .args([
            "member",
            "--endpoint",
            &endpoint,
            "--token",
            TOKEN,
            "--clients",
            "2",
            "--duration",
            "60",
            "--warmup",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let pid = child.id().expect("pid").to_string();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops soon after Ctrl-C")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.starts_with("join ")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("find ")), "{stdout}");
}

#[tokio::test]
async fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(
        loadtest(&["member", "--token", TOKEN]).await.status.code(),
        Some(64)
    );
    assert_eq!(
        loadtest(&[
            "member",
            "--endpoint",
            "http://127.0.0.1:1",
            "--token",
            TOKEN,
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

/// How the default of one shared channel was chosen (see `connect.rs`): the same closed-loop run
/// over one HTTP/2 connection and over one connection per client, against the fake, which costs
/// next to nothing per call, so the client side is what is measured.
/// `cargo test -p spharos-loadtest --test fake_server -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn compare_connection_modes() {
    let (addr, _fake) = spawn_fake().await;
    let endpoint = format!("http://{addr}");
    for connections in ["1", "32", "1", "32"] {
        let out = loadtest(&[
            "member",
            "--endpoint",
            &endpoint,
            "--token",
            TOKEN,
            "--clients",
            "32",
            "--connections",
            connections,
            "--duration",
            "3",
            "--warmup",
            "1",
            "--seed-members",
            "50",
        ])
        .await;
        assert!(out.status.success());
        eprintln!(
            "--connections {connections}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
