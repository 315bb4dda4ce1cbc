//! The member service's domain: pure types and rules (phone numbers, card numbers, grades,
//! validation, the masking choice). No IO, no prost, no sea-orm, so all of it is unit-tested
//! as plain functions.
pub mod card;
pub mod grade;
pub mod member;
pub mod phone;
pub mod pii;
pub mod store;
