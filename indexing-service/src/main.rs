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
