//! Integration tests of the member service over gRPC, against real backends: PostgreSQL +
//! NATS JetStream, and SQLite + the in-process bus. Every scenario runs on both.

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

mod auth;
mod cards;
mod erasure;
mod grades;
mod helpers;
mod isolation;
mod members;
mod outbox;
mod pii;
mod stores;
