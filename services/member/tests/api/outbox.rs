//! The transactional outbox across a NATS outage (PostgreSQL + a private nats-server): joins
//! succeed while NATS is dead, and once it is back every `member.joined` is delivered and
//! handled exactly once by a durable, idempotent consumer.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError,
    bus::{self, Bus, Envelope, EventHandler},
    testing::{self, TestBackend},
};
use tokio::process::{Child, Command};

use crate::helpers::spawn_app_with;

/// A nats-server of this test alone, killed when dropped.
struct NatsServer {
    child: Child,
}

fn nats_server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("SPHAROS_NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port()
}

impl NatsServer {
    async fn start(port: u16, store_dir: &Path) -> Self {
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (set SPHAROS_NATS_SERVER_BIN)",
                    bin.display()
                )
            });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child }
    }

    /// SIGKILL: no graceful shutdown, the way a crash or an OOM kill looks.
    async fn kill(mut self) {
        self.child.kill().await.expect("nats-server killed");
    }
}

/// Counts every event it is asked to handle (duplicates included, if the kit ever let one
/// through).
#[derive(Default)]
struct Counting {
    handled: Mutex<Vec<Envelope>>,
}

impl EventHandler for Counting {
    async fn handle(&self, _tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        self.handled.lock().expect("lock").push(event.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_everything_once_after_a_nats_outage() {
    let store_dir = tempfile::tempdir().expect("JetStream store dir");
    let port = free_port();
    let nats = NatsServer::start(port, store_dir.path()).await;
    let (mut settings, dir) = testing::settings(TestBackend::Postgres).await;
    settings.nats.url = Some(format!("nats://127.0.0.1:{port}"));
    let app = spawn_app_with(settings, dir).await;

    nats.kill().await;
    let mut joined = HashSet::new();
    for i in 0..20 {
        let m = app
            .join(&format!("회원{i}"), &format!("010-3000-{i:04}"))
            .await
            .member
            .expect("member");
        joined.insert(m.member_id);
    }
    assert_eq!(joined.len(), 20, "every join succeeded while NATS was down");

    let nats = NatsServer::start(port, store_dir.path()).await;
    // A fresh connection to the restarted server (the stream survived on disk).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let bus = loop {
        match Bus::connect(&app.platform.settings.nats).await {
            Ok(b) => break b,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "NATS did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let counting = Arc::new(Counting::default());
    bus::spawn_consumer(
        "test-joined",
        &["member.joined"],
        app.app.db().clone(),
        bus,
        counting.clone(),
        app.platform.shutdown.clone(),
    )
    .await
    .expect("consumer subscribed");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = counting.handled.lock().expect("lock").len();
        if n >= 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of 20 member.joined handled within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redeliveries (relay retries, ack timeouts) would show up as extra handled events.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handled = counting.handled.lock().expect("lock").clone();
    assert_eq!(handled.len(), 20, "no event handled twice");
    let ids: HashSet<_> = handled.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 20, "20 distinct events");
    let subjects: HashSet<_> = handled.iter().map(|e| e.subject_id.clone()).collect();
    assert_eq!(subjects, joined, "one member.joined per member");
    assert!(
        handled
            .iter()
            .all(|e| e.tenant == app.tenant && e.topic() == "member.joined")
    );

    drop(app);
    nats.kill().await;
}
