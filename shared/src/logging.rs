//! The one logging set-up of both services.
//!
//! Events go to stderr (stdout stays free for what a command prints, such
//! as `print-config`). Verbosity comes from `RUST_LOG` (tracing's
//! `EnvFilter` syntax, e.g. `info`, `warn,indexing_service=debug`; default
//! `info`). The format is `text` or `json` (one JSON object per line): the
//! environment variable `LOG_FORMAT` wins over the config's `log.format`.
//! Text lines carry ANSI colours only when stderr is a terminal (and
//! `NO_COLOR` is unset), unless `log.color` says `always` or `never`; a log
//! written to a file or a pipe is plain text.
//!
//! Every request gets one access line (target `access`: method, path,
//! status, latency in ms, request id) from the HTTP layer in
//! [`crate::http`].

use crate::config::{LogColor, LogConfig, LogFormat};
use std::io::IsTerminal;

/// The environment variable that chooses the format (`text` or `json`).
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";

/// What [`init`] settled on, resolved from the config and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// ANSI colours in text lines.
    pub ansi: bool,
}

/// Resolves `config` against the environment: `LOG_FORMAT` (`text` or
/// `json`, any case) wins over `config.format`; colours follow
/// `config.color`, where `auto` means "stderr is a terminal and `NO_COLOR`
/// is unset". `stderr_is_terminal` and `env` are parameters for tests.
/// Errors: a `LOG_FORMAT` value other than `text` or `json`.
pub fn resolve(
    config: &LogConfig,
    env: impl Fn(&str) -> Option<String>,
    stderr_is_terminal: bool,
) -> Result<LogSettings, String> {
    let format = match env(LOG_FORMAT_VAR) {
        None => config.format,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" => config.format,
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(format!(
                    "{LOG_FORMAT_VAR}={other:?}: expected `text` or `json`"
                ))
            }
        },
    };
    let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = format == LogFormat::Text
        && match config.color {
            LogColor::Always => true,
            LogColor::Never => false,
            LogColor::Auto => stderr_is_terminal && !no_color,
        };
    Ok(LogSettings { format, ansi })
}

/// Installs the global subscriber for a service whose log config is
/// `config` (see the module docs). Call once, early in `main`.
/// Errors: a bad `LOG_FORMAT` or `RUST_LOG` value (nothing is installed).
pub fn init(config: &LogConfig) -> Result<LogSettings, String> {
    use tracing_subscriber::EnvFilter;
    let settings = resolve(
        config,
        |k| std::env::var(k).ok(),
        std::io::stderr().is_terminal(),
    )?;
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("{}={v:?}: {e}", EnvFilter::DEFAULT_ENV))?
        }
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(settings.ansi).try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(settings)
}

/// Writes `text` and a newline to stdout for the command-line subcommands
/// (`print-config`, `print-openapi`, ...). A reader that closed the pipe
/// early (`| head`) ends the output quietly instead of a panic; other
/// write errors are returned.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn colours_only_on_a_terminal_unless_told() {
        let auto = LogConfig::default();
        let on_tty = resolve(&auto, env(&[]), true).unwrap();
        assert_eq!(
            on_tty,
            LogSettings {
                format: LogFormat::Text,
                ansi: true
            }
        );
        // A file or a pipe: plain text.
        assert!(!resolve(&auto, env(&[]), false).unwrap().ansi);
        assert!(
            !resolve(&auto, env(&[("NO_COLOR", "1")]), true)
                .unwrap()
                .ansi
        );
        let always = LogConfig {
            color: LogColor::Always,
            ..auto
        };
        assert!(resolve(&always, env(&[]), false).unwrap().ansi);
        let never = LogConfig {
            color: LogColor::Never,
            ..auto
        };
        assert!(!resolve(&never, env(&[]), true).unwrap().ansi);
    }

    #[test]
    fn log_format_env_wins_over_the_config_and_json_has_no_colours() {
        let text = LogConfig::default();
        let s = resolve(&text, env(&[("LOG_FORMAT", "JSON")]), true).unwrap();
        assert_eq!(
            s,
            LogSettings {
                format: LogFormat::Json,
                ansi: false
            }
        );
        let json = LogConfig {
            format: LogFormat::Json,
            ..text
        };
        assert_eq!(
            resolve(&json, env(&[]), false).unwrap().format,
            LogFormat::Json
        );
        assert_eq!(
            resolve(&json, env(&[("LOG_FORMAT", "text")]), false)
                .unwrap()
                .format,
            LogFormat::Text
        );
        let e = resolve(&text, env(&[("LOG_FORMAT", "yaml")]), false).unwrap_err();
        assert!(e.contains("LOG_FORMAT") && e.contains("json"), "{e}");
    }
}
