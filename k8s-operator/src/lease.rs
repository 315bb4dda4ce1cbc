//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe: only
//! the holder reconciles. Taking or renewing the lease is a `replace` carrying the
//! `resourceVersion` that was read, so when two replicas race the apiserver accepts one and
//! answers the other `409 Conflict`; the loser follows. The decision itself is the pure
//! [`decide`].
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

/// What to do with the lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Decides from the lease as read, our identity and the time.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec
        .renew_time
        .or(spec.acquire_time)
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    match renewed.checked_add(duration) {
        Ok(expiry) if expiry > now => LeaseDecision::Follow { holder },
        _ => LeaseDecision::TakeOver,
    }
}

/// One replica's side of the election.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration_seconds: i32,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration_seconds: i32,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration_seconds,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Acquires or renews the lease; `Ok(true)` while we lead. A lost race is `Ok(false)`.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref(), &self.identity, now);
        let result = match decision {
            LeaseDecision::Follow { holder } => {
                tracing::debug!(%holder, "following the leader");
                return Ok(false);
            }
            LeaseDecision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(self.duration_seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            LeaseDecision::Renew | LeaseDecision::TakeOver => {
                // `current` is Some here: Create is the only decision for a missing lease.
                let mut lease = current.unwrap_or_default();
                let mut spec = lease.spec.take().unwrap_or_default();
                if decision == LeaseDecision::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(self.duration_seconds);
                spec.renew_time = Some(MicroTime(now));
                lease.spec = Some(spec);
                // The resourceVersion read above makes this a compare-and-swap.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so the other replica takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    now.checked_sub(SignedDuration::from_secs(renewed_secs_ago))
                        .expect("valid"),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decisions_follow_holder_and_expiry() {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        assert_eq!(decide(None, "a", now), LeaseDecision::Create);
        assert_eq!(decide(Some(&lease("a", 3)), "a", now), LeaseDecision::Renew);
        assert_eq!(
            decide(Some(&lease("b", 3)), "a", now),
            LeaseDecision::Follow { holder: "b".into() }
        );
        // Expired: b stopped renewing 20 s ago with a 15 s lease.
        assert_eq!(
            decide(Some(&lease("b", 20)), "a", now),
            LeaseDecision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("", 1)), "a", now),
            LeaseDecision::TakeOver
        );
    }
}
