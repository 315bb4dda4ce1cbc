//! sea-orm entities of the points schema, one per table.
pub mod point_accounts;
pub mod point_expiry_notices;
pub mod point_lot_movements;
pub mod point_lots;
pub mod point_policies;
pub mod point_tenants;
pub mod point_transactions;
