//! Command line of `spharos-loadtest` (clap derive).
//!
//! Every scenario is a subcommand. The knobs every scenario shares (endpoint, token, clients,
//! duration, warm-up, rate, connections, JSON output) live in [`CommonArgs`] and are flattened
//! into each subcommand, so a new scenario only declares its own extra flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, value_parser};

/// Load generator for Spharos gRPC APIs, with HdrHistogram latency reports.
#[derive(Debug, Parser)]
#[command(
    name = "spharos-loadtest",
    version,
    about,
    after_help = "Examples:\n  spharos-loadtest member --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --clients 32 --duration 10\n  spharos-loadtest points --endpoint http://127.0.0.1:50051 --token \"$ADMIN_TOKEN\" --clients 32\n  spharos-loadtest coupon --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --quantity 5000\n\nExit codes: 0 success, 1 target unreachable, seed failed or a consistency check failed, 64 usage error, 130 interrupted (results so far are still printed)."
)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Member service: seed a store and members, then measure JoinMember and FindMember by card.
    #[command(
        after_help = "Examples:\n  spharos-loadtest member --endpoint http://127.0.0.1:50051 --token \"$TOKEN\"\n  spharos-loadtest member --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --clients 64 --duration 30 --warmup 5 --json target/loadtest/member.json\n  spharos-loadtest member --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --rate 500 --duration 20   # fixed rate, 500 req/s"
    )]
    Member(MemberArgs),
    /// Points service: seed members, a policy and their first earns, then measure Earn, Spend,
    /// GetBalance and a POS mix (70 % earn, 20 % spend, 10 % cancel); then check every
    /// member's balance against the writes the run made.
    #[command(
        long_about = "Points service: seed a store and members (member service), set the tenant's \
                      points policy (1 % base rate, no pending period; needs a token with the \
                      points:admin permission) and one earn of --seed-amount-krw per member, then \
                      measure the phases earn (Earn, unique POS transaction id and idempotency key), \
                      spend (Spend of --spend-points), balance (GetBalance by member id) and \
                      pos-mixed (70 % earn, 20 % spend, 10 % cancel of an earlier earn of the same \
                      client). Afterwards every seeded member's balance must equal the sum of the \
                      point changes of the run's successful writes (check `balances`).",
        after_help = "Examples:\n  TOKEN=$(spharos tenant token --tenant \"$TENANT\" --permission points:admin)\n  spharos-loadtest points --endpoint http://127.0.0.1:50051 --token \"$TOKEN\"\n  spharos-loadtest points --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --clients 1 --seed-members 1000 --duration 30 --json target/loadtest/points.json"
    )]
    Points(PointsArgs),
    /// Coupon service: a first-come claim rush on a limited template (1 per member), then
    /// ValidateCoupon and RedeemCoupon of the issued coupons; then check the issued count.
    #[command(
        long_about = "Coupon service: create an ACTIVE template of --quantity coupons, one per member, \
                      then measure the phases claim (ClaimCoupon for new member ids, and \
                      --repeat-percent repeats for members already holding one; sold out and \
                      per-member-limit refusals are reported apart as expected rejections, and the \
                      clients stop at the sell-out unless --claim-after-sold-out), validate \
                      (ValidateCoupon of issued coupons) and redeem (RedeemCoupon of each issued \
                      coupon once; the clients stop when none is left). Afterwards the rest of the \
                      quantity is claimed if it did not sell out, and the template's issued count \
                      must equal the quantity and the successful claims the run saw.",
        after_help = "Examples:\n  spharos-loadtest coupon --endpoint http://127.0.0.1:50051 --token \"$TOKEN\"\n  spharos-loadtest coupon --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --clients 64 --quantity 20000 --repeat-percent 0\n  spharos-loadtest coupon --endpoint http://127.0.0.1:50051 --token \"$TOKEN\" --quantity 100 --claim-after-sold-out --duration 5   # measure the refusals"
    )]
    Coupon(CouponArgs),
}

/// Flags of the `member` scenario.
#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Members created in the seed phase; FindMember looks up their card numbers at random.
    #[arg(long, default_value_t = 200, value_parser = value_parser!(u32).range(1..=100_000))]
    pub seed_members: u32,
}

/// Flags of the `points` scenario.
#[derive(Debug, Args)]
pub struct PointsArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Members created in the seed phase; every call picks one of them at random.
    #[arg(long, default_value_t = 500, value_parser = value_parser!(u32).range(1..=100_000))]
    pub seed_members: u32,

    /// Purchase amount (KRW) of the one seed earn per member; at 1 % the default gives
    /// 100,000 points, enough for 10,000 spends of 10.
    #[arg(long, value_name = "KRW", default_value_t = 10_000_000, value_parser = value_parser!(i64).range(100..=100_000_000_000))]
    pub seed_amount_krw: i64,

    /// Points taken by each Spend.
    #[arg(long, value_name = "POINTS", default_value_t = 10, value_parser = value_parser!(i64).range(1..=1_000_000))]
    pub spend_points: i64,

    /// Only these phases (comma-separated, run in the usual order), e.g. `pos-mixed` to
    /// measure that scenario without the event backlog earlier phases leave; default all.
    #[arg(long, value_delimiter = ',', value_parser = ["earn", "spend", "balance", "pos-mixed"])]
    pub phases: Vec<String>,
}

/// Flags of the `coupon` scenario.
#[derive(Debug, Args)]
pub struct CouponArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Coupons the template may issue in all (the claim rush sells them out).
    #[arg(long, default_value_t = 5_000, value_parser = value_parser!(u64).range(1..=10_000_000))]
    pub quantity: u64,

    /// Percent of claims repeated for a member who already holds the coupon (each must be
    /// refused with ALREADY_EXISTS COUPON_LIMIT_REACHED).
    #[arg(long, value_name = "PERCENT", default_value_t = 10, value_parser = value_parser!(u32).range(0..=100))]
    pub repeat_percent: u32,

    /// Keep claiming after the sell-out until the phase ends (measures the refusal path)
    /// instead of ending the claim phase at the sell-out.
    #[arg(long)]
    pub claim_after_sold_out: bool,
}

/// Flags every scenario shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// gRPC endpoint of the Spharos server (plain HTTP/2, no TLS).
    #[arg(long, value_name = "URL", value_parser = parse_endpoint)]
    pub endpoint: String,

    /// API token (JWT) sent as `authorization: Bearer <token>`; mint one with `spharos tenant token`.
    #[arg(long, value_name = "JWT", env = "SPHAROS_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: String,

    /// Concurrent clients (one task each).
    #[arg(long, default_value_t = 32, value_parser = value_parser!(u32).range(1..=10_000))]
    pub clients: u32,

    /// Measured seconds per phase.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = value_parser!(u64).range(1..=86_400))]
    pub duration: u64,

    /// Warm-up seconds before each phase's measurement (requests sent, not recorded).
    #[arg(long, value_name = "SECONDS", default_value_t = 2, value_parser = value_parser!(u64).range(0..=3_600))]
    pub warmup: u64,

    /// Fixed total rate in requests per second instead of a closed loop. Latency is then measured
    /// from each request's scheduled send time (no coordinated omission).
    #[arg(long, value_name = "REQ_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// HTTP/2 connections the clients share round-robin (capped at --clients).
    #[arg(long, default_value_t = crate::connect::DEFAULT_CONNECTIONS, value_parser = value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Per-request deadline in seconds; a request past it counts as DEADLINE_EXCEEDED.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    /// Also write the whole result as JSON to this file (parent directories are created).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// Accepts `http://host:port` URLs only (the loadtest is built without TLS).
fn parse_endpoint(s: &str) -> Result<String, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(s.to_owned())
        .map_err(|e| format!("not a URL: {e}"))?;
    let uri = endpoint.uri();
    if uri.scheme_str() != Some("http") {
        return Err(
            "use an http:// URL such as http://127.0.0.1:50051 (TLS is not supported)".into(),
        );
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// The raw token, without a `Bearer ` prefix; must be usable as an ASCII header value.
fn parse_token(s: &str) -> Result<String, String> {
    let token = s.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(token.to_owned())
}

/// A positive, finite rate up to 10 million requests per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !rate.is_finite() || rate <= 0.0 || rate > 10_000_000.0 {
        return Err("the rate must be above 0 and at most 10,000,000 req/s".into());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn member_defaults() {
        let cli = Cli::try_parse_from([
            "spharos-loadtest",
            "member",
            "--endpoint",
            "http://127.0.0.1:50051",
            "--token",
            "abc.def.ghi",
        ])
        .expect("parses");
        let Command::Member(args) = cli.command else {
            panic!("parsed as another scenario");
        };
        assert_eq!(args.common.clients, 32);
        assert_eq!(args.common.duration, 10);
        assert_eq!(args.common.warmup, 2);
        assert_eq!(args.common.rate, None);
        assert_eq!(args.seed_members, 200);
        assert_eq!(args.common.token, "abc.def.ghi");
    }

    #[test]
    fn points_and_coupon_defaults() {
        let base = ["--endpoint", "http://127.0.0.1:50051", "--token", "t"];
        let points = Cli::try_parse_from(["spharos-loadtest", "points"].iter().chain(&base))
            .expect("parses");
        let Command::Points(args) = points.command else {
            panic!("parsed as another scenario");
        };
        assert_eq!(
            (args.seed_members, args.seed_amount_krw, args.spend_points),
            (500, 10_000_000, 10)
        );
        let coupon = Cli::try_parse_from(
            [
                "spharos-loadtest",
                "coupon",
                "--quantity",
                "7",
                "--claim-after-sold-out",
            ]
            .iter()
            .chain(&base),
        )
        .expect("parses");
        let Command::Coupon(args) = coupon.command else {
            panic!("parsed as another scenario");
        };
        assert_eq!(
            (
                args.quantity,
                args.repeat_percent,
                args.claim_after_sold_out
            ),
            (7, 10, true)
        );
        for bad in [
            ["points", "--spend-points", "0"],
            ["points", "--seed-amount-krw", "99"],
            ["coupon", "--quantity", "0"],
            ["coupon", "--repeat-percent", "101"],
        ] {
            let args = ["spharos-loadtest"].iter().chain(&bad).chain(&base);
            assert!(
                Cli::try_parse_from(args).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn rejects_bad_values() {
        let base = [
            "spharos-loadtest",
            "member",
            "--endpoint",
            "http://127.0.0.1:50051",
            "--token",
            "t",
        ];
        for extra in [
            ["--clients", "0"],
            ["--rate", "0"],
            ["--rate", "nan"],
            ["--duration", "0"],
            ["--seed-members", "0"],
        ] {
            let args = base.iter().chain(extra.iter());
            assert!(
                Cli::try_parse_from(args).is_err(),
                "{extra:?} should be rejected"
            );
        }
        assert!(
            Cli::try_parse_from([
                "spharos-loadtest",
                "member",
                "--endpoint",
                "https://x:1",
                "--token",
                "t"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "spharos-loadtest",
                "member",
                "--endpoint",
                "127.0.0.1:50051",
                "--token",
                "t"
            ])
            .is_err()
        );
    }

    #[test]
    fn token_prefix_is_stripped() {
        assert_eq!(parse_token("Bearer abc").as_deref(), Ok("abc"));
        assert!(parse_token("a b").is_err());
        assert!(parse_token("  ").is_err());
    }
}
