//! Logging of every role: tracing to stderr, filtered by `PAYROUTE_LOG`, as text (with
//! colour only on a terminal, never under `NO_COLOR`) or as one JSON object per line.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// Environment variable of the filter (tracing `EnvFilter` syntax).
const ENV_FILTER: &str = "PAYROUTE_LOG";
/// Environment variable of the format; also what `--log-format` is passed on as.
pub(crate) const ENV_FORMAT: &str = "PAYROUTE_LOG_FORMAT";
/// Filter when `PAYROUTE_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal and `NO_COLOR` is
    /// unset or empty.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message` and the
    /// event's fields), for log collectors.
    Json,
}

impl LogFormat {
    /// The value of `--log-format` and `PAYROUTE_LOG_FORMAT` that means `self`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Whether text logs get ANSI colour codes: only on a terminal, and not when `NO_COLOR`
/// is set to a non-empty value (<https://no-color.org>). Log files and `docker compose
/// logs` are not terminals, so they stay free of escape codes.
pub(crate) fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the global subscriber: stderr, `PAYROUTE_LOG` filter, `format`.
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(ENV_FILTER)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR");
            let ansi = colour_wanted(std::io::stderr().is_terminal(), no_color.as_deref());
            builder.with_ansi(ansi).init();
        }
        // Fields at the top level, next to `message`: what log collectors index.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = |v: &'static str| Some(OsStr::new(v));
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, set("")), "an empty NO_COLOR is unset");
        assert!(!colour_wanted(true, set("1")));
        assert!(!colour_wanted(true, set("0")), "any non-empty value counts");
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, set("1")));
    }

    #[test]
    fn format_names_are_the_flag_values() {
        use clap::ValueEnum;
        for f in LogFormat::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, f.as_str());
        }
    }
}
