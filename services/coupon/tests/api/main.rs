//! Integration tests of the coupon service over gRPC, against real backends: PostgreSQL +
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
mod batch;
mod bulk;
mod claims;
mod helpers;
mod isolation;
mod issue;
mod jobs;
mod members;
mod templates;
mod till;
mod vouchers;
