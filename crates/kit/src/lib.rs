//! The platform kit every Spharos service stands on: configuration, telemetry, databases
//! (PostgreSQL and SQLite), the event bus with its transactional outbox, tenancy and auth,
//! field-level PII crypto, and the one mapping from domain errors to gRPC status.
#![forbid(unsafe_code)]

pub mod auth;
pub mod bus;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod grpc;
pub mod idempotency;
pub mod paging;
pub mod platform;
pub mod statistics;
pub mod telemetry;
pub mod tenancy;
pub mod testing;
pub mod time;

pub use error::{ServiceError, Violations};
pub use tenancy::TenantId;
