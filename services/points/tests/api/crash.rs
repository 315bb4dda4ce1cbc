//! The crash test: the points service (a child process, `points-test-server`, on PostgreSQL +
//! NATS) is SIGKILLed in the middle of a stream of earns and restarted. Afterwards every
//! acknowledged earn is in the ledger exactly once (and every unanswered one, retried with its
//! idempotency key, too), and each earn's `points.earned` event reaches a durable consumer
//! under exactly one event id.
use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use secrecy::ExposeSecret;
use spharos_kit::{
    db::Db,
    testing::{self, TestBackend},
};
use spharos_points::store::{migrations::Migrator, transactions};
use spharos_proto::points::{PointsEarned, points_service_client::PointsServiceClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

use crate::helpers::{Member, assert_ledger_consistent, earn_request, with_token};

const WORKERS: usize = 4;
const EARNS_PER_WORKER: usize = 40;
/// The child is killed once this many earns were acknowledged.
const KILL_AFTER: usize = 50;

/// Starts the child with `env` and waits until it serves.
async fn start_server(env: &[(String, String)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_points-test-server"))
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("points-test-server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("points-test-server ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "points-test-server did not become ready");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_loses_and_duplicates_no_earn_and_no_event() {
    let (mut settings, dir) = testing::settings(TestBackend::Postgres).await;
    // This process serves the member service; the child serves points and calls it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let member_addr = listener.local_addr().expect("address");
    settings.grpc.listen = member_addr.to_string();
    let (platform, signer) = testing::platform(settings.clone()).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    spharos_member::module(&platform, &mut routes)
        .await
        .expect("member module");
    let shutdown = platform.shutdown.clone();
    tokio::spawn(spharos_kit::grpc::serve(
        listener,
        routes.routes(),
        shutdown,
    ));
    let _stop = platform.shutdown.clone().drop_guard();

    // The child trusts this test's token signer and gets its own port.
    let public_key = dir.path().join("test-signer.pem");
    std::fs::write(&public_key, signer.public_key_pem()).expect("public key written");
    let points_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("address")
    };
    let url = settings
        .database
        .url
        .as_ref()
        .expect("postgres")
        .expose_secret()
        .to_string();
    let env: Vec<(String, String)> = [
        ("SPHAROS__DATABASE__URL", url),
        (
            "SPHAROS__DATABASE__DATA_DIR",
            dir.path().join("child").display().to_string(),
        ),
        (
            "SPHAROS__NATS__URL",
            settings.nats.url.clone().expect("nats"),
        ),
        ("SPHAROS__NATS__NAMESPACE", settings.nats.namespace.clone()),
        ("SPHAROS__NATS__STREAM", settings.nats.stream.clone()),
        ("SPHAROS__GRPC__LISTEN", points_addr.to_string()),
        ("SPHAROS__SERVICES__MEMBER", format!("http://{member_addr}")),
        (
            "SPHAROS__AUTH__PUBLIC_KEY_FILES",
            public_key.display().to_string(),
        ),
        ("SPHAROS__TELEMETRY__LOG_LEVEL", "error".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // A durable consumer of points.earned that records every delivery's event id.
    let deliveries: Arc<Mutex<Vec<(uuid::Uuid, String)>>> = Arc::default();
    let mut sub = platform
        .bus
        .subscribe("crash-test", &["points.earned"])
        .await
        .expect("subscribed");
    {
        let sink = deliveries.clone();
        tokio::spawn(async move {
            while let Some(next) = sub.next().await {
                if let Ok(d) = next {
                    let e: PointsEarned = d.envelope.decode().expect("PointsEarned");
                    sink.lock()
                        .expect("lock")
                        .push((d.envelope.id, e.transaction_id));
                    let _ = d.ack().await;
                }
            }
        });
    }

    let tenant = spharos_kit::TenantId::generate();
    let token = signer.mint(tenant, "pos-crash", &[], 600);
    let member_client = spharos_proto::member::member_service_client::MemberServiceClient::connect(
        format!("http://{member_addr}"),
    )
    .await
    .expect("member client");
    let mut members = Vec::new();
    for i in 0..WORKERS {
        let joined = member_client
            .clone()
            .join_member(with_token(
                spharos_proto::member::JoinMemberRequest {
                    name: "김철수".into(),
                    phone: format!("010-5555-{i:04}"),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("joined")
            .into_inner();
        members.push(Member {
            id: joined.member.expect("member").member_id,
            card: joined.card.expect("card").card_number,
        });
    }

    let mut child = start_server(&env).await;
    let channel = Channel::from_shared(format!("http://{points_addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let client = PointsServiceClient::new(channel);

    // (pos id → transaction id) acknowledged, and the pos ids sent without an answer.
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for (w, m) in members.iter().cloned().enumerate() {
        let (client, token, acked, unanswered) = (
            client.clone(),
            token.clone(),
            acked.clone(),
            unanswered.clone(),
        );
        workers.push(tokio::spawn(async move {
            for i in 0..EARNS_PER_WORKER {
                let pos = format!("W{w}-{i}");
                match client
                    .clone()
                    .earn(with_token(earn_request(&m, &pos, 10_000), &token))
                    .await
                {
                    Ok(r) => {
                        let id = r.into_inner().transaction.expect("t").transaction_id;
                        acked.lock().expect("lock").insert(pos, id);
                    }
                    Err(_) => unanswered.lock().expect("lock").push((w, pos)),
                }
            }
        }));
    }
    // SIGKILL mid-stream, while the workers keep sending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "earns did not flow");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.start_kill().expect("SIGKILL sent");
    child.wait().await.expect("child reaped");
    let acked_at_kill = acked.lock().expect("lock").len();
    for w in workers {
        w.await.expect("worker");
    }
    let unanswered_now = unanswered.lock().expect("lock").len();
    assert!(
        unanswered_now > 0,
        "the kill interrupted nothing (all {acked_at_kill} were acked first)"
    );

    // Restart; the tills retry every unanswered earn with the same idempotency key.
    let mut child = start_server(&env).await;
    let retries: Vec<(usize, String)> = unanswered.lock().expect("lock").clone();
    for (w, pos) in retries {
        let r = client
            .clone()
            .earn(with_token(earn_request(&members[w], &pos, 10_000), &token))
            .await
            .expect("a retry after the restart succeeds");
        let id = r.into_inner().transaction.expect("t").transaction_id;
        let mut acked = acked.lock().expect("lock");
        // An earn that committed before the kill answers with its first transaction.
        if let Some(previous) = acked.insert(pos.clone(), id.clone()) {
            assert_eq!(previous, id, "{pos} answered with two transactions");
        }
    }
    let acked: HashMap<String, String> = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), WORKERS * EARNS_PER_WORKER);

    // The ledger: every earn exactly once, under the acknowledged transaction id.
    let db = Db::open::<Migrator>(&settings.database, "points")
        .await
        .expect("points database");
    let tx = db.begin(tenant).await.expect("tx");
    let mut ledger_ids = HashSet::new();
    for m in &members {
        for row in transactions::all_of_member(&tx, tenant, m.uuid())
            .await
            .expect("ledger")
        {
            assert_eq!(row.kind, "EARN");
            assert!(
                ledger_ids.insert(row.id.to_string()),
                "duplicate ledger row"
            );
            let pos = row.pos_transaction_id.clone().expect("pos id");
            assert_eq!(
                acked.get(&pos),
                Some(&row.id.to_string()),
                "{pos}: ledger vs acknowledgement"
            );
        }
    }
    tx.commit().await.expect("commit");
    assert_eq!(
        ledger_ids.len(),
        acked.len(),
        "every earn in the ledger exactly once"
    );
    for m in &members {
        assert_ledger_consistent(&db, tenant, m.uuid()).await;
    }

    // The events: each earn's points.earned arrives, under exactly one event id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: HashSet<String> = deliveries
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, t)| t.clone())
            .collect();
        if ledger_ids.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} points.earned events arrived within 30 s",
            ledger_ids.iter().filter(|id| seen.contains(*id)).count(),
            ledger_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any late duplicate publish arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids_per_transaction: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    for (event, transaction) in deliveries.lock().expect("lock").iter() {
        ids_per_transaction
            .entry(transaction.clone())
            .or_default()
            .insert(*event);
    }
    assert_eq!(
        ids_per_transaction.len(),
        ledger_ids.len(),
        "events only for ledger entries"
    );
    for (transaction, ids) in &ids_per_transaction {
        assert_eq!(
            ids.len(),
            1,
            "transaction {transaction} announced under {} event ids",
            ids.len()
        );
    }
    child.start_kill().expect("stop the child");
    let _ = child.wait().await;
}
