use shared::config::Config;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("indexing-service: {e}");
            std::process::exit(2);
        }
    };
    match std::env::args().nth(1).as_deref() {
        Some("print-config") => {
            println!("{}", serde_yaml::to_string(&config.redacted())?);
            return Ok(());
        }
        Some("print-openapi") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&indexing_service::api::openapi())?
            );
            return Ok(());
        }
        Some("healthcheck") => {
            shared::http::run_probe(config.indexing.port, "/health", None, false)
        }
        Some("probe") => {
            let path = std::env::args().nth(2).unwrap_or_else(|| "/health".into());
            shared::http::run_probe(
                config.indexing.port,
                &path,
                config.indexing.api_key.as_deref(),
                true,
            )
        }
        Some("serve") | None => {}
        Some(other) => {
            eprintln!(
                "indexing-service: unknown command `{other}` (serve, print-config, print-openapi)"
            );
            std::process::exit(2);
        }
    }
    tracing::info!(
        "effective config:\n{}",
        serde_yaml::to_string(&config.redacted().indexing)?
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(indexing_service::run(config.indexing))
}
