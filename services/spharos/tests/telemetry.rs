//! Traces leave the process by OTLP when `telemetry.otlp_endpoint` is set, and a caller's W3C
//! `traceparent` makes our RPC span its child. The collector is an outside service, so here it
//! is a local OTLP/gRPC server that records what `spharos serve` sends it.
use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::trace::v1::Span;
use spharos_proto::member::{JoinMemberRequest, member_service_client::MemberServiceClient};

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("collector lock");
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_are_exported_as_children_of_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, http) = (free_port(), free_port());
    let env = |c: &mut Command| {
        c.current_dir(dir.path())
            .env("SPHAROS__GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
            .env("SPHAROS__HTTP__LISTEN", format!("127.0.0.1:{http}"))
            .env(
                "SPHAROS__TELEMETRY__OTLP_ENDPOINT",
                format!("http://{otlp}"),
            )
            .env_remove("SPHAROS__DATABASE__URL")
            .env_remove("SPHAROS__NATS__URL");
    };
    let mut serve = Command::new(env!("CARGO_BIN_EXE_spharos"));
    env(&mut serve);
    let mut child = serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");

    let tenant = "0190f2c4-6f1e-7000-8000-0000000000aa";
    let mut token_cmd = Command::new(env!("CARGO_BIN_EXE_spharos"));
    env(&mut token_cmd);
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let started = Instant::now();
    let mut client = loop {
        if let Ok(c) = MemberServiceClient::connect(endpoint.clone()).await {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gRPC port never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Keys exist once serve created them; mint with the same data directory.
    let out = token_cmd
        .args(["tenant", "token", "--tenant", tenant])
        .output()
        .expect("token");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut req = tonic::Request::new(JoinMemberRequest {
            name: "추적테스트".into(),
            phone: "010-5555-0101".into(),
            ..Default::default()
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{parent_span}-01")
                .parse()
                .expect("ascii"),
        );
        // Not ready yet (migrations): the module's service is not routed until then.
        let err = match client.join_member(req).await {
            Ok(_) => break,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "JoinMember never succeeded: {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let span = loop {
        let found = collector
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| {
                hex(&s.trace_id) == trace_id
                    && attr(s, "rpc.method").as_deref() == Some("JoinMember")
            })
            .cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no JoinMember span of our trace reached the collector"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        hex(&span.parent_span_id),
        parent_span,
        "our span is the caller's child"
    );
    assert_eq!(attr(&span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(&span, "rpc.service").as_deref(),
        Some("spharos.member.v1.MemberService")
    );
    assert_eq!(attr(&span, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attr(&span, "spharos.tenant_id").as_deref(), Some(tenant));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
