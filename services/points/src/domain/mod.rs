//! The points service's domain: pure types and rules (the earning policy and its arithmetic,
//! the ledger's lot allocation, cancel and expiry arithmetic, request validation). No IO, no
//! prost, no sea-orm, so all of it is unit- and property-tested as plain functions.
pub mod expiry;
pub mod forms;
pub mod ledger;
pub mod policy;

/// `1,200 P`: points with thousands separators, as Korean receipts print them.
pub fn format_points(points: i64) -> String {
    let won = spharos_kit::time::format_krw(points);
    // format_krw groups the digits and appends '원'; points say P instead.
    format!("{} P", won.trim_end_matches('원'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn points_are_grouped_by_thousands() {
        assert_eq!(super::format_points(1_200), "1,200 P");
        assert_eq!(super::format_points(0), "0 P");
        assert_eq!(super::format_points(-35_000), "-35,000 P");
    }
}
