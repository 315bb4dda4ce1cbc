//! The single Spharos binary as a library: the command line, the module registry (Mimir-style
//! targets with dependencies) and the server that hosts the selected modules on one gRPC port
//! and one HTTP port.
#![forbid(unsafe_code)]

pub mod cli;
pub mod demo;
pub mod http;
pub mod keys;
pub mod registry;
pub mod serve;

use spharos_kit::config::{ConfigError, Settings};

/// Why the command failed, and so which exit code it gets.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Exit 64: the command line or the configuration is wrong; nothing was started.
    #[error("{0}")]
    Usage(String),
    /// Exit 69: a database or message bus could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// Exit 1.
    #[error("{0}")]
    Other(String),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) => 64,
            AppError::Unavailable(_) => 69,
            AppError::Other(_) => 1,
        }
    }
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Usage(e.to_string())
    }
}

/// Runs a parsed command.
pub async fn run(cli: cli::Cli) -> Result<(), AppError> {
    match cli.command {
        cli::Command::Serve(args) => {
            let targets =
                registry::resolve(&args.target).map_err(|e| AppError::Usage(e.to_string()))?;
            let settings = Settings::load(cli.config.as_deref())?;
            serve::serve(settings, targets, args.demo).await
        }
        cli::Command::Config(cli::ConfigCommand::Print) => {
            let settings = Settings::load(cli.config.as_deref())?;
            print!("{}", settings.redacted_toml());
            Ok(())
        }
        cli::Command::Tenant(cli::TenantCommand::Token(args)) => {
            let settings = Settings::load(cli.config.as_deref())?;
            let (signer, _, _) = spharos_kit::platform::load_keys(&settings)
                .map_err(|e| AppError::Usage(format!("keys: {e}")))?;
            let tenant: spharos_kit::TenantId = args.tenant.parse().map_err(|_| {
                AppError::Usage(format!("--tenant {:?} is not a UUID", args.tenant))
            })?;
            let perms: Vec<&str> = args.permission.iter().map(String::as_str).collect();
            let ttl = args.ttl_seconds.unwrap_or(settings.auth.token_ttl_seconds);
            println!("{}", signer.mint(tenant, &args.subject, &perms, ttl));
            Ok(())
        }
        cli::Command::Keys(cli::KeysCommand::Generate(args)) => {
            spharos_kit::crypto::MasterKey::generate_file(&args.out)
                .map_err(|e| AppError::Usage(e.to_string()))?;
            eprintln!(
                "새 마스터 키를 만들었습니다 / new master key written: {}",
                args.out.display()
            );
            Ok(())
        }
        cli::Command::Keys(cli::KeysCommand::Rotate) => {
            let settings = Settings::load(cli.config.as_deref())?;
            keys::rotate(&settings).await
        }
    }
}
