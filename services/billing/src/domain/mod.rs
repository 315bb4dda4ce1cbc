//! The billing service's domain: pure types and rules (business registration numbers, the plan
//! catalogue, plan periods and proration, invoice computation, plan limits, CSV). No IO, no
//! prost, no sea-orm, so all of it is unit-tested as plain functions.
pub mod brn;
pub mod catalogue;
pub mod csv;
pub mod invoice;
pub mod limits;
pub mod month;
pub mod subscription;
pub mod tenant;
pub mod timeline;
pub mod token;
pub mod usage;
