//! The campaign service's bulk question on PostgreSQL for 1,000,000 members: "which of these
//! may receive an SMS advertisement now?" Seeds `consent_states` with `INSERT ... SELECT` from
//! an `unnest` of generated UUIDv7 member ids (not through gRPC), then times the query through
//! the application layer and end to end over gRPC, by day and at night.
//!
//! `cargo bench -p spharos-privacy --bench bulk_consents` (PostgreSQL and NATS as for the
//! integration tests; `SPHAROS_BENCH_MEMBERS` overrides the 1,000,000).
use std::time::{Duration, Instant};

use chrono::TimeZone;
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement, Value};
use secrecy::ExposeSecret;
use spharos_kit::{
    TenantId,
    testing::{self, TestBackend},
};
use spharos_privacy::domain::consent::{
    ConsentGroup, ConsentTypeForm, MarketingChannel, SendChannel,
};
use spharos_proto::{
    common::Channel,
    privacy::{FilterAdvertisingRecipientsRequest, privacy_service_client::PrivacyServiceClient},
};
use uuid::Uuid;

const RUNS: usize = 7;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let members: usize = std::env::var("SPHAROS_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (mut settings, _dir) = testing::settings(TestBackend::Postgres).await;
    let url = settings
        .database
        .url
        .as_ref()
        .map(|u| u.expose_secret().to_string())
        .expect("a PostgreSQL URL");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    settings.grpc.listen = addr.to_string();
    let (platform, signer) = testing::platform(settings).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    let (_module, app) = spharos_privacy::module(&platform, &mut routes)
        .await
        .expect("the privacy module starts");
    let shutdown = platform.shutdown.clone();
    tokio::spawn(async move {
        spharos_kit::grpc::serve(listener, routes.routes(), shutdown)
            .await
            .expect("serves");
    });

    let tenant = TenantId::generate();
    for (code, channel, night) in [
        ("A0009", Some(MarketingChannel::Sms), false),
        ("A0010", Some(MarketingChannel::Email), false),
        ("N0001", None, true),
    ] {
        app.create_consent_type(
            tenant,
            ConsentTypeForm {
                code: code.into(),
                title: "광고성 정보 수신 동의".into(),
                purpose: "혜택 안내".into(),
                group: Some(ConsentGroup::Signup),
                advertising: true,
                channel,
                night_time: night,
                ..Default::default()
            },
        )
        .await
        .expect("consent type");
    }

    // Member ids as the member service makes them (UUIDv7).
    let ids: Vec<Uuid> = (0..members).map(|_| Uuid::now_v7()).collect();
    let started = Instant::now();
    let tx = app.db().begin(tenant).await.expect("tenant transaction");
    // SMS: 90 % granted; e-mail: 50 %; night-time: 30 %. 2.3 rows per member.
    for (code, granted_when) in [
        ("A0009", "t.ord % 10 <> 0"),
        ("A0010", "t.ord % 2 = 0"),
        ("N0001", "t.ord % 10 < 3"),
    ] {
        let sql = format!(
            "INSERT INTO consent_states (tenant_id, member_id, consent_type_code, granted, version,
               collection_channel, actor, advertising, cycle_start_time, change_time, created_time,
               updated_time)
             SELECT $1, t.id, $3, {granted_when}, 1, 'APP', 'member', true, now(), now(), now(), now()
             FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, ord)"
        );
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            [
                tenant.as_uuid().into(),
                Value::from(ids.clone()),
                code.into(),
            ],
        ))
        .await
        .expect("seeded");
    }
    tx.commit().await.expect("committed");
    // Statistics as autovacuum would gather them (the owner may ANALYZE; the app role not).
    let owner = Database::connect(url.clone())
        .await
        .expect("owner connects");
    owner
        .execute_unprepared("ANALYZE privacy.consent_states")
        .await
        .expect("analyzed");
    println!(
        "seeded {} consent states for {members} members in {:.1} s",
        members * 3,
        started.elapsed().as_secs_f64()
    );

    let packed: Vec<u8> = ids.iter().flat_map(|u| *u.as_bytes()).collect();
    let seoul = spharos_kit::time::DEFAULT_TIME_ZONE;
    let day = seoul
        .with_ymd_and_hms(2026, 12, 10, 14, 0, 0)
        .single()
        .expect("valid")
        .with_timezone(&chrono::Utc);
    let night = seoul
        .with_ymd_and_hms(2026, 12, 10, 22, 0, 0)
        .single()
        .expect("valid")
        .with_timezone(&chrono::Utc);

    for (label, at, expected) in [
        ("day (SMS consent)", day, members - members.div_ceil(10)),
        ("night (SMS + night-time consent)", night, members / 10 * 2),
    ] {
        let mut app_times = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let answer = app
                .filter_advertising_recipients(tenant, SendChannel::Sms, at, &packed)
                .await
                .expect("answered");
            app_times.push(t.elapsed());
            assert_eq!(answer.allowed as usize, expected, "{label}");
        }
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connects");
        let mut client = PrivacyServiceClient::new(channel)
            .max_encoding_message_size(32 * 1024 * 1024)
            .max_decoding_message_size(32 * 1024 * 1024);
        let token = signer.mint(tenant, "bench", &[], 600);
        let mut grpc_times = Vec::new();
        for _ in 0..RUNS {
            let mut req = tonic::Request::new(FilterAdvertisingRecipientsRequest {
                channel: Channel::Sms.into(),
                send_time: Some(spharos_kit::grpc::timestamp(at)),
                member_ids_packed: packed.clone(),
            });
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii"),
            );
            let t = Instant::now();
            let r = client
                .filter_advertising_recipients(req)
                .await
                .expect("answered")
                .into_inner();
            grpc_times.push(t.elapsed());
            assert_eq!(r.allowed_count as usize, expected, "{label}");
            assert_eq!(r.allowed_bitmap.len(), members.div_ceil(8));
        }
        println!(
            "{members} members, {label}: {expected} allowed; application layer (SQL + bitmap) {} ; end to end over gRPC (16 MB request) {}",
            summary(&mut app_times),
            summary(&mut grpc_times)
        );
    }

    let plan = owner
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            // The large-list path (from 20,000 candidates): the granted ids of the code.
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)
             SELECT COALESCE(array_agg(member_id), '{}') FROM privacy.consent_states
             WHERE tenant_id = $1 AND consent_type_code = ANY($2::text[]) AND granted",
            [
                tenant.as_uuid().into(),
                Value::from(vec!["A0009".to_string()]),
            ],
        ))
        .await
        .expect("explained");
    println!("plan (day query, large-list path, as the owner):");
    for row in plan {
        let line: String = row.try_get_by_index(0).expect("plan line");
        println!("  {line}");
    }

    platform.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    owner.close().await.expect("closed");
    drop_database(&url).await;
}

/// "min 412 ms, median 430 ms, max 470 ms".
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

/// The benchmark's database is large; it does not outlive the run.
async fn drop_database(url: &str) {
    let name = url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .unwrap_or_default()
        .to_string();
    let admin = Database::connect(testing::postgres_base_url())
        .await
        .expect("admin connects");
    if let Err(e) = admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
    {
        eprintln!("could not drop {name}: {e}");
    }
}
