//! The module registry (after Grafana Mimir's `-target`): every target names the modules it
//! depends on, `all` is a meta-target, and resolution returns modules in start order. The
//! database, bus and telemetry are invisible modules every target gets.
use std::fmt;

/// A service module the binary can host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Member,
    Points,
    Coupon,
    Privacy,
    Billing,
}

impl Target {
    pub const ALL: &'static [Target] = &[
        Target::Member,
        Target::Points,
        Target::Coupon,
        Target::Privacy,
        Target::Billing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Member => "member",
            Target::Points => "points",
            Target::Coupon => "coupon",
            Target::Privacy => "privacy",
            Target::Billing => "billing",
        }
    }

    /// Modules that must run in the same process before this one.
    pub fn dependencies(self) -> &'static [Target] {
        match self {
            // Modules reach each other over gRPC (`services.<module>`, this process by
            // default) and events, so none forces another into its process.
            Target::Member
            | Target::Points
            | Target::Coupon
            | Target::Privacy
            | Target::Billing => &[],
        }
    }

    fn parse(name: &str) -> Option<Target> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("unknown target {0:?}; valid targets: all, {valid}", valid = valid_targets())]
    Unknown(String),
    #[error("--target is empty; valid targets: all, {valid}", valid = valid_targets())]
    Empty,
}

fn valid_targets() -> String {
    Target::ALL
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves a comma-separated target list into modules in dependency order, without repeats.
pub fn resolve(spec: &str) -> Result<Vec<Target>, TargetError> {
    let names: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(TargetError::Empty);
    }
    let mut out = Vec::new();
    for name in names {
        if name == "all" {
            for t in Target::ALL {
                visit(*t, &mut out);
            }
            continue;
        }
        let t = Target::parse(name).ok_or_else(|| TargetError::Unknown(name.to_string()))?;
        visit(t, &mut out);
    }
    Ok(out)
}

fn visit(t: Target, out: &mut Vec<Target>) {
    if out.contains(&t) {
        return;
    }
    for dep in t.dependencies() {
        visit(*dep, out);
    }
    out.push(t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_every_target() {
        assert_eq!(resolve("all").expect("valid"), Target::ALL.to_vec());
    }

    #[test]
    fn repeats_collapse_and_unknowns_are_named() {
        assert_eq!(
            resolve("member, member").expect("valid"),
            vec![Target::Member]
        );
        let err = resolve("member,bogus").expect_err("bogus");
        assert_eq!(err, TargetError::Unknown("bogus".into()));
        assert!(
            err.to_string()
                .contains("valid targets: all, member, points, coupon, privacy, billing")
        );
        assert_eq!(resolve(" , ").expect_err("empty"), TargetError::Empty);
    }
}
