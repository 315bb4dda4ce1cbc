//! Scenarios: what to seed, which phases to measure, and what to check afterwards.
//!
//! A [`Scenario`] prepares its data once ([`Scenario::seed`]; any failure aborts the run with
//! exit code 1), then names its measured [`Phase`]s, which the driver runs one after the other,
//! then may compare what the service holds with what the run did ([`Scenario::verify`]).
//! Adding a scenario (campaign blast, ...) means: a module here with a type implementing
//! [`Scenario`], a subcommand in `cli.rs`, and a match arm in `main.rs`.

pub mod coupon;
pub mod member;
pub mod points;

use futures::future::BoxFuture;
use tonic_types::StatusExt as _;

use crate::driver::Phase;
use crate::report::{PhaseReport, SeedReport, Verification};

/// A load scenario: a seed step, then named phases, then checks.
pub trait Scenario: Send {
    /// Short name, used in the report (`member`).
    fn name(&self) -> &'static str;

    /// Creates the data the phases need. Errors end the run (exit code 1) with their message.
    fn seed(&mut self) -> BoxFuture<'_, anyhow::Result<SeedReport>>;

    /// The measured phases in run order; called once, after a successful seed.
    fn phases(&self) -> Vec<Phase>;

    /// Checks the service's state against what the phases did (their reports are given for
    /// context, e.g. how many requests timed out). A failed [`crate::report::Check`] fails the
    /// run; an `Err` means the checks could not be made. Not called after Ctrl-C.
    fn verify<'a>(
        &'a mut self,
        phases: &'a [PhaseReport],
    ) -> BoxFuture<'a, anyhow::Result<Verification>> {
        let _ = phases;
        Box::pin(async { Ok(Verification::default()) })
    }
}

/// `CODE: message` of a failed call, on one line.
pub fn status_line(status: &tonic::Status) -> String {
    let message = status.message().replace('\n', " ");
    if message.is_empty() {
        crate::report::code_name(status.code()).to_owned()
    } else {
        format!("{}: {message}", crate::report::code_name(status.code()))
    }
}

/// The stable reason of a status's `google.rpc.ErrorInfo` detail (`COUPON_SOLD_OUT`), or ""
/// when it carries none.
pub fn error_reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// Requests of the measured phases that ended without an answer from the server (the driver's
/// deadline, or the channel's). Such a write may still have been applied, which a check that
/// counts writes has to allow for.
pub fn unanswered(phases: &[PhaseReport]) -> u64 {
    phases
        .iter()
        .flat_map(|p| p.errors.iter())
        .filter(|(code, _)| matches!(code.as_str(), "DEADLINE_EXCEEDED" | "CANCELLED"))
        .map(|(_, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    #[test]
    fn reason_comes_from_error_info() {
        let details = tonic_types::ErrorDetails::with_error_info(
            "COUPON_SOLD_OUT",
            "spharos.io",
            std::collections::HashMap::<String, String>::new(),
        );
        let status =
            tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "sold out", details);
        assert_eq!(error_reason(&status), "COUPON_SOLD_OUT");
        assert_eq!(error_reason(&tonic::Status::internal("x")), "");
        assert_eq!(
            status_line(&status),
            "RESOURCE_EXHAUSTED: sold out".to_owned()
        );
    }
}
