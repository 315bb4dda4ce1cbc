//! Integration tests of the privacy service over gRPC, against real backends: PostgreSQL +
//! NATS JetStream, and SQLite + the in-process bus. Every scenario runs on both, with the
//! member service in the same process (sign-up consents, data-subject requests).

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

mod access_log;
mod advertising;
mod consent_types;
mod consents;
mod content;
mod dsr;
mod helpers;
mod reconfirmation;
mod signup;
