//! Scenarios: what to seed and which phases to measure.
//!
//! A [`Scenario`] prepares its data once ([`Scenario::seed`]; any failure aborts the run with
//! exit code 1), then names its measured [`Phase`]s, which the driver runs one after the other.
//! Adding a scenario (points earn/spend, coupon rush, campaign blast) means: a module here with a
//! type implementing [`Scenario`], a subcommand in `cli.rs`, and a match arm in `main.rs`.

pub mod member;

use futures::future::BoxFuture;

use crate::driver::Phase;
use crate::report::SeedReport;

/// A load scenario: a seed step, then named phases.
pub trait Scenario: Send {
    /// Short name, used in the report (`member`).
    fn name(&self) -> &'static str;

    /// Creates the data the phases need. Errors end the run (exit code 1) with their message.
    fn seed(&mut self) -> BoxFuture<'_, anyhow::Result<SeedReport>>;

    /// The measured phases in run order; called once, after a successful seed.
    fn phases(&self) -> Vec<Phase>;
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
