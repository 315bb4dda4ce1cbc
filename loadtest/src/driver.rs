//! The generic load driver: runs one phase with N client tasks, closed loop or at a fixed rate.
//!
//! A scenario hands the driver a [`Phase`]: a name and a factory that builds one [`Worker`] per
//! client. Each worker is its own tokio task issuing one request at a time.
//!
//! A call ends in one of three ways besides an error (see [`Outcome`]): success; a refusal the
//! scenario expects (a claim for a sold-out coupon), counted apart from errors with its own
//! latency histogram; or "nothing left to do" (every issued coupon redeemed), which stops that
//! client. When every client has stopped, the phase ends early and its window ends there, so
//! throughput is over the time the work actually took.
//!
//! * **Closed loop** (default): each client sends its next request as soon as the last one
//!   returns; latency is measured from send to response.
//! * **Fixed rate** (`--rate R`): request *i* of the phase is scheduled at `start + i / R`
//!   (see [`schedule_offset`]); whichever client is free takes the next ticket and sleeps until
//!   its slot. Latency is measured from the *scheduled* time, so a server that falls behind shows
//!   up in the percentiles instead of silently lowering the offered rate (coordinated omission).
//!   With too few clients for the rate, the achieved throughput is below the target.
//!
//! Each phase runs `warmup + duration`; only requests that started (closed loop) or were
//! scheduled (fixed rate) after the warm-up are recorded. Every loop is bounded: by the phase end
//! time, by [`MAX_REQUESTS_PER_PHASE`], by the per-request timeout, and by a drain deadline after
//! which stragglers are aborted.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::report::{self, PhaseReport};

/// Hard cap on requests per phase, whatever the duration and rate.
pub const MAX_REQUESTS_PER_PHASE: u64 = 100_000_000;

/// Extra time after the phase end for in-flight requests, beyond the request timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How a call that was not an error ended.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered OK (and the scenario accepted the answer).
    Ok,
    /// The server refused in a way the scenario expects (sold out, per-member limit): counted
    /// by code apart from errors, so a rush that sells out does not look like a failure.
    Rejected(tonic::Status),
    /// Nothing was sent: this client has no work left. It stops; the others go on.
    Done,
}

/// One client's request loop body: sends one request and reports its outcome.
pub trait Worker: Send + 'static {
    /// Sends one request. `Err` is a failure, counted by gRPC code.
    fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>>;
}

/// Builds the worker of client `index` (0-based).
pub type WorkerFactory = Box<dyn Fn(usize) -> Box<dyn Worker> + Send + Sync>;

/// A named, measured phase of a scenario.
pub struct Phase {
    pub name: &'static str,
    pub make_worker: WorkerFactory,
}

/// How hard and how long to drive a phase.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total requests per second across all clients; `None` for a closed loop.
    pub rate: Option<f64>,
    pub request_timeout: Duration,
}

/// Offset from the phase start at which request `ticket` is due at `rate` requests per second.
pub fn schedule_offset(ticket: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(ticket as f64 / rate)
}

/// Requests a fixed-rate phase schedules in `[0, window)`: `ceil(window · rate)`.
pub fn scheduled_in(window: Duration, rate: f64) -> u64 {
    (window.as_secs_f64() * rate).ceil() as u64
}

/// State shared by the client tasks of one phase.
struct Shared {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    rate: Option<f64>,
    request_timeout: Duration,
    next_ticket: AtomicU64,
    /// Counts including warm-up, for the progress line.
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    cancel: CancellationToken,
}

/// What one client measured (after warm-up).
struct WorkerStats {
    histogram: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    /// The first error message seen per code, to tell one ALREADY_EXISTS from another.
    samples: BTreeMap<&'static str, String>,
    /// Expected refusals by code, and their latency.
    rejected: BTreeMap<&'static str, u64>,
    rejected_histogram: Histogram<u64>,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            histogram: report::new_histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            rejected: BTreeMap::new(),
            rejected_histogram: report::new_histogram(),
        }
    }

    fn merge(&mut self, other: &Self) {
        merge_histogram(&mut self.histogram, &other.histogram);
        merge_histogram(&mut self.rejected_histogram, &other.rejected_histogram);
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, n) in &other.rejected {
            *self.rejected.entry(code).or_default() += n;
        }
        for (code, message) in &other.samples {
            self.samples.entry(code).or_insert_with(|| message.clone());
        }
    }
}

/// Adds `from` into `into`. Same bounds on both sides, so adding cannot fail; saturate rather
/// than panic anyway.
fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Runs `phase` under `load` and returns its report. Stops early, keeping what was measured,
/// when `cancel` fires (Ctrl-C).
pub async fn run_phase(phase: &Phase, load: &Load, cancel: &CancellationToken) -> PhaseReport {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let shared = Arc::new(Shared {
        start,
        measure_from,
        end,
        rate: load.rate,
        request_timeout: load.request_timeout,
        next_ticket: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        cancel: cancel.child_token(),
    });

    let progress_done = CancellationToken::new();
    let progress = tokio::spawn(progress_loop(
        phase.name,
        shared.clone(),
        progress_done.clone(),
    ));

    let mut tasks = JoinSet::new();
    for index in 0..load.clients.max(1) {
        tasks.spawn(client_loop((phase.make_worker)(index), shared.clone()));
    }

    let mut stats = WorkerStats::new();
    let drain_deadline = end + load.request_timeout + DRAIN_GRACE;
    loop {
        match tokio::time::timeout_at(drain_deadline, tasks.join_next()).await {
            Ok(Some(Ok(worker))) => stats.merge(&worker),
            Ok(Some(Err(join_error))) => {
                eprintln!("{}: a client task failed: {join_error}", phase.name)
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "{}: {} client(s) still busy after the drain deadline; aborted",
                    phase.name,
                    tasks.len()
                );
                tasks.abort_all();
                break;
            }
        }
    }
    let stopped = Instant::now().min(end);
    progress_done.cancel();
    let _ = progress.await;

    let seconds = stopped
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let errors: BTreeMap<String, u64> = stats
        .errors
        .iter()
        .map(|(c, n)| ((*c).to_owned(), *n))
        .collect();
    let failed: u64 = errors.values().sum();
    let error_samples = stats
        .samples
        .into_iter()
        .map(|(c, m)| (c.to_owned(), m))
        .collect();
    let rejected: BTreeMap<String, u64> = stats
        .rejected
        .iter()
        .map(|(c, n)| ((*c).to_owned(), *n))
        .collect();
    let rejected_count: u64 = rejected.values().sum();
    PhaseReport {
        name: phase.name.to_owned(),
        requests: stats.ok + failed + rejected_count,
        ok: stats.ok,
        errors,
        error_samples,
        rejected,
        rejected_latency_ms: report::latency_ms(&stats.rejected_histogram),
        seconds,
        throughput_rps: if seconds > 0.0 {
            stats.ok as f64 / seconds
        } else {
            0.0
        },
        target_rps: load.rate,
        scheduled: load.rate.map(|rate| {
            scheduled_in(stopped.saturating_duration_since(start), rate)
                .saturating_sub(scheduled_in(load.warmup, rate))
        }),
        latency_ms: report::latency_ms(&stats.histogram),
    }
}

/// One client: take a ticket, wait for its slot (fixed rate), send, record; until the end.
async fn client_loop(mut worker: Box<dyn Worker>, shared: Arc<Shared>) -> WorkerStats {
    let mut stats = WorkerStats::new();
    loop {
        let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        if ticket >= MAX_REQUESTS_PER_PHASE {
            break;
        }
        let due = shared
            .rate
            .map(|rate| shared.start + schedule_offset(ticket, rate));
        if let Some(due) = due {
            if due >= shared.end {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = shared.cancel.cancelled() => break,
            }
        }
        let now = Instant::now();
        if now >= shared.end || shared.cancel.is_cancelled() {
            break;
        }
        let began = due.unwrap_or(now);
        let outcome = match tokio::time::timeout(shared.request_timeout, worker.call()).await {
            Ok(Ok(Outcome::Ok)) => Ok(None),
            Ok(Ok(Outcome::Rejected(status))) => Ok(Some(status.code())),
            Ok(Ok(Outcome::Done)) => break,
            Ok(Err(status)) => Err((status.code(), status.message().to_owned())),
            Err(_) => Err((
                tonic::Code::DeadlineExceeded,
                format!("no answer within {:?}", shared.request_timeout),
            )),
        };
        let micros = u64::try_from(began.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        match outcome {
            Ok(None) => shared.ok.fetch_add(1, Ordering::Relaxed),
            Ok(Some(_)) => shared.rejected.fetch_add(1, Ordering::Relaxed),
            Err(_) => shared.failed.fetch_add(1, Ordering::Relaxed),
        };
        if began >= shared.measure_from {
            match outcome {
                Ok(None) => {
                    stats.ok += 1;
                    stats.histogram.saturating_record(micros);
                }
                Ok(Some(code)) => {
                    *stats.rejected.entry(report::code_name(code)).or_default() += 1;
                    stats.rejected_histogram.saturating_record(micros);
                }
                Err((code, message)) => {
                    let name = report::code_name(code);
                    *stats.errors.entry(name).or_default() += 1;
                    stats
                        .samples
                        .entry(name)
                        .or_insert_with(|| report::one_line(&message, 200));
                }
            }
        }
    }
    stats
}

/// Prints a progress line to stderr every second until `done` fires (bounded by the phase end
/// plus the drain deadline in any case).
async fn progress_loop(name: &'static str, shared: Arc<Shared>, done: CancellationToken) {
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval_at(
        shared.start + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hard_stop = shared.end + shared.request_timeout + DRAIN_GRACE + Duration::from_secs(1);
    let (mut last_total, mut last_at) = (0_u64, shared.start);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = done.cancelled() => break,
        }
        let now = Instant::now();
        if now >= hard_stop {
            break;
        }
        let ok = shared.ok.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let rejected = shared.rejected.load(Ordering::Relaxed);
        let total = ok + failed + rejected;
        let window = now.saturating_duration_since(last_at).as_secs_f64();
        let rps = if window > 0.0 {
            total.saturating_sub(last_total) as f64 / window
        } else {
            0.0
        };
        (last_total, last_at) = (total, now);
        let line = progress_line(
            name,
            now < shared.measure_from,
            now.saturating_duration_since(shared.start),
            Counts {
                ok,
                failed,
                rejected,
            },
            rps,
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}

/// Requests so far, warm-up included.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub rejected: u64,
}

/// `join: 12.0s  4,213 ok  0 err  351 req/s` (`join (warm-up): ...` before measurement starts;
/// `  12 rejected` after `err` once a phase has expected refusals).
pub fn progress_line(
    name: &str,
    warming_up: bool,
    elapsed: Duration,
    counts: Counts,
    rps: f64,
) -> String {
    let label = if warming_up {
        format!("{name} (warm-up)")
    } else {
        name.to_owned()
    };
    let rejected = if counts.rejected > 0 {
        format!("  {} rejected", report::group_thousands(counts.rejected))
    } else {
        String::new()
    };
    format!(
        "{label}: {:.1}s  {} ok  {} err{rejected}  {} req/s",
        elapsed.as_secs_f64(),
        report::group_thousands(counts.ok),
        report::group_thousands(counts.failed),
        report::group_thousands(rps.max(0.0).round() as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spreads_requests_evenly() {
        assert_eq!(schedule_offset(0, 100.0), Duration::ZERO);
        assert_eq!(schedule_offset(1, 100.0), Duration::from_millis(10));
        assert_eq!(schedule_offset(250, 100.0), Duration::from_millis(2_500));
        assert_eq!(schedule_offset(3, 0.5), Duration::from_secs(6));
        // Large tickets stay exact to the microsecond.
        let far = schedule_offset(1_000_000_000, 1_000.0);
        assert_eq!(far, Duration::from_secs(1_000_000));
    }

    #[test]
    fn scheduled_count_matches_window() {
        assert_eq!(scheduled_in(Duration::from_secs(10), 100.0), 1_000);
        assert_eq!(scheduled_in(Duration::from_secs(1), 0.5), 1);
        assert_eq!(scheduled_in(Duration::from_millis(2_500), 3.0), 8);
        // The count is exactly the tickets whose slot falls inside the window.
        for rate in [0.7, 3.0, 100.0, 333.3] {
            let window = Duration::from_secs(7);
            let n = scheduled_in(window, rate);
            assert!(schedule_offset(n - 1, rate) < window);
            assert!(schedule_offset(n, rate) >= window);
        }
    }

    #[test]
    fn progress_line_format() {
        let counts = |ok, failed, rejected| Counts {
            ok,
            failed,
            rejected,
        };
        let line = progress_line(
            "join",
            false,
            Duration::from_millis(12_040),
            counts(4_213, 0, 0),
            351.2,
        );
        assert_eq!(line, "join: 12.0s  4,213 ok  0 err  351 req/s");
        let line = progress_line("find", true, Duration::from_secs(1), counts(10, 2, 0), 12.0);
        assert_eq!(line, "find (warm-up): 1.0s  10 ok  2 err  12 req/s");
        let line = progress_line(
            "claim",
            false,
            Duration::from_secs(3),
            counts(5, 0, 1_200),
            9.0,
        );
        assert_eq!(line, "claim: 3.0s  5 ok  0 err  1,200 rejected  9 req/s");
    }

    /// A worker that answers after a fixed delay, failing every `fail_every`-th call.
    struct Fake {
        delay: Duration,
        fail_every: u64,
        calls: u64,
    }

    impl Worker for Fake {
        fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
            self.calls += 1;
            let fail = self.fail_every > 0 && self.calls.is_multiple_of(self.fail_every);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if fail {
                    Err(tonic::Status::unavailable("down"))
                } else {
                    Ok(Outcome::Ok)
                }
            })
        }
    }

    /// Succeeds `stock` times in all (shared by the clients), then rejects `rejections` more
    /// calls per client as sold out, then has nothing left to do.
    struct Stock {
        stock: Arc<AtomicU64>,
        rejections: u64,
    }

    impl Worker for Stock {
        fn call(&mut self) -> BoxFuture<'_, Result<Outcome, tonic::Status>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let took = self
                    .stock
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if took.is_ok() {
                    return Ok(Outcome::Ok);
                }
                if self.rejections == 0 {
                    return Ok(Outcome::Done);
                }
                self.rejections -= 1;
                Ok(Outcome::Rejected(tonic::Status::resource_exhausted(
                    "sold out",
                )))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_are_apart_and_done_ends_the_phase_early() {
        let stock = Arc::new(AtomicU64::new(100));
        let phase = Phase {
            name: "claim",
            make_worker: Box::new(move |_| {
                Box::new(Stock {
                    stock: stock.clone(),
                    rejections: 3,
                })
            }),
        };
        let load = Load {
            clients: 4,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(60),
            rate: None,
            request_timeout: Duration::from_secs(1),
        };
        let report = run_phase(&phase, &load, &CancellationToken::new()).await;
        // 4 clients × 10 ms: the 100 succeed in 250 ms, then 3 rejections per client.
        assert_eq!(report.ok, 100);
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.rejected.get("RESOURCE_EXHAUSTED"), Some(&12));
        assert_eq!(report.requests, 112);
        assert!(report.rejected_latency_ms.is_some());
        // The window ends when the last client stopped, not after 60 s.
        assert!((0.27..0.31).contains(&report.seconds), "{}", report.seconds);
        assert!(report.throughput_rps > 300.0, "{report:?}");
    }

    fn fake_phase(delay: Duration, fail_every: u64) -> Phase {
        Phase {
            name: "fake",
            make_worker: Box::new(move |_| {
                Box::new(Fake {
                    delay,
                    fail_every,
                    calls: 0,
                })
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_sends_the_scheduled_number() {
        let load = Load {
            clients: 4,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            rate: Some(50.0),
            request_timeout: Duration::from_secs(1),
        };
        let report = run_phase(
            &fake_phase(Duration::from_millis(5), 0),
            &load,
            &CancellationToken::new(),
        )
        .await;
        // 50 req/s over the 2 measured seconds: tickets 50..150.
        assert_eq!(report.requests, 100);
        assert_eq!(report.ok, 100);
        assert_eq!(report.scheduled, Some(100));
        assert!((report.throughput_rps - 50.0).abs() < 0.5, "{report:?}");
        let latency = report.latency_ms.expect("latency");
        assert!(latency.p50 >= 5.0 && latency.max < 6.0, "{latency:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_counts_errors_by_code() {
        let load = Load {
            clients: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            rate: None,
            request_timeout: Duration::from_secs(1),
        };
        let report = run_phase(
            &fake_phase(Duration::from_millis(10), 4),
            &load,
            &CancellationToken::new(),
        )
        .await;
        // 2 clients × 100 calls of 10 ms; every 4th fails.
        assert_eq!(report.requests, 200);
        assert_eq!(report.errors.get("UNAVAILABLE"), Some(&50));
        assert_eq!(
            report.error_samples.get("UNAVAILABLE").map(String::as_str),
            Some("down")
        );
        assert_eq!(report.ok, 150);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_time_out_and_the_phase_ends() {
        let load = Load {
            clients: 3,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(2),
            rate: None,
            request_timeout: Duration::from_secs(1),
        };
        let report = run_phase(
            &fake_phase(Duration::from_secs(3_600), 0),
            &load,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(report.ok, 0);
        assert_eq!(report.errors.get("DEADLINE_EXCEEDED"), Some(&6));
        assert_eq!(report.latency_ms, None);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_early() {
        let cancel = CancellationToken::new();
        let load = Load {
            clients: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(100),
            rate: None,
            request_timeout: Duration::from_secs(1),
        };
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.cancel();
        });
        let report = run_phase(&fake_phase(Duration::from_millis(100), 0), &load, &cancel).await;
        assert!(report.seconds < 2.0, "{report:?}");
        assert!((9..=11).contains(&report.ok), "{report:?}");
    }
}
