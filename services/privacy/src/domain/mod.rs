//! The privacy service's domain: consent rules (required items, per-channel advertising
//! opt-in, the night-time window in the tenant zone), the access log's hash chain, the
//! data-subject request deadline, notices, policies and the consent / retention clocks.
//! No IO, no prost, no sea-orm: everything here is unit-tested as plain functions.
pub mod access_log;
pub mod consent;
pub mod dsr;
pub mod lifecycle;
pub mod notice;
pub mod policy;
