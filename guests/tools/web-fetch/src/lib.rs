//! The built-in `web_fetch` tool: one GET or POST to a host the operator
//! granted the tool (`[tools.web_fetch] allowed_hosts`), redirects followed
//! (each hop checked by the host again), the body read up to `max_bytes`
//! and, for HTML, reduced to text. The host refuses every request it did
//! not grant; this guest only reports what it was told.

mod fetch;
mod text;
mod url;

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

wit_bindgen::generate!({
    path: "../../../wit/tool",
    world: "tool",
});

use wasmnode::tool::types::Capabilities;

/// The JSON Schema of the arguments (the host checks them against it).
const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["url"],
  "properties": {
    "url": {"type": "string", "description": "An http:// or https:// URL on a host the operator granted"},
    "method": {"enum": ["GET", "POST"], "default": "GET"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "body": {"type": "string", "description": "The request body (POST)"},
    "max_bytes": {"type": "integer", "minimum": 1, "maximum": 8388608, "default": 1048576, "description": "Most bytes of the response body read; the rest is cut (truncated: true)"},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 10000, "description": "Longest wait for the connection, the first byte and between bytes (the operator's cap may be lower)"},
    "raw": {"type": "boolean", "default": false, "description": "Return HTML as it came, not reduced to text"}
  }
}"#;

/// The arguments, as the schema describes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    url: String,
    #[serde(default)]
    method: Method,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    raw: bool,
}

fn default_max_bytes() -> u64 {
    1 << 20
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The request method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

/// Why a fetch failed, as the tool reports it.
#[derive(Debug)]
pub enum FetchError {
    /// The arguments are wrong (a bad URL, say).
    Invalid(String),
    /// The host refused the request (not granted, or a forbidden address).
    Denied(String),
    /// The network or the server failed.
    Failed(String),
}

struct Component;

impl Guest for Component {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "web_fetch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Fetches a URL on a host the operator granted (GET or POST) and returns its status and text".into(),
            args_schema: SCHEMA.into(),
            capabilities: Capabilities {
                mounts: Vec::new(),
                writes: false,
            },
        }
    }

    fn invoke(args: String) -> Result<String, ToolError> {
        let args = parse(&args).map_err(ToolError::InvalidArgs)?;
        run(&args).map(|v| v.to_string()).map_err(|e| match e {
            FetchError::Invalid(m) => ToolError::InvalidArgs(m),
            FetchError::Denied(m) => ToolError::Denied(m),
            FetchError::Failed(m) => ToolError::Failed(m),
        })
    }
}

export!(Component);

/// Reads the arguments.
pub fn parse(json: &str) -> Result<Args, String> {
    serde_json::from_str(json).map_err(|e| format!("arguments: {e}"))
}

/// Fetches, follows redirects, and shapes the result.
fn run(args: &Args) -> Result<Value, FetchError> {
    let response = fetch::fetch(args)?;
    let html = response.content_type.contains("html");
    let body = String::from_utf8_lossy(&response.body);
    let text = if html && !args.raw {
        text::from_html(&body)
    } else {
        body.into_owned()
    };
    Ok(json!({
        "url": response.url,
        "status": response.status,
        "content_type": response.content_type,
        "text": text,
        "bytes": response.body.len(),
        "truncated": response.truncated,
    }))
}
