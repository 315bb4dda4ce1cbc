//! Connections to the target: HTTP/2 channels, the bearer-token interceptor and typed clients.
//!
//! Clients share a small pool of tonic [`Channel`]s round-robin. Every channel is connected
//! eagerly, so an unreachable target fails the run before any seeding with one clear message.
//!
//! One shared channel is the default (measurements next to [`DEFAULT_CONNECTIONS`]);
//! `--connections N` overrides it (N = --clients gives one connection per client).

use std::time::Duration;

use anyhow::Context as _;
use spharos_proto::coupon::coupon_service_client::CouponServiceClient;
use spharos_proto::member::member_service_client::MemberServiceClient;
use spharos_proto::points::points_service_client::PointsServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// HTTP/2 connections the clients share by default: one, multiplexed.
///
/// Measured 2026-12-03 on a 2-core machine, debug builds, loopback, 32 clients, closed loop,
/// two alternating runs each:
/// * against a trivial in-process gRPC server (a one-off measurement, since removed), where the
///   client side dominates: one channel 1,079 / 1,395 join/s and 1,776 / 2,160 find/s; one
///   channel per client 788 / 795 join/s and 838 / 1,083 find/s. 32 connections cost more
///   (more tasks, frames and syscalls per request) than they gain.
/// * against `spharos serve` (embedded SQLite), the server is the limit at ~45-55 req/s and both
///   modes are within noise of each other (join 45.6 / 43.0 vs 45.4 / 65.0, find 54.0 / 47.0 vs
///   51.4 / 47.0 req/s).
pub const DEFAULT_CONNECTIONS: u32 = 1;

/// How long to wait for each TCP + HTTP/2 connection at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Member service client that sends the bearer token on every call.
pub type MemberClient = MemberServiceClient<InterceptedService<Channel, BearerAuth>>;
/// Points service client that sends the bearer token on every call.
pub type PointsClient = PointsServiceClient<InterceptedService<Channel, BearerAuth>>;
/// Coupon service client that sends the bearer token on every call.
pub type CouponClient = CouponServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone, Debug)]
pub struct BearerAuth {
    value: AsciiMetadataValue,
}

impl BearerAuth {
    /// Builds the header value once; fails if the token is not a valid header value.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        Ok(Self { value })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        Ok(request)
    }
}

/// Connected channels to one endpoint, handed out round-robin by client index.
#[derive(Clone, Debug)]
pub struct Pool {
    channels: Vec<Channel>,
    auth: BearerAuth,
}

impl Pool {
    /// Opens `connections` (at least one) HTTP/2 connections to `endpoint`, each with a
    /// per-request deadline of `request_timeout`.
    pub async fn connect(
        endpoint: &str,
        token: &str,
        connections: usize,
        request_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let auth = BearerAuth::new(token)?;
        let template = Endpoint::from_shared(endpoint.to_owned())
            .with_context(|| format!("invalid endpoint {endpoint}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            // Backstop only: the driver's own deadline (same length) fires first and counts as
            // DEADLINE_EXCEEDED; this one (tonic reports it as CANCELLED) bounds the seed calls.
            .timeout(request_timeout + Duration::from_secs(1))
            .tcp_nodelay(true);
        let connections = connections.max(1);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = template
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach {endpoint}: {}", error_chain(&e)))?;
            channels.push(channel);
        }
        Ok(Self { channels, auth })
    }

    /// Number of connections.
    pub fn connections(&self) -> usize {
        self.channels.len()
    }

    /// The channel of client `index`.
    fn channel(&self, index: usize) -> Channel {
        self.channels[index % self.channels.len()].clone()
    }

    /// A member service client on the channel of client `index`.
    pub fn member(&self, index: usize) -> MemberClient {
        MemberServiceClient::with_interceptor(self.channel(index), self.auth.clone())
    }

    /// A points service client on the channel of client `index`.
    pub fn points(&self, index: usize) -> PointsClient {
        PointsServiceClient::with_interceptor(self.channel(index), self.auth.clone())
    }

    /// A coupon service client on the channel of client `index`.
    pub fn coupon(&self, index: usize) -> CouponClient {
        CouponServiceClient::with_interceptor(self.channel(index), self.auth.clone())
    }
}

/// `error: source: source` on one line (tonic's transport error alone says only "transport error").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interceptor_sets_bearer_header() {
        let mut auth = BearerAuth::new("abc.def").expect("valid");
        let request = auth.call(Request::new(())).expect("intercepts");
        let value = request.metadata().get("authorization").expect("header set");
        assert_eq!(value.to_str().ok(), Some("Bearer abc.def"));
    }

    #[test]
    fn bad_token_is_rejected() {
        assert!(BearerAuth::new("a\nb").is_err());
    }
}
