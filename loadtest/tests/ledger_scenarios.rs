//! End-to-end tests of the `points` and `coupon` scenarios against the real services.
//!
//! Each test starts the member, points and coupon modules on one tonic router on a free
//! loopback port (the points module resolves members through the member service at
//! `grpc.listen`, so the port is bound before the modules are built, as in
//! `services/points/tests/api`), on SQLite and the in-process bus or on PostgreSQL and NATS
//! JetStream, and mints a token for a fresh tenant. Besides the exit code, the table and the
//! JSON, every test reads what the run left in the services' own tables: the ledger entries
//! the report counted, the coupons and redemptions.

use std::collections::BTreeMap;

use spharos_coupon::CouponApp;
use spharos_coupon::domain::coupon::RedemptionStatus;
use spharos_kit::TenantId;
use spharos_kit::auth::TokenSigner;
use spharos_kit::paging::PageRequest;
use spharos_kit::platform::Platform;
use spharos_kit::testing::{self, TestBackend};
use spharos_member::MemberApp;
use spharos_member::domain::member::MemberFilter;
use spharos_points::PointsApp;
use uuid::Uuid;

/// Member, points and coupon services on a free loopback port, for one fresh tenant.
struct Server {
    endpoint: String,
    tenant: TenantId,
    signer: TokenSigner,
    members: MemberApp,
    points: PointsApp,
    coupons: CouponApp,
    platform: Platform,
    /// The SQLite databases live here; kept for the whole test.
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stops the gRPC server and every module's relays, consumers and schedules.
        self.platform.shutdown.cancel();
    }
}

impl Server {
    async fn start(backend: TestBackend) -> Self {
        let (mut settings, dir) = testing::settings(backend).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound address");
        settings.grpc.listen = addr.to_string();
        let (platform, signer) = testing::platform(settings).await;
        // As `spharos serve` does: nothing is delivered until every consumer is subscribed.
        platform.bus.hold_deliveries();
        let mut routes = tonic::service::RoutesBuilder::default();
        let (_member, members) = spharos_member::module(&platform, &mut routes)
            .await
            .expect("the member module starts");
        let (_points, points) = spharos_points::module(&platform, &mut routes)
            .await
            .expect("the points module starts");
        let (_coupon, coupons) = spharos_coupon::module(&platform, &mut routes)
            .await
            .expect("the coupon module starts");
        platform.bus.release_deliveries();
        let shutdown = platform.shutdown.clone();
        tokio::spawn(async move {
            spharos_kit::grpc::serve(listener, routes.routes(), shutdown)
                .await
                .expect("the gRPC server runs");
        });
        Self {
            endpoint: format!("http://{addr}"),
            tenant: TenantId::generate(),
            signer,
            members,
            points,
            coupons,
            platform,
            _dir: dir,
        }
    }

    fn token(&self, permissions: &[&str]) -> String {
        self.signer.mint(self.tenant, "loadtest", permissions, 600)
    }

    /// Ids of every member of the test's tenant.
    async fn member_ids(&self) -> Vec<Uuid> {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let page = PageRequest::parse(1000, &token).expect("valid page");
            let (members, next) = self
                .members
                .list_members(self.tenant, MemberFilter::default(), page)
                .await
                .expect("members listed");
            ids.extend(members.into_iter().map(|m| m.profile.id));
            if next.is_empty() {
                return ids;
            }
            token = next;
        }
    }

    /// Ledger entries of the tenant by kind (`EARN`, `SPEND`, `CANCEL_EARN`, ...), and the
    /// members whose stored entries do not add up to their stored balance.
    async fn ledger(&self) -> (BTreeMap<String, u64>, Vec<Uuid>) {
        let db = self.points.db();
        let mut kinds = BTreeMap::new();
        let mut off = Vec::new();
        for member in self.member_ids().await {
            let tx = db.begin(self.tenant).await.expect("tx");
            let entries =
                spharos_points::store::transactions::all_of_member(&tx, self.tenant, member)
                    .await
                    .expect("ledger");
            let account = spharos_points::store::accounts::get(&tx, self.tenant, member)
                .await
                .expect("account");
            tx.commit().await.expect("commit");
            for e in &entries {
                *kinds.entry(e.kind.clone()).or_default() += 1;
                if e.kind == "CANCEL_EARN" {
                    let original = e.original_transaction_id.expect("a cancel names its earn");
                    assert!(
                        entries.iter().any(|o| o.id == original && o.kind == "EARN"),
                        "cancel {} of an unknown earn",
                        e.id
                    );
                }
            }
            let sum: i64 = entries.iter().map(|e| e.points).sum();
            let stored = account.map_or(0, |a| a.available + a.pending - a.debt);
            if sum != stored {
                off.push(member);
            }
        }
        (kinds, off)
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

fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {report}"))
}

fn count(value: &serde_json::Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

const SEED_MEMBERS: u64 = 12;

async fn points_scenario_matches_the_ledger(backend: TestBackend) {
    let server = Server::start(backend).await;
    let token = server.token(&[spharos_points::PERM_POINTS_ADMIN]);
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("points.json");
    let out = loadtest(&[
        "points",
        "--endpoint",
        &server.endpoint,
        "--token",
        &token,
        "--clients",
        "4",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--seed-members",
        &SEED_MEMBERS.to_string(),
        "--json",
        json.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for name in ["earn ", "spend ", "balance ", "pos-mixed "] {
        assert!(stdout.lines().any(|l| l.starts_with(name)), "{stdout}");
    }
    assert!(
        stdout.contains("check balances: ok: the balances of all 12 members"),
        "{stdout}"
    );

    let report = read_json(&json);
    assert_eq!(report["scenario"], "points");
    assert_eq!(report["seed"]["created"]["members"], SEED_MEMBERS);
    for name in ["earn", "spend", "balance", "pos-mixed"] {
        let p = phase(&report, name);
        assert!(count(&p["ok"]) > 0, "{p}");
        assert_eq!(p["errors"], serde_json::json!({}), "{p}");
        assert_eq!(p["rejected"], serde_json::json!({}), "{p}");
        assert!(p["latency_ms"]["p99"].as_f64().is_some(), "{p}");
    }
    let writes = &report["verification"]["facts"]["ledger_writes"];
    let (earns, spends, cancels) = (
        count(&writes["earn"]),
        count(&writes["spend"]),
        count(&writes["cancel"]),
    );
    // The totals include the seed earns and the (unrecorded) warm-ups besides the measured
    // requests.
    let measured_earns = count(&phase(&report, "earn")["ok"]);
    assert!(earns > SEED_MEMBERS + measured_earns, "{writes}");
    assert!(spends > count(&phase(&report, "spend")["ok"]), "{writes}");

    // The ledger holds exactly the writes the run counted, and every member's entries add up
    // to the stored balance.
    let (kinds, off) = server.ledger().await;
    assert_eq!(kinds.get("EARN").copied().unwrap_or(0), earns, "{kinds:?}");
    assert_eq!(
        kinds.get("SPEND").copied().unwrap_or(0),
        spends,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.get("CANCEL_EARN").copied().unwrap_or(0),
        cancels,
        "{kinds:?}"
    );
    assert_eq!(kinds.len(), if cancels > 0 { 3 } else { 2 }, "{kinds:?}");
    assert!(
        off.is_empty(),
        "entries do not add up to the balance of {off:?}"
    );
    // pos-mixed sends 10 % cancels: over a second of 4 clients some happened (each client
    // cancels only earns it made itself, checked above by the original earn's presence).
    assert!(cancels > 0, "{writes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_scenario_matches_the_ledger_sqlite() {
    points_scenario_matches_the_ledger(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_scenario_matches_the_ledger_postgres() {
    points_scenario_matches_the_ledger(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_without_admin_permission_fails_the_seed_with_exit_1() {
    let server = Server::start(TestBackend::Sqlite).await;
    let out = loadtest(&[
        "points",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token(&[]),
        "--seed-members",
        "3",
        "--duration",
        "1",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("seed: UpdatePointsPolicy failed: PERMISSION_DENIED"),
        "{stderr}"
    );
    assert!(stderr.contains("--permission points:admin"), "{stderr}");
    assert!(out.stdout.is_empty());
    // The members were signed up before the policy step; no point was earned.
    assert_eq!(server.member_ids().await.len(), 3);
    let (kinds, _) = server.ledger().await;
    assert!(kinds.is_empty(), "{kinds:?}");
}

const QUANTITY: u64 = 40;

async fn coupon_rush_sells_out_exactly(backend: TestBackend) {
    let server = Server::start(backend).await;
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("coupon.json");
    let out = loadtest(&[
        "coupon",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token(&[]),
        "--clients",
        "4",
        "--duration",
        "5",
        "--warmup",
        "0",
        "--quantity",
        &QUANTITY.to_string(),
        "--repeat-percent",
        "30",
        "--json",
        json.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("check issued_count: ok: template issued_count 40 (quantity 40, claims the run saw succeed 40, sold out: yes)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check per_member_limit: ok: 0 of "),
        "{stdout}"
    );
    assert!(
        stdout.contains("check coupon_status: ok: 40 coupons read back"),
        "{stdout}"
    );
    assert!(stdout.contains("claim rejected as expected: "), "{stdout}");

    let report = read_json(&json);
    let claim = phase(&report, "claim");
    // No warm-up: the measured claims are every claim. 40 coupons go in well under 5 s even
    // on a debug build, so the rush sold out during the phase and the clients stopped there.
    assert_eq!(count(&claim["ok"]), QUANTITY, "{claim}");
    assert_eq!(claim["errors"], serde_json::json!({}), "{claim}");
    assert!(
        count(&claim["rejected"]["RESOURCE_EXHAUSTED"]) >= 1,
        "{claim}"
    );
    assert!(claim["seconds"].as_f64().expect("seconds") < 5.0, "{claim}");
    assert_eq!(
        report["verification"]["facts"]["sold_out_during_phases"],
        true
    );
    // Repeats refused by the per-member limit (none only if no client drew a repeat).
    let repeats = claim["rejected"]["ALREADY_EXISTS"].as_u64().unwrap_or(0);
    assert!(
        count(&claim["requests"])
            == QUANTITY + repeats + count(&claim["rejected"]["RESOURCE_EXHAUSTED"]),
        "{claim}"
    );
    let validate = phase(&report, "validate");
    assert!(count(&validate["ok"]) > 0, "{validate}");
    assert_eq!(validate["errors"], serde_json::json!({}), "{validate}");
    let redeem = phase(&report, "redeem");
    assert_eq!(count(&redeem["ok"]), QUANTITY, "{redeem}");
    assert_eq!(redeem["errors"], serde_json::json!({}), "{redeem}");
    assert_eq!(report["verification"]["facts"]["redemptions"], QUANTITY);

    // The coupon service's tables: exactly the quantity issued, nobody holding two, and one
    // live redemption per till transaction id the run used (`<run>-r<client>-<n>`, n from 1).
    let template_id: Uuid = report["seed"]["ids"]["template_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("template id");
    let run = report["seed"]["ids"]["run"].as_str().expect("run id");
    let db = server.coupons.db();
    let tx = db.begin(server.tenant).await.expect("tx");
    let issued =
        spharos_coupon::store::coupons::count_for_template(&tx, server.tenant, template_id)
            .await
            .expect("count");
    let most =
        spharos_coupon::store::coupons::max_held_by_a_member(&tx, server.tenant, template_id)
            .await
            .expect("max held");
    let stored_count =
        spharos_coupon::store::templates::issued_count(&tx, server.tenant, template_id)
            .await
            .expect("issued count");
    let mut redemptions = 0;
    for client in 0..4 {
        for n in 1.. {
            let pos = format!("{run}-r{client}-{n}");
            let found =
                spharos_coupon::store::redemptions::in_transaction(&tx, server.tenant, &pos)
                    .await
                    .expect("redemptions");
            if found.is_empty() {
                break;
            }
            assert_eq!(found.len(), 1, "{pos}");
            assert_eq!(found[0].status, RedemptionStatus::Redeemed, "{pos}");
            assert_eq!(found[0].template_id, template_id);
            redemptions += 1;
        }
    }
    tx.commit().await.expect("commit");
    assert_eq!(issued, QUANTITY);
    assert_eq!(stored_count, Some(QUANTITY as i64));
    assert_eq!(most, 1);
    assert_eq!(redemptions, QUANTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_rush_sells_out_exactly_sqlite() {
    coupon_rush_sells_out_exactly(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_rush_sells_out_exactly_postgres() {
    coupon_rush_sells_out_exactly(TestBackend::Postgres).await;
}

/// A quantity far above what the phases can claim: the check claims the rest (unmeasured)
/// so the issued count still ends at exactly the quantity; claiming after the sell-out is
/// not exercised here but in the rush above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_check_sells_out_the_rest_after_the_phases() {
    let server = Server::start(TestBackend::Sqlite).await;
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("coupon.json");
    let out = loadtest(&[
        "coupon",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token(&[]),
        "--clients",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--rate",
        "10",
        "--quantity",
        "300",
        "--repeat-percent",
        "0",
        "--json",
        json.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report = read_json(&json);
    let claim = phase(&report, "claim");
    // 10 claims/s for one second: nowhere near 300.
    assert_eq!(count(&claim["ok"]), 10, "{claim}");
    assert_eq!(claim["rejected"], serde_json::json!({}), "{claim}");
    let facts = &report["verification"]["facts"];
    assert_eq!(facts["sold_out_during_phases"], false, "{facts}");
    assert_eq!(facts["claims_to_sell_out_after_phases"], 291, "{facts}");
    assert!(stdout.contains("check issued_count: ok: template issued_count 300 (quantity 300, claims the run saw succeed 300, sold out: yes)"), "{stdout}");
    let template_id: Uuid = report["seed"]["ids"]["template_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("template id");
    let tx = server.coupons.db().begin(server.tenant).await.expect("tx");
    let issued =
        spharos_coupon::store::coupons::count_for_template(&tx, server.tenant, template_id)
            .await
            .expect("count");
    tx.commit().await.expect("commit");
    assert_eq!(issued, 300);
}

/// `--claim-after-sold-out`: the clients keep claiming for the whole phase and every claim
/// after the sell-out is an expected rejection, not an error (the run succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_after_the_sell_out_are_rejections_not_errors() {
    let server = Server::start(TestBackend::Sqlite).await;
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let json = out_dir.path().join("coupon.json");
    let out = loadtest(&[
        "coupon",
        "--endpoint",
        &server.endpoint,
        "--token",
        &server.token(&[]),
        "--clients",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--quantity",
        "5",
        "--repeat-percent",
        "0",
        "--claim-after-sold-out",
        "--json",
        json.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report = read_json(&json);
    let claim = phase(&report, "claim");
    assert_eq!(count(&claim["ok"]), 5, "{claim}");
    assert_eq!(claim["errors"], serde_json::json!({}), "{claim}");
    let sold_out = count(&claim["rejected"]["RESOURCE_EXHAUSTED"]);
    assert!(sold_out > 5, "{claim}");
    assert_eq!(count(&claim["requests"]), 5 + sold_out, "{claim}");
    // The phase ran its whole second instead of ending at the sell-out.
    assert!(
        claim["seconds"].as_f64().expect("seconds") >= 0.9,
        "{claim}"
    );
    assert!(
        claim["rejected_latency_ms"]["p99"].as_f64().is_some(),
        "{claim}"
    );
    assert!(
        stdout.contains("check issued_count: ok: template issued_count 5 (quantity 5"),
        "{stdout}"
    );
    let template_id: Uuid = report["seed"]["ids"]["template_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("template id");
    let tx = server.coupons.db().begin(server.tenant).await.expect("tx");
    let issued =
        spharos_coupon::store::coupons::count_for_template(&tx, server.tenant, template_id)
            .await
            .expect("count");
    tx.commit().await.expect("commit");
    assert_eq!(issued, 5);
}
