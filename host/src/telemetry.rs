//! Logging: tracing to stderr, human-readable or JSON lines.

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to stderr; stdout carries results.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = quiet_protocol_chatter(filter);
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{filter}`: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// `filter`, with the MCP library's per-message records (`rmcp`, at info)
/// held to warnings unless the filter names it.
fn quiet_protocol_chatter(filter: &str) -> String {
    if filter.contains("rmcp") {
        filter.to_string()
    } else {
        format!("{filter},rmcp=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_librarys_chatter_is_held_to_warnings_unless_asked_for() {
        assert_eq!(quiet_protocol_chatter("info"), "info,rmcp=warn");
        assert_eq!(quiet_protocol_chatter("info,rmcp=debug"), "info,rmcp=debug");
        assert!(EnvFilter::try_new(quiet_protocol_chatter("wasmnode=debug")).is_ok());
    }
}
