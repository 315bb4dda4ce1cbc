//! Leader election against the mocked API server: the first replica creates the Lease, a
//! replica losing the compare-and-swap race follows, a live holder is left alone, and an
//! expired one is taken over with the resourceVersion that was read.
mod common;

use common::mock_client;
use http::Method;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use spharos_operator::lease::LeaderElector;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/spharos-system/leases";

fn lease(holder: &str, renewed: Timestamp, version: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "spharos-operator", "namespace": "spharos-system", "resourceVersion": version },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "leaseTransitions": 3,
        },
    })
}

fn conflict() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the object has been modified", "reason": "Conflict", "code": 409,
    })
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let (client, mut api) = mock_client();
    let elector = LeaderElector::new(client, "spharos-system", "spharos-operator", "pod-a", 15);
    let server = tokio::spawn(async move {
        api.not_found(&format!("{LEASES}/spharos-operator")).await;
        let body = api.echo(Method::POST, LEASES, 201).await.body;
        api.done().await;
        body
    });
    assert!(elector.try_acquire().await.expect("no error"), "leads");
    let body = server.await.expect("script");
    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn a_live_holder_is_followed_without_writing() {
    let (client, mut api) = mock_client();
    let elector = LeaderElector::new(client, "spharos-system", "spharos-operator", "pod-a", 15);
    let fresh = Timestamp::now();
    let server = tokio::spawn(async move {
        api.reply(
            Method::GET,
            &format!("{LEASES}/spharos-operator"),
            200,
            lease("pod-b", fresh, "41"),
        )
        .await;
        api.done().await;
    });
    assert!(!elector.try_acquire().await.expect("no error"));
    server.await.expect("script");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_lost_race_follows() {
    let stale = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(60))
        .expect("valid");
    for (answer, leads) in [(201u16, true), (409u16, false)] {
        let (client, mut api) = mock_client();
        let elector = LeaderElector::new(client, "spharos-system", "spharos-operator", "pod-a", 15);
        let server = tokio::spawn(async move {
            let path = format!("{LEASES}/spharos-operator");
            api.reply(Method::GET, &path, 200, lease("pod-b", stale, "41"))
                .await;
            let body = if answer == 409 {
                api.reply(Method::PUT, &path, 409, conflict()).await.body
            } else {
                let taken = lease("pod-a", Timestamp::now(), "42");
                api.reply(Method::PUT, &path, 200, taken).await.body
            };
            api.done().await;
            body
        });
        let result = elector.try_acquire().await.expect("no error");
        let put = server.await.expect("script");
        assert_eq!(result, leads, "answer {answer}");
        // A compare-and-swap: the write carries the version that was read.
        assert_eq!(put["metadata"]["resourceVersion"], "41");
        assert_eq!(put["spec"]["holderIdentity"], "pod-a");
        assert_eq!(put["spec"]["leaseTransitions"], 4);
    }
}
