//! The command line: `spharos <noun> <verb>` with `--help` (and an example) at every level.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spharos",
    version,
    about = "Spharos Cloud Membership: 멤버십(포인트·쿠폰) 플랫폼 / membership (loyalty) platform",
    long_about = "Spharos Cloud Membership: a multi-tenant membership (loyalty) platform.\n\n\
        With no configuration, `spharos serve` runs everything in one process on SQLite files under \
        ./data and an in-process event bus. Set database.url (postgres://...) and nats.url \
        (nats://...) for production.\n\n\
        Configuration: built-in defaults, then --config FILE (TOML), then SPHAROS__SECTION__KEY \
        environment variables (e.g. SPHAROS__DATABASE__URL).",
    after_help = "Examples:\n  spharos serve --demo\n  spharos serve --target member --config /etc/spharos.toml\n  spharos config print\n  spharos tenant token --tenant 0190f2c4-6f1e-7000-8000-000000000001\n  spharos keys rotate"
)]
pub struct Cli {
    /// TOML configuration file (sections database, nats, grpc, http, auth, crypto, telemetry, tenant).
    #[arg(long, short = 'c', global = true, env = "SPHAROS_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run services: all of them in one process, or the targets you name.
    #[command(
        after_help = "Examples:\n  spharos serve                      # everything, embedded SQLite + in-process bus\n  spharos serve --demo               # plus a demo tenant; prints its API token\n  spharos serve --target member      # only the member service"
    )]
    Serve(ServeArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tenant tooling.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Master key tooling: generate a new key, re-wrap every tenant data key with it.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new random master key (64 hex characters, mode 0600) to a new file.
    #[command(
        after_help = "Example:\n  spharos keys generate --out /etc/spharos/master-2026-12.key"
    )]
    Generate(GenerateKeyArgs),
    /// Re-wrap every tenant data key (member and privacy schemas) with crypto.master_key_file.
    #[command(
        long_about = "Re-wrap every tenant data key with the primary master key (crypto.master_key_file), \
            opening each with whichever configured key wrapped it (the primary or one of \
            crypto.previous_master_key_files). The data keys themselves do not change, so no PII is \
            re-encrypted, and each key is re-wrapped in its own short transaction: services keep \
            running throughout.\n\n\
            Rotation without downtime:\n  \
            1. spharos keys generate --out new.key\n  \
            2. roll out master_key_file = new.key and previous_master_key_files = [old.key] \
               (every process then opens keys wrapped by either)\n  \
            3. spharos keys rotate (same configuration)\n  \
            4. roll out without previous_master_key_files, then retire old.key",
        after_help = "Example:\n  SPHAROS__CRYPTO__MASTER_KEY_FILE=new.key SPHAROS__CRYPTO__PREVIOUS_MASTER_KEY_FILES=old.key spharos keys rotate"
    )]
    Rotate,
}

#[derive(Debug, Args)]
pub struct GenerateKeyArgs {
    /// Where to write the key; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Comma-separated targets: `all` or module names (member, points, coupon, privacy,
    /// billing). Dependencies come along.
    #[arg(long, short = 't', default_value = "all")]
    pub target: String,
    /// Create a demo tenant with stores and members, and print its API token.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults + file + environment) with secrets redacted.
    #[command(
        after_help = "Example:\n  SPHAROS__DATABASE__URL=postgres://app:secret@db/spharos spharos config print"
    )]
    Print,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Mint an API token for a tenant with the configured signing key.
    #[command(
        after_help = "Example:\n  spharos tenant token --tenant 0190f2c4-6f1e-7000-8000-000000000001 --subject pos-gangnam --permission pii:unmask"
    )]
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The tenant id (UUID).
    #[arg(long)]
    pub tenant: String,
    /// Who the token is for (staff id, POS id, integration name).
    #[arg(long, default_value = "admin")]
    pub subject: String,
    /// Extra permissions, repeatable (e.g. pii:unmask).
    #[arg(long)]
    pub permission: Vec<String>,
    /// Lifetime in seconds (default auth.token_ttl_seconds).
    #[arg(long)]
    pub ttl_seconds: Option<u64>,
}

impl Cli {
    /// Parses `std::env::args`; usage errors exit 64 (help and version exit 0).
    pub fn parse_args() -> Result<Self, ExitCode> {
        Self::try_parse().map_err(|e| {
            let _ = e.print();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(64),
            }
        })
    }
}
