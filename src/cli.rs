//! Command line (issue #2 scope 1): `xcapd serve`, `xcapd check-config`, `xcapd validate`.
//! Merges configuration sources in the documented order: defaults < file < env < flags.

use crate::app;
use crate::config::Config;
use crate::xml;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "xcapd",
    version,
    about = "XCAP/XDM server suite (RFC 4825, OMA XDM)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct ConfigArgs {
    /// TOML configuration file (see config/xcapd.example.toml).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// HTTP listen address, e.g. 127.0.0.1:8080.
    #[arg(long, global = true)]
    http: Option<SocketAddr>,
    /// Data directory for the embedded store.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// SIP listen address (UDP and TCP), e.g. 127.0.0.1:5060; port 0 picks one; "" disables.
    #[arg(long, global = true)]
    sip: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve(ConfigArgs),
    /// Load the configuration, application usages and schemas, then exit.
    CheckConfig(ConfigArgs),
    /// Manage users in the data directory (the server must be stopped).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Bring the PostgreSQL database to this binary's schema (nodes also do it at start).
    Migrate(ConfigArgs),
    /// Import users and documents of another XCAP server into the configured store.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Validate a document offline against an application usage; errors carry line numbers.
    Validate {
        auid: String,
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
enum ImportFrom {
    /// OpenXCAP / OpenSIPS: the `xcap` table (documents) and the `subscriber` table (HA1s),
    /// from a SQLite file or a PostgreSQL database.
    Openxcap {
        /// The SQLite database file.
        #[arg(
            long,
            conflicts_with = "postgres",
            required_unless_present = "postgres"
        )]
        sqlite: Option<PathBuf>,
        /// The PostgreSQL database (libpq URL).
        #[arg(long)]
        postgres: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Add a user: `xcapd user add sip:alice@example.com --password secret [--role admin]`.
    Add {
        xui: String,
        /// Password; read from the XCAPD_PASSWORD environment variable when absent.
        #[arg(long)]
        password: Option<String>,
        /// Digest realm; default: the XUI's domain.
        #[arg(long)]
        realm: Option<String>,
        /// user (default), admin or service; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Delete a user.
    Del { xui: String },
    /// List users (no secrets).
    List,
    /// Change a user's password.
    Passwd {
        xui: String,
        #[arg(long)]
        password: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xcapd: {message}");
            ExitCode::from(2)
        }
    }
}

fn load_config(args: &ConfigArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config
        .apply_env(|k| std::env::var(k).ok())
        .map_err(|e| e.to_string())?;
    if let Some(sip) = &args.sip {
        config.sip.listen = sip.clone();
    }
    if let Some(http) = args.http {
        config.server.http = http;
    }
    if let Some(data) = &args.data {
        config.server.data_dir = data.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::alloc::release_when_idle)
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(&args)?;
            crate::telemetry::init(&config.log.level);
            let rt = runtime()?;
            let outcome = rt.block_on(app::run_until(config, shutdown_signal()));
            // A storage call stuck in the kernel must not hold the exit: the journal covers it.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            outcome.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let config = load_config(&args)?;
            let (registry, _validator) = app::load_usages(&config).map_err(|e| e.to_string())?;
            println!(
                "configuration OK: {} application usages, XCAP root {}, storage {:?}",
                registry.iter().count(),
                config.server.xcap_root,
                config.storage.backend
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let config = load_config(&args)?;
            migrate(&config)
        }
        Command::Import { from, config } => {
            let config = load_config(&config)?;
            let ImportFrom::Openxcap { sqlite, postgres } = from;
            let from = match (sqlite, postgres) {
                (Some(path), _) => crate::cli_import::From::Sqlite(path),
                (None, Some(url)) => crate::cli_import::From::Postgres(url),
                (None, None) => return Err("give --sqlite FILE or --postgres URL".into()),
            };
            let summary = crate::cli_import::import_openxcap(&config, &from)?;
            for line in summary.lines() {
                println!("{line}");
            }
            let refused = summary.refused_documents.len() + summary.refused_users.len();
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::User { action, config } => {
            let config = load_config(&config)?;
            user_command(&config, action)
        }
        Command::Validate { auid, file, config } => {
            let config = load_config(&config)?;
            validate_file(&config, &auid, &file)
        }
    }
}

/// `xcapd migrate`: applies the migrations this binary has that the database lacks.
fn migrate(config: &Config) -> Result<ExitCode, String> {
    if config.storage.backend != crate::config::StorageBackend::Postgres {
        println!(
            "storage {:?}: nothing to migrate (its format is checked at open)",
            config.storage.backend
        );
        return Ok(ExitCode::SUCCESS);
    }
    use crate::storage::pg_schema;
    let found = runtime()?.block_on(async {
        let (mut client, connection) =
            tokio_postgres::connect(&config.storage.postgres_url, tokio_postgres::NoTls)
                .await
                .map_err(|e| pg_schema::backend(e).to_string())?;
        let running = tokio::spawn(connection);
        let found = pg_schema::migrate(&mut client)
            .await
            .map_err(|e| e.to_string());
        drop(client);
        let _ = running.await;
        found
    })?;
    if found == pg_schema::CURRENT {
        println!("database schema at version {found}: up to date");
    } else {
        println!(
            "database schema migrated from version {found} to {}",
            pg_schema::CURRENT
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn password(given: Option<String>) -> Result<String, String> {
    given
        .or_else(|| std::env::var("XCAPD_PASSWORD").ok())
        .ok_or_else(|| "give --password or set XCAPD_PASSWORD".to_string())
}

fn user_command(config: &Config, action: UserAction) -> Result<ExitCode, String> {
    use crate::cli_user;
    let at = match config.storage.backend {
        crate::config::StorageBackend::Postgres => {
            cli_user::Place::Postgres(&config.storage.postgres_url)
        }
        _ => cli_user::Place::Data(&config.server.data_dir),
    };
    let out = match action {
        UserAction::Add {
            xui,
            password: pw,
            realm,
            roles,
        } => {
            let roles = roles
                .iter()
                .map(|r| {
                    r.parse()
                        .map_err(|_| format!("unknown role {r:?} (user, admin, service)"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            cli_user::user_add(at, &xui, realm.as_deref(), &password(pw)?, &roles)
        }
        UserAction::Del { xui } => cli_user::user_del(at, &xui),
        UserAction::List => cli_user::user_list(at).map(|lines| lines.join("\n")),
        UserAction::Passwd { xui, password: pw } => cli_user::user_passwd(at, &xui, &password(pw)?),
    }
    .map_err(|e| e.to_string())?;
    if !out.is_empty() {
        println!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Offline validation: well-formedness, UTF-8, schema and the usage's constraint hooks.
fn validate_file(config: &Config, auid: &str, file: &PathBuf) -> Result<ExitCode, String> {
    let (registry, validator) = app::load_usages(config).map_err(|e| e.to_string())?;
    let usage = registry
        .get(auid)
        .ok_or_else(|| format!("unknown application usage {auid}"))?;
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let limits = config.limits.xml_limits();
    let text = match xml::check_document(&bytes) {
        Ok(t) => t,
        Err(e) => {
            println!("{}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let doc = match xml::parse_document(text, &limits) {
        Ok(d) => d,
        Err(e) => {
            println!("{}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut ok = true;
    if usage.descriptor.schema.is_some() {
        match validator.validate_blocking(auid, Arc::from(text)) {
            Ok(()) => {}
            Err(crate::xsd::XsdError::Invalid { all, message, line }) => {
                ok = false;
                if all.is_empty() {
                    println!("{}:{}: {message}", file.display(), line.unwrap_or(0));
                }
                for (line, msg) in all {
                    println!("{}:{}: {msg}", file.display(), line.unwrap_or(0));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let ctx = crate::appusage::hooks::HookContext {
        xcap_root: &config.public_root(config.server.http),
        auid,
        xui: None,
        document_path: "index",
        allow_foreign_references: true,
        oma_compliant: config.xcap.oma_compliant,
    };
    for (name, hook) in &usage.hooks {
        if let Err(v) = hook(&doc, &ctx) {
            ok = false;
            println!("{}: constraint {name}: {v:?}", file.display());
        }
    }
    if ok {
        println!("{}: valid {auid} document", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
