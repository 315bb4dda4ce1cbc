//! Integration tests of the points service over gRPC, against real backends: PostgreSQL +
//! NATS JetStream, and SQLite + the in-process bus. The member service runs on the same
//! server (members are resolved through its gRPC API, as in production). Every scenario runs
//! on both backends unless it is about PostgreSQL concurrency or a process crash.

/// Runs each named `async fn(TestBackend)` scenario once per backend, as two tests.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario(spharos_kit::testing::TestBackend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario(spharos_kit::testing::TestBackend::Sqlite).await
                }
            }
        )*
    };
}

mod adjust;
mod batch;
mod cancel;
mod concurrency;
mod crash;
mod earn;
mod expiry;

mod helpers;
mod history;
mod idempotency;
mod policy;
mod sequences;
mod spend;
