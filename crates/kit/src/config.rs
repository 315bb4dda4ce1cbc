//! Layered configuration (the `config` crate): built-in defaults, then an optional TOML file,
//! then `SPHAROS__SECTION__KEY` environment variables. Secrets are `secrecy` values and are
//! redacted when printed.
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Everything a Spharos process can be configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub grpc: ListenSettings,
    pub http: ListenSettings,
    pub auth: AuthSettings,
    pub crypto: CryptoSettings,
    pub telemetry: TelemetrySettings,
    pub tenant: TenantSettings,
    pub member: MemberSettings,
    pub services: ServiceEndpoints,
}

/// Where other modules' gRPC APIs are. Unset means "this process" (`grpc.listen`), which is
/// right for `--target all`; microservice deployments set each to its Service address.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceEndpoints {
    pub member: Option<String>,
    pub points: Option<String>,
    pub coupon: Option<String>,
    pub privacy: Option<String>,
    pub billing: Option<String>,
}

impl ServiceEndpoints {
    /// The configured address of the module called `name`, if any.
    pub fn configured(&self, name: &str) -> Option<&str> {
        match name {
            "member" => self.member.as_deref(),
            "points" => self.points.as_deref(),
            "coupon" => self.coupon.as_deref(),
            "privacy" => self.privacy.as_deref(),
            "billing" => self.billing.as_deref(),
            _ => None,
        }
    }
}

impl Settings {
    /// The gRPC endpoint of a module: its configured address, or this process.
    pub fn endpoint_of(&self, configured: &Option<String>) -> String {
        match configured {
            Some(url) => url.clone(),
            None => format!("http://{}", self.grpc.listen),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://...` selects PostgreSQL; unset uses SQLite files under `data_dir`.
    pub url: Option<SecretString>,
    /// Where the embedded default keeps its SQLite files and generated keys.
    pub data_dir: PathBuf,
    /// The PostgreSQL role the services run as (not the tables' owner, so row-level security
    /// applies). Created by the migrations when missing.
    pub app_role: String,
    pub max_connections: u32,
    /// PostgreSQL: how often, in seconds, the statistics keeper looks for tables whose planner
    /// statistics are stale and runs `ANALYZE` on them ([`crate::statistics`]); 0 turns it off.
    /// It acts only where autovacuum would not: every table when `autovacuum` is off, else only
    /// tables never analyzed yet.
    pub statistics_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NatsSettings {
    /// `nats://host:port` selects NATS JetStream; unset uses the in-process bus.
    pub url: Option<String>,
    /// The JetStream stream that holds every event.
    pub stream: String,
    /// Subject prefix: events go to `<namespace>.<service>.<event>`.
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListenSettings {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Ed25519 private key (PKCS#8 PEM) used to mint tenant tokens. Generated under
    /// `database.data_dir/keys` on first start when unset.
    pub signing_key_file: Option<PathBuf>,
    /// Extra trusted public keys (PEM), for verification during key rotation.
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    /// Lifetime of minted tokens, in seconds.
    pub token_ttl_seconds: u64,
    /// Where else token revocations come from (`[auth.revocations]`); unset, only this
    /// process's own bus.
    #[serde(default)]
    pub revocations: RevocationSettings,
}

/// A second source of token revocations (`billing.token_revoked`) besides the process's own
/// bus: another stream and subject namespace on the same NATS (`nats.url`). Dedicated tenants
/// run on a stream of their own while billing publishes revocations on the platform's, so
/// the operator sets these to the platform's `nats.stream` and `nats.namespace`
/// (`SPHAROS__AUTH__REVOCATIONS__STREAM`, `SPHAROS__AUTH__REVOCATIONS__NAMESPACE`). Both or
/// neither; they need `nats.url`. The stream is only read: it is never created or changed,
/// and while it does not exist the listener retries (with a warning).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RevocationSettings {
    /// The JetStream stream holding the revocations, e.g. `SPHAROS`.
    pub stream: Option<String>,
    /// Its subject namespace: revocations are `<namespace>.billing.token_revoked`, e.g.
    /// `spharos`.
    pub namespace: Option<String>,
}

impl RevocationSettings {
    /// `(stream, namespace)` when configured (validation refuses one without the other).
    pub fn source(&self) -> Option<(&str, &str)> {
        match (&self.stream, &self.namespace) {
            (Some(stream), Some(namespace)) => Some((stream, namespace)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CryptoSettings {
    /// 32-byte master key (hex or raw) that wraps every tenant's data key. Generated under
    /// `database.data_dir/keys` on first start when unset.
    pub master_key_file: Option<PathBuf>,
    /// Master keys being rotated out: data keys they wrapped still open, until `spharos keys
    /// rotate` has re-wrapped every one with `master_key_file`.
    #[serde(default)]
    pub previous_master_key_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,spharos_member=debug`.
    pub log_level: String,
    /// OTLP gRPC endpoint (`http://otel-collector:4317`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TenantSettings {
    pub default_time_zone: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MemberSettings {
    /// How often every tenant's grades are re-evaluated, in seconds (purchases age out of the
    /// trailing 12 months).
    pub grade_evaluation_interval_seconds: u64,
}

const DEFAULTS: &str = r#"
[database]
data_dir = "./data"
app_role = "spharos_app"
max_connections = 10
statistics_interval_seconds = 5

[nats]
stream = "SPHAROS"
namespace = "spharos"

[grpc]
listen = "127.0.0.1:50051"

[http]
listen = "127.0.0.1:8080"

[auth]
token_ttl_seconds = 31536000
# Token revocations are heard on this process's own bus. [auth.revocations] adds a second
# source on the same NATS (needs nats.url; both keys or neither): a dedicated tenant sets the
# platform's stream and namespace, where billing publishes them. Only read, never created.
#   [auth.revocations]
#   stream = "SPHAROS"      # SPHAROS__AUTH__REVOCATIONS__STREAM
#   namespace = "spharos"   # SPHAROS__AUTH__REVOCATIONS__NAMESPACE

[crypto]

[telemetry]
log_format = "pretty"
log_level = "info,sea_orm_migration=warn,sqlx=warn"

[tenant]
default_time_zone = "Asia/Seoul"

[member]
grade_evaluation_interval_seconds = 3600

[services]
"#;

/// Why the configuration could not be loaded. The binary exits 64 on this.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `file` (if given), then `SPHAROS__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// [`Settings::load`] with `env` in place of the process environment when given (tests).
    fn load_with_env(
        file: Option<&Path>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SPHAROS")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("auth.public_key_files")
                .with_list_parse_key("crypto.previous_master_key_files")
                .try_parsing(true)
                .source(env),
        );
        let cfg = builder.build().map_err(|source| ConfigError::File {
            path: file.map(Path::to_path_buf).unwrap_or_default(),
            source,
        })?;
        let settings: Settings = cfg
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database.url {
            let u = url.expose_secret();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid(
                    "database.url must be a postgres:// URL (leave it unset for the embedded SQLite default)".into(),
                ));
            }
        }
        if let Some(url) = &self.nats.url
            && !url.starts_with("nats://")
        {
            return Err(ConfigError::Invalid(
                "nats.url must be a nats:// URL (leave it unset for the in-process bus)".into(),
            ));
        }
        for (key, addr) in [
            ("grpc.listen", &self.grpc.listen),
            ("http.listen", &self.http.listen),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be host:port like 127.0.0.1:50051, got {addr:?}"
                )));
            }
        }
        if crate::time::parse_zone(&self.tenant.default_time_zone).is_none() {
            return Err(ConfigError::Invalid(format!(
                "tenant.default_time_zone {:?} is not an IANA time zone (e.g. Asia/Seoul)",
                self.tenant.default_time_zone
            )));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if self.nats.namespace.is_empty() || self.nats.namespace.contains(['*', '>', ' ']) {
            return Err(ConfigError::Invalid(
                "nats.namespace must be a plain subject token like \"spharos\"".into(),
            ));
        }
        self.validate_revocations()
    }

    fn validate_revocations(&self) -> Result<(), ConfigError> {
        let r = &self.auth.revocations;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match (&r.stream, &r.namespace) {
            (None, None) => return Ok(()),
            (Some(_), None) => {
                return invalid(
                    "auth.revocations.namespace must be set with auth.revocations.stream (the \
                     subject namespace of that stream, e.g. \"spharos\")"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "auth.revocations.stream must be set with auth.revocations.namespace (the \
                     JetStream stream holding that namespace, e.g. \"SPHAROS\")"
                        .into(),
                );
            }
            (Some(stream), Some(namespace)) => {
                // JetStream stream names: no whitespace, '.', wildcards or path separators.
                if stream.is_empty()
                    || stream
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
                {
                    return invalid(format!(
                        "auth.revocations.stream must be a JetStream stream name like \"SPHAROS\", got {stream:?}"
                    ));
                }
                // As for nats.namespace: whatever the platform may use is accepted here.
                if namespace.is_empty()
                    || namespace
                        .chars()
                        .any(|c| c.is_whitespace() || c == '*' || c == '>')
                {
                    return invalid(format!(
                        "auth.revocations.namespace must be a subject prefix like \"spharos\" (no wildcards or spaces), got {namespace:?}"
                    ));
                }
            }
        }
        // The in-process bus hears this process only: refusing to start is safer than running
        // on while the revocations this setting asks for can never arrive.
        if self.nats.url.is_none() {
            return invalid(
                "auth.revocations.stream and auth.revocations.namespace need nats.url (another \
                 stream's revocations are read from NATS; the in-process bus has none)"
                    .into(),
            );
        }
        Ok(())
    }

    /// True when PostgreSQL is configured (else the embedded SQLite default).
    pub fn uses_postgres(&self) -> bool {
        self.database.url.is_some()
    }

    /// The effective configuration as TOML, secrets replaced by `[REDACTED]`.
    pub fn redacted_toml(&self) -> String {
        let redact = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]".to_string());
        let view = serde_json::json!({
            "database": {
                "url": redact(&self.database.url),
                "data_dir": self.database.data_dir,
                "app_role": self.database.app_role,
                "max_connections": self.database.max_connections,
                "statistics_interval_seconds": self.database.statistics_interval_seconds,
            },
            "nats": {
                "url": self.nats.url.as_deref().map(redact_url_password),
                "stream": self.nats.stream,
                "namespace": self.nats.namespace,
            },
            "grpc": { "listen": self.grpc.listen },
            "http": { "listen": self.http.listen },
            "auth": {
                "signing_key_file": self.auth.signing_key_file,
                "public_key_files": self.auth.public_key_files,
                "token_ttl_seconds": self.auth.token_ttl_seconds,
                "revocations": self.auth.revocations.source().map(|(stream, namespace)| {
                    serde_json::json!({ "stream": stream, "namespace": namespace })
                }),
            },
            "crypto": {
                "master_key_file": self.crypto.master_key_file,
                "previous_master_key_files": self.crypto.previous_master_key_files,
            },
            "telemetry": {
                "log_format": self.telemetry.log_format,
                "log_level": self.telemetry.log_level,
                "otlp_endpoint": self.telemetry.otlp_endpoint,
            },
            "tenant": { "default_time_zone": self.tenant.default_time_zone },
            "member": { "grade_evaluation_interval_seconds": self.member.grade_evaluation_interval_seconds },
            "services": {
                "member": self.services.member,
                "points": self.services.points,
                "coupon": self.services.coupon,
                "privacy": self.services.privacy,
                "billing": self.services.billing,
            },
        });
        let value: toml::Value = serde_json::from_value(strip_nulls(view))
            .unwrap_or(toml::Value::Table(Default::default()));
        toml::to_string_pretty(&value).unwrap_or_default()
    }
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn redact_url_password(url: &str) -> String {
    // nats://user:pass@host → nats://user:[REDACTED]@host
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:[REDACTED]{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::load(None).expect("defaults load");
        assert!(!s.uses_postgres());
        assert!(s.nats.url.is_none());
        assert_eq!(s.grpc.listen, "127.0.0.1:50051");
        assert_eq!(s.http.listen, "127.0.0.1:8080");
        assert_eq!(s.tenant.default_time_zone, "Asia/Seoul");
    }

    #[test]
    fn a_file_overrides_defaults_and_secrets_are_redacted() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            f,
            "[database]\nurl = \"postgres://app:hunter2@db/spharos\"\n[nats]\nurl = \"nats://u:pw@nats:4222\"\n[grpc]\nlisten = \"0.0.0.0:6000\""
        )
        .expect("write");
        let s = Settings::load(Some(f.path())).expect("file loads");
        assert!(s.uses_postgres());
        assert_eq!(s.grpc.listen, "0.0.0.0:6000");
        let printed = s.redacted_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
        assert!(printed.contains("[REDACTED]"), "{printed}");
        assert!(printed.contains("0.0.0.0:6000"), "{printed}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(f, "[grpc]\nlisten = \"not an address\"").expect("write");
        let err = Settings::load(Some(f.path())).expect_err("bad listen");
        assert!(err.to_string().contains("grpc.listen"), "{err}");

        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(f, "[tenant]\ndefault_time_zone = \"Mars/Olympus\"").expect("write");
        let err = Settings::load(Some(f.path())).expect_err("bad zone");
        assert!(
            err.to_string().contains("tenant.default_time_zone"),
            "{err}"
        );
    }

    fn env(vars: &[(&str, &str)]) -> Option<config::Map<String, String>> {
        Some(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn revocations_come_from_the_own_bus_only_by_default() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults load");
        assert!(s.auth.revocations.source().is_none());
        assert!(!s.redacted_toml().contains("revocations"));
        // The documented keys are only comments in the defaults.
        assert!(DEFAULTS.contains("SPHAROS__AUTH__REVOCATIONS__STREAM"));
        assert!(DEFAULTS.contains("SPHAROS__AUTH__REVOCATIONS__NAMESPACE"));
    }

    #[test]
    fn a_second_revocation_source_is_read_from_the_environment() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SPHAROS__NATS__URL", "nats://nats:4222"),
                ("SPHAROS__NATS__STREAM", "T0190F2C4"),
                ("SPHAROS__NATS__NAMESPACE", "t0190f2c4"),
                ("SPHAROS__AUTH__REVOCATIONS__STREAM", "SPHAROS"),
                ("SPHAROS__AUTH__REVOCATIONS__NAMESPACE", "spharos"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.auth.revocations.source(), Some(("SPHAROS", "spharos")));
        assert_eq!(s.nats.stream, "T0190F2C4");
        let printed = s.redacted_toml();
        assert!(printed.contains("[auth.revocations]"), "{printed}");
        assert!(printed.contains("stream = \"SPHAROS\""), "{printed}");
    }

    #[test]
    fn bad_revocation_sources_name_the_key() {
        let nats = ("SPHAROS__NATS__URL", "nats://nats:4222");
        let stream = ("SPHAROS__AUTH__REVOCATIONS__STREAM", "SPHAROS");
        let namespace = ("SPHAROS__AUTH__REVOCATIONS__NAMESPACE", "spharos");
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[nats, stream], "auth.revocations.namespace must be set"),
            (&[nats, namespace], "auth.revocations.stream must be set"),
            (
                &[
                    nats,
                    namespace,
                    ("SPHAROS__AUTH__REVOCATIONS__STREAM", "SPHA.ROS"),
                ],
                "auth.revocations.stream must be a JetStream stream name",
            ),
            (
                &[nats, namespace, ("SPHAROS__AUTH__REVOCATIONS__STREAM", "")],
                "auth.revocations.stream must be a JetStream stream name",
            ),
            (
                &[
                    nats,
                    stream,
                    ("SPHAROS__AUTH__REVOCATIONS__NAMESPACE", "spharos.>"),
                ],
                "auth.revocations.namespace must be a subject prefix",
            ),
            // The in-process bus cannot hear another stream: refused, not ignored.
            (&[stream, namespace], "need nats.url"),
        ];
        for (vars, want) in cases {
            let err = Settings::load_with_env(None, env(vars)).expect_err(want);
            assert!(err.to_string().contains(want), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err =
            Settings::load(Some(Path::new("/nonexistent/spharos.toml"))).expect_err("missing");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
