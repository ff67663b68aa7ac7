use clap::{Parser, Subcommand};
use shared::config::Config;

/// The command line: a subcommand (default `serve`), `--help`, `--version`.
#[derive(Parser)]
#[command(
    name = "indexing-service",
    version,
    about,
    after_help = "Configuration: config.yaml (path from CONFIG_PATH) and INDEXING__* \
                  environment variables (e.g. INDEXING__PORT=8000); `print-config` shows \
                  the result. Logging: RUST_LOG (default info), LOG_FORMAT=text|json."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Print the effective configuration (secrets redacted) and exit.
    PrintConfig,
    /// Print the OpenAPI document the service serves at `/openapi.json`,
    /// and exit.
    PrintOpenapi,
    /// Exit 0 when the local service answers 200 on /health (for container
    /// health checks; needs no tools in the image).
    Healthcheck,
    /// GET a path on the local service and print the body (default
    /// /health; e.g. /metrics). Sends the configured API key.
    Probe {
        #[arg(default_value = "/health")]
        path: String,
    },
    /// Restore a snapshot file (of the whole storage or of one collection)
    /// into the configured data directory, then exit. No service may be
    /// running on that directory. Each collection in the file replaces the
    /// one of its name; other collections are left alone.
    RestoreSnapshot {
        /// The snapshot file (`GET /snapshots/{snapshot}` or
        /// `GET /collections/{name}/snapshots/{snapshot}`).
        file: std::path::PathBuf,
        /// Data directory to restore into (default: `indexing.data_dir`).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Restore a one-collection snapshot under this name.
        #[arg(long)]
        collection: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("indexing-service: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = shared::logging::init(&config.indexing.log) {
        eprintln!("indexing-service: {e}");
        std::process::exit(2);
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintConfig => {
            shared::logging::print_stdout(&serde_yaml::to_string(&config.redacted())?)?;
            Ok(())
        }
        Command::PrintOpenapi => {
            shared::logging::print_stdout(&serde_json::to_string_pretty(
                &indexing_service::api::openapi(),
            )?)?;
            Ok(())
        }
        Command::Healthcheck => {
            shared::http::run_probe(config.indexing.port, "/health", None, false)
        }
        Command::Probe { path } => shared::http::run_probe(
            config.indexing.port,
            &path,
            config.indexing.api_key.as_deref(),
            true,
        ),
        Command::RestoreSnapshot {
            file,
            data_dir,
            collection,
        } => {
            let dir = data_dir.unwrap_or(config.indexing.data_dir);
            match indexing_service::snapshot::restore_into_data_dir(
                &dir,
                &file,
                collection.as_deref(),
            ) {
                Ok(done) => {
                    shared::logging::print_stdout(&serde_json::to_string_pretty(&done)?)?;
                    Ok(())
                }
                Err(e) => {
                    eprintln!("indexing-service: restore-snapshot: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Serve => {
            tracing::info!(
                "effective config:\n{}",
                serde_yaml::to_string(&config.redacted().indexing)?
            );
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(indexing_service::run(config.indexing))
        }
    }
}
