//! The coupon service's domain: pure types and rules (codes and their check character,
//! discounts, validity windows, templates, the till's evaluation, vouchers, birthdays).
//! No IO, no prost, no sea-orm, so all of it is unit-tested as plain functions.
pub mod bulk;
pub mod code;
pub mod coupon;
pub mod discount;
pub mod member;
pub mod reasons;
pub mod template;
pub mod validity;
pub mod voucher;

/// A count with thousands separators (`1,000`), for messages.
pub fn count(n: i64) -> String {
    spharos_kit::time::format_krw(n)
        .trim_end_matches('원')
        .to_string()
}
