//! Results: per-phase figures, the aligned stdout table and the JSON document.
//!
//! Latency is recorded in microseconds into an HdrHistogram with 3 significant digits and shown
//! in milliseconds. Only successful requests go into the histogram (a fast failure would make the
//! percentiles look better); failures are counted by gRPC code. Refusals the scenario expects
//! (sold out, per-member limit) are neither: they are counted by code with a histogram of their
//! own. After the phases a scenario may check what the service holds against what the run did
//! ([`Verification`]); a failed check fails the run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track: one hour, in microseconds.
pub const MAX_TRACKABLE_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram (1 µs .. 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2·low, sigfig <= 5); the
    // unit tests create one, so this cannot fail at run time.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_TRACKABLE_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Latency summary of one phase, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Percentiles of a histogram recorded in microseconds; `None` when it holds no sample.
pub fn latency_ms(histogram: &Histogram<u64>) -> Option<LatencyMs> {
    if histogram.is_empty() {
        return None;
    }
    let ms = |micros: u64| micros as f64 / 1_000.0;
    Some(LatencyMs {
        p50: ms(histogram.value_at_quantile(0.50)),
        p95: ms(histogram.value_at_quantile(0.95)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
        mean: histogram.mean() / 1_000.0,
    })
}

/// Figures of one measured phase (warm-up excluded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// Requests started in the measured window that completed (ok + errors).
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by gRPC code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The first error message seen for each code in `errors` (one line, shortened).
    pub error_samples: BTreeMap<String, String>,
    /// Expected refusals by gRPC code name (not failures; not in `ok` nor `errors`).
    pub rejected: BTreeMap<String, u64>,
    /// Latency of the expected refusals; `None` when there was none.
    pub rejected_latency_ms: Option<LatencyMs>,
    /// Length of the measured window in seconds.
    pub seconds: f64,
    /// Successful requests per second over the measured window.
    pub throughput_rps: f64,
    /// The `--rate` target, when the phase ran at a fixed rate.
    pub target_rps: Option<f64>,
    /// Fixed rate only: requests due in the measured window. `requests` below this means the
    /// clients could not keep up with the target (add clients or lower the rate).
    pub scheduled: Option<u64>,
    /// Latency of successful requests; `None` when none succeeded.
    pub latency_ms: Option<LatencyMs>,
}

impl PhaseReport {
    /// Total failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Total expected refusals.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// One consistency check of the service's state against what the run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was compared, with the figures.
    pub detail: String,
}

impl Check {
    /// A check that passes when `passed`.
    pub fn new(name: &str, passed: bool, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// What a scenario found after its phases: checks (which fail the run) and figures worth
/// keeping (counts the run made, when a coupon sold out).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verification {
    pub checks: Vec<Check>,
    pub facts: BTreeMap<String, serde_json::Value>,
}

impl Verification {
    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// `check <name>: ok|FAILED: <detail>` per check, then `<fact>: <value>` per fact.
pub fn render_verification(verification: &Verification) -> String {
    let mut out = String::new();
    for check in &verification.checks {
        let verdict = if check.passed { "ok" } else { "FAILED" };
        out.push_str(&format!(
            "check {}: {verdict}: {}\n",
            check.name, check.detail
        ));
    }
    for (name, value) in &verification.facts {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out
}

/// What the seed step created.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeedReport {
    pub seconds: f64,
    /// Objects created by kind (`stores`, `members`).
    pub created: BTreeMap<String, u64>,
    /// Identifiers worth knowing afterwards (`store_id`, `store_code`).
    pub ids: BTreeMap<String, String>,
}

/// Run settings, echoed into the JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunConfig {
    pub endpoint: String,
    pub clients: u32,
    pub connections: u32,
    pub warmup_seconds: u64,
    pub duration_seconds: u64,
    pub rate_rps: Option<f64>,
    pub request_timeout_seconds: u64,
    /// Scenario-specific settings (`seed_members`, ...).
    pub scenario: BTreeMap<String, serde_json::Value>,
}

/// The whole result of a run: what `--json` writes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: String,
    /// Start of the run, Unix time in milliseconds.
    pub started_unix_ms: u64,
    /// Build profile of the loadtest binary itself (`debug` numbers are not comparable).
    pub profile: &'static str,
    pub config: RunConfig,
    pub seed: SeedReport,
    pub phases: Vec<PhaseReport>,
    /// Checks after the phases (empty for scenarios without any, or after Ctrl-C).
    pub verification: Verification,
}

/// Writes `report` as pretty JSON to `path`, creating parent directories.
pub fn write_json(path: &Path, report: &RunReport) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Aligned table of the phases (right-aligned numbers), then one line per phase with errors.
pub fn render_table(phases: &[PhaseReport]) -> String {
    const HEADER: [&str; 8] = [
        "phase", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
    ];
    let rows: Vec<[String; 8]> = phases
        .iter()
        .map(|p| {
            let lat = |f: fn(&LatencyMs) -> f64| {
                p.latency_ms
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |l| format_ms(f(l)))
            };
            [
                p.name.clone(),
                group_thousands(p.requests),
                group_thousands(p.error_count()),
                format_rate(p.throughput_rps),
                lat(|l| l.p50),
                lat(|l| l.p95),
                lat(|l| l.p99),
                lat(|l| l.max),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&HEADER.map(str::to_owned));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    for p in phases.iter().filter(|p| !p.errors.is_empty()) {
        let detail: Vec<String> = p
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {}", group_thousands(*n)))
            .collect();
        out.push_str(&format!("{} errors: {}\n", p.name, detail.join(", ")));
        for (code, message) in &p.error_samples {
            out.push_str(&format!("  {code} e.g. \"{message}\"\n"));
        }
    }
    for p in phases.iter().filter(|p| !p.rejected.is_empty()) {
        let detail: Vec<String> = p
            .rejected
            .iter()
            .map(|(code, n)| format!("{code} {}", group_thousands(*n)))
            .collect();
        let latency = p.rejected_latency_ms.map_or_else(String::new, |l| {
            format!(
                " (p50 {} ms, p99 {} ms)",
                format_ms(l.p50),
                format_ms(l.p99)
            )
        });
        out.push_str(&format!(
            "{} rejected as expected: {}{latency}\n",
            p.name,
            detail.join(", ")
        ));
    }
    for p in phases {
        if let (Some(target), Some(scheduled)) = (p.target_rps, p.scheduled) {
            out.push_str(&format!(
                "{} target rate: {} req/s, {} scheduled, {} sent\n",
                p.name,
                format_rate(target),
                group_thousands(scheduled),
                group_thousands(p.requests)
            ));
        }
    }
    out
}

/// `text` on one line, cut to at most `max_chars` characters (with `…` when cut).
pub fn one_line(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let mut cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One decimal with grouped thousands: `12345.67` → `12,345.7`.
pub fn format_rate(rps: f64) -> String {
    if !rps.is_finite() || rps < 0.0 {
        return "-".to_owned();
    }
    let tenths = (rps * 10.0).round() as u64;
    format!("{}.{}", group_thousands(tenths / 10), tenths % 10)
}

/// Milliseconds with two decimals (HdrHistogram's 3 significant digits fit in that).
fn format_ms(ms: f64) -> String {
    format!("{ms:.2}")
}

/// Canonical upper-case name of a gRPC status code, as in the gRPC spec.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(
        name: &str,
        requests: u64,
        errors: &[(&str, u64)],
        latency: Option<LatencyMs>,
    ) -> PhaseReport {
        let errors: BTreeMap<String, u64> =
            errors.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
        let err: u64 = errors.values().sum();
        let error_samples = errors
            .keys()
            .map(|c| (c.clone(), format!("{} happened", c.to_lowercase())))
            .collect();
        PhaseReport {
            name: name.to_owned(),
            requests,
            ok: requests - err,
            errors,
            error_samples,
            seconds: 10.0,
            throughput_rps: (requests - err) as f64 / 10.0,
            target_rps: None,
            scheduled: None,
            latency_ms: latency,
            rejected: BTreeMap::new(),
            rejected_latency_ms: None,
        }
    }

    #[test]
    fn percentiles_from_histogram() {
        let mut h = new_histogram();
        for micros in 1..=1_000_u64 {
            h.record(micros * 10).expect("in range"); // 10 µs .. 10 ms, uniform
        }
        let l = latency_ms(&h).expect("samples");
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p95 - 9.5).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert!((l.mean - 5.005).abs() < 0.01, "{l:?}");
    }

    #[test]
    fn percentiles_of_single_sample_and_empty() {
        assert_eq!(latency_ms(&new_histogram()), None);
        let mut h = new_histogram();
        h.record(2_500).expect("in range");
        let l = latency_ms(&h).expect("sample");
        assert!(
            (l.p50 - 2.5).abs() < 0.005 && (l.max - 2.5).abs() < 0.005,
            "{l:?}"
        );
    }

    #[test]
    fn histogram_keeps_three_significant_digits_up_to_an_hour() {
        let mut h = new_histogram();
        h.saturating_record(MAX_TRACKABLE_MICROS * 2);
        h.record(123_456).expect("in range");
        let max = h.max();
        assert!(
            (MAX_TRACKABLE_MICROS..=MAX_TRACKABLE_MICROS + MAX_TRACKABLE_MICROS / 1_000)
                .contains(&max),
            "{max}"
        );
        let low = h.value_at_quantile(0.0);
        assert!(low.abs_diff(123_456) <= 123, "{low}");
    }

    #[test]
    fn thousands_and_rates() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(4_213), "4,213");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(format_rate(351.04), "351.0");
        assert_eq!(format_rate(12_345.67), "12,345.7");
        assert_eq!(format_rate(0.0), "0.0");
        assert_eq!(format_rate(f64::NAN), "-");
    }

    #[test]
    fn table_is_aligned() {
        let l = LatencyMs {
            p50: 1.234,
            p95: 5.0,
            p99: 12.5,
            max: 103.25,
            mean: 2.0,
        };
        let table = render_table(&[
            phase("join", 4_213, &[], Some(l)),
            phase(
                "find",
                1_234_567,
                &[("UNAVAILABLE", 2), ("DEADLINE_EXCEEDED", 1)],
                Some(l),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "phase   requests  errors      req/s  p50 ms  p95 ms  p99 ms  max ms"
        );
        assert_eq!(
            lines[1],
            "join       4,213       0      421.3    1.23    5.00   12.50  103.25"
        );
        assert_eq!(
            lines[2],
            "find   1,234,567       3  123,456.4    1.23    5.00   12.50  103.25"
        );
        // every row ends in the same column
        assert!(
            lines[..3]
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
        assert_eq!(lines[3], "find errors: DEADLINE_EXCEEDED 1, UNAVAILABLE 2");
        assert_eq!(
            lines[4],
            "  DEADLINE_EXCEEDED e.g. \"deadline_exceeded happened\""
        );
        assert_eq!(lines[5], "  UNAVAILABLE e.g. \"unavailable happened\"");
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn fixed_rate_line() {
        let mut p = phase("find", 990, &[], None);
        (p.target_rps, p.scheduled) = (Some(100.0), Some(1_000));
        let table = render_table(&[p]);
        assert_eq!(
            table.lines().last(),
            Some("find target rate: 100.0 req/s, 1,000 scheduled, 990 sent")
        );
    }

    #[test]
    fn rejections_get_their_own_line() {
        let mut p = phase("claim", 1_300, &[], None);
        p.rejected = BTreeMap::from([
            ("ALREADY_EXISTS".to_owned(), 12),
            ("RESOURCE_EXHAUSTED".to_owned(), 1_288),
        ]);
        p.rejected_latency_ms = Some(LatencyMs {
            p50: 0.5,
            p95: 0.9,
            p99: 1.25,
            max: 3.0,
            mean: 0.6,
        });
        assert_eq!(p.rejected_count(), 1_300);
        let table = render_table(&[p]);
        assert_eq!(
            table.lines().last(),
            Some(
                "claim rejected as expected: ALREADY_EXISTS 12, RESOURCE_EXHAUSTED 1,288 (p50 0.50 ms, p99 1.25 ms)"
            )
        );
    }

    #[test]
    fn verification_lines() {
        let v = Verification {
            checks: vec![
                Check::new("issued", true, "1,000 of 1,000".into()),
                Check::new("balances", false, "2 of 10 differ".into()),
            ],
            facts: BTreeMap::from([("sold_out".to_owned(), serde_json::json!(true))]),
        };
        assert_eq!(v.failed(), ["balances"]);
        assert_eq!(
            render_verification(&v),
            "check issued: ok: 1,000 of 1,000\ncheck balances: FAILED: 2 of 10 differ\nsold_out: true\n"
        );
    }

    #[test]
    fn table_without_successes_shows_dashes() {
        let table = render_table(&[phase("find", 5, &[("UNAVAILABLE", 5)], None)]);
        let row = table.lines().nth(1).expect("row");
        assert!(row.starts_with("find"), "{row}");
        assert!(row.ends_with("-       -       -       -"), "{row}");
    }

    #[test]
    fn json_round_trip_has_the_figures() {
        let report = RunReport {
            tool: "spharos-loadtest",
            version: "0.1.0",
            scenario: "member".into(),
            started_unix_ms: 1,
            profile: "debug",
            config: RunConfig {
                endpoint: "http://127.0.0.1:50051".into(),
                clients: 32,
                connections: 1,
                warmup_seconds: 2,
                duration_seconds: 10,
                rate_rps: None,
                request_timeout_seconds: 10,
                scenario: BTreeMap::from([("seed_members".to_owned(), serde_json::json!(200))]),
            },
            seed: SeedReport::default(),
            phases: vec![phase("join", 10, &[("ALREADY_EXISTS", 1)], None)],
            verification: Verification {
                checks: vec![Check::new("c", true, "d".into())],
                facts: BTreeMap::new(),
            },
        };
        let dir = std::env::temp_dir().join(format!("spharos-loadtest-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested/out.json");
        write_json(&path, &report).expect("written");
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(value["phases"][0]["errors"]["ALREADY_EXISTS"], 1);
        assert_eq!(value["phases"][0]["latency_ms"], serde_json::Value::Null);
        assert_eq!(value["config"]["scenario"]["seed_members"], 200);
        assert_eq!(value["phases"][0]["rejected"], serde_json::json!({}));
        assert_eq!(value["verification"]["checks"][0]["passed"], true);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn messages_are_flattened_and_cut() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("전화번호가 이미 있습니다", 6), "전화번호가…");
        assert_eq!(one_line("", 3), "");
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
