//! Prints the `MembershipTenant` CRD as YAML:
//! `cargo run -p spharos-operator --bin crdgen > charts/spharos/crds/membershiptenants.yaml`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match spharos_operator::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}
