//! sea-orm entities of the privacy schema, one module per table.
pub mod access_log;
pub mod access_log_heads;
pub mod consent_changes;
pub mod consent_states;
pub mod consent_type_versions;
pub mod consent_types;
pub mod dsr_requests;
pub mod notices;
pub mod policy_versions;
pub mod privacy_members;
pub mod privacy_settings;
pub mod privacy_tenants;
pub mod reconfirmation_notices;
