//! The environment variables the node reads, as data: each names the
//! config key it sets (SPLAI's and Vera's names are aliases of the
//! `WASMNODE_*` ones, which win). They are laid over the config file's
//! table before it is read, so each value is checked where the file's is.

use super::error::ConfigError;
use toml::{Table, Value};

/// How a variable's text becomes a config value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Taken as it is.
    Text,
    /// A comma-separated list.
    List,
    /// A whole number.
    Integer,
    /// A number.
    Float,
    /// A socket address (`HOST:PORT`).
    Address,
}

/// One setting read from the environment: the first of `names` that is set.
struct Var {
    names: &'static [&'static str],
    key: &'static [&'static str],
    kind: Kind,
}

const fn var(names: &'static [&'static str], key: &'static [&'static str], kind: Kind) -> Var {
    Var { names, key, kind }
}

use Kind::*;

/// Every variable, in the order they are applied.
#[rustfmt::skip]
const VARS: &[Var] = &[
    var(&["WASMNODE_WORKER_ID", "SPLAI_WORKER_ID", "WORKER_ID"], &["node", "worker_id"], Text),
    var(&["WASMNODE_DATA_DIR"], &["node", "data_dir"], Text),
    var(&["WASMNODE_PYTHON_DIR"], &["languages", "python", "dir"], Text),
    var(&["WASMNODE_ARTIFACT_ROOT", "SPLAI_ARTIFACT_ROOT"], &["node", "artifact_root"], Text),
    var(&["WASMNODE_PLUGIN_DIR"], &["node", "plugin_dir"], Text),
    var(&["WASMNODE_LABELS"], &["node", "labels"], List),
    var(&["WASMNODE_PROFILE"], &["node", "profile"], Text),
    var(&["WASMNODE_SYSFS_ROOT"], &["node", "sysfs_root"], Text),
    var(&["WASMNODE_LISTEN"], &["api", "listen"], Address),
    var(&["WASMNODE_API_KEY"], &["api", "api_key"], Text),
    var(&["WASMNODE_CORS_ORIGINS"], &["api", "cors_origins"], List),
    var(&["WASMNODE_MAX_CONCURRENT_JOBS", "MAX_CONCURRENT_TASKS"], &["scheduler", "max_concurrent_jobs"], Integer),
    var(&["WASMNODE_QUEUE_CAPACITY"], &["scheduler", "queue_capacity"], Integer),
    var(&["WASMNODE_WASM_ENGINES"], &["wasm", "engines"], Integer),
    var(&["WASMNODE_DEFAULT_RUNTIME_SECONDS", "TASK_TIMEOUT_SECONDS"], &["limits", "default_runtime_seconds"], Float),
    var(&["WASMNODE_MOUNT_ROOTS"], &["policy", "mount_roots"], List),
    var(&["WASMNODE_ALLOWED_MODES"], &["policy", "allowed_modes"], List),
    var(&["WASMNODE_CONTROL_PLANE_URL", "SPLAI_CONTROL_PLANE_URL"], &["control_plane", "url"], Text),
    var(&["WASMNODE_CONTROL_PLANE_TOKEN", "SPLAI_API_TOKEN"], &["control_plane", "token"], Text),
    var(&["WASMNODE_MAX_PARALLEL_TASKS", "SPLAI_MAX_PARALLEL_TASKS"], &["control_plane", "max_parallel_tasks"], Integer),
    var(&["WASMNODE_POLL_MILLIS", "SPLAI_POLL_MILLIS"], &["control_plane", "poll_millis"], Integer),
    var(&["WASMNODE_OLLAMA_BASE_URL", "SPLAI_OLLAMA_BASE_URL"], &["llm", "backends", "ollama", "url"], Text),
    var(&["WASMNODE_VLLM_BASE_URL", "SPLAI_VLLM_BASE_URL"], &["llm", "backends", "vllm", "url"], Text),
    var(&["WASMNODE_LLAMACPP_BASE_URL", "SPLAI_LLAMACPP_BASE_URL"], &["llm", "backends", "llama.cpp", "url"], Text),
    var(&["WASMNODE_REMOTE_API_BASE_URL", "SPLAI_REMOTE_API_BASE_URL"], &["llm", "backends", "remote_api", "url"], Text),
    var(&["WASMNODE_REMOTE_API_KEY", "SPLAI_REMOTE_API_KEY"], &["llm", "backends", "remote_api", "api_key"], Text),
    var(&["WASMNODE_EMBEDDING_BACKEND", "SPLAI_EMBEDDING_BACKEND"], &["llm", "embedding_backend"], Text),
    var(&["WASMNODE_EMBEDDING_MODEL", "SPLAI_EMBEDDING_MODEL"], &["llm", "embedding_model"], Text),
    var(&["WASMNODE_EMBEDDING_DIMENSION", "SPLAI_EMBEDDING_DIMENSION"], &["llm", "embedding_dimension"], Integer),
    var(&["WASMNODE_LLM_HTTP_RETRIES", "SPLAI_EMBEDDING_HTTP_RETRIES"], &["llm", "connect_retries"], Integer),
    var(&["WASMNODE_MODEL_CACHE_DIR", "SPLAI_MODEL_CACHE_DIR"], &["llm", "model_cache_dir"], Text),
    var(&["HF_TOKEN"], &["llm", "hf_token"], Text),
    var(&["HF_ENDPOINT"], &["llm", "hf_endpoint"], Text),
    var(&["WASMNODE_RETRIEVAL_BASE_URL", "SPLAI_RETRIEVAL_BASE_URL"], &["llm", "retrieval_base_url"], Text),
    var(&["WASMNODE_RETRIEVAL_API_KEY", "SPLAI_RETRIEVAL_API_KEY"], &["llm", "retrieval_api_key"], Text),
    var(&["WASMNODE_CAPABILITIES", "WORKER_CAPABILITIES"], &["vera", "capabilities"], List),
    var(&["WASMNODE_CALLBACK_ALLOWLIST"], &["vera", "callback_allowlist"], List),
    var(&["WASMNODE_MACHINE_ID", "MACHINE_ID"], &["goliat", "machine_id"], Text),
    var(&["WASMNODE_DOCKER"], &["docker", "mode"], Text),
    var(&["WASMNODE_DOCKER_HOST"], &["docker", "host"], Text),
    var(&["WASMNODE_ALLOWED_IMAGES"], &["docker", "allowed_images"], List),
    var(&["WASMNODE_SANDBOX_IMAGE"], &["docker", "sandbox_image"], Text),
    var(&["WASMNODE_CA_FILE"], &["tls", "ca_file"], Text),
];

/// SPLAI's list of the model backends to keep (the others are dropped).
pub const WORKER_BACKENDS: &str = "SPLAI_WORKER_BACKENDS";

/// Lays every variable that `get` finds over `table`.
pub fn overlay(
    table: &mut Table,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for var in VARS {
        let Some((name, text)) = var.names.iter().find_map(|n| get(n).map(|v| (*n, v))) else {
            continue;
        };
        set(table, var.key, value(name, &text, var.kind)?);
    }
    Ok(())
}

/// Sets `key` (a path of table names) in `table` to `value`.
pub fn set(table: &mut Table, key: &[&str], value: Value) {
    let (last, parents) = key.split_last().expect("keys are not empty");
    let mut here = table;
    for part in parents {
        let entry = here
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        here = entry.as_table_mut().expect("just made a table");
    }
    here.insert(last.to_string(), value);
}

/// Sets `key` in `table` to `value` unless something already stands there
/// (a value, or a non-table on the way, left for the reader to refuse).
pub fn set_default(table: &mut Table, key: &[&str], value: Value) {
    let mut here: &Table = table;
    for part in key {
        match here.get(*part) {
            None => return set(table, key, value),
            Some(Value::Table(next)) => here = next,
            Some(_) => return,
        }
    }
}

fn value(name: &str, text: &str, kind: Kind) -> Result<Value, ConfigError> {
    let invalid = |what: &str| ConfigError::Env {
        name: name.into(),
        value: text.into(),
        message: format!("not {what}"),
    };
    Ok(match kind {
        Text => Value::String(text.into()),
        List => Value::Array(split_list(text).into_iter().map(Value::String).collect()),
        Integer => Value::Integer(text.trim().parse().map_err(|_| invalid("a whole number"))?),
        Float => Value::Float(text.trim().parse().map_err(|_| invalid("a number"))?),
        Address => {
            let address: std::net::SocketAddr = text
                .trim()
                .parse()
                .map_err(|_| invalid("an address (HOST:PORT)"))?;
            Value::String(address.to_string())
        }
    })
}

/// A comma-separated list, trimmed, without empty items.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_variable_sets_a_key_of_the_right_type() {
        for var in VARS {
            let value = match var.kind {
                Text => "x",
                List => "a,b",
                Integer => "3",
                Float => "2.5",
                Address => "127.0.0.1:9",
            };
            let name = var.names[0];
            let loaded = Config::load(None, |n| (n == name).then(|| value.into()), &[]);
            if let Err(e) = loaded {
                let e = e.to_string();
                assert!(
                    !e.contains("unknown field") && !e.contains("invalid type"),
                    "{name}: {e}"
                );
            }
        }
    }

    #[test]
    fn a_default_never_replaces_what_stands_there() {
        let mut table: Table = toml::from_str("[a]\nb = 1\nc = 2\n").unwrap();
        set_default(&mut table, &["a", "b"], 9.into());
        set_default(&mut table, &["a", "c", "d"], 9.into());
        set_default(&mut table, &["x", "y"], 9.into());
        assert_eq!(table["a"]["b"].as_integer(), Some(1));
        assert_eq!(table["a"]["c"].as_integer(), Some(2), "a non-table stays");
        assert_eq!(table["x"]["y"].as_integer(), Some(9));
    }

    #[test]
    fn keys_with_dots_stay_one_key() {
        let mut table = Table::new();
        set(
            &mut table,
            &["llm", "backends", "llama.cpp", "url"],
            "u".into(),
        );
        assert_eq!(
            table["llm"]["backends"]["llama.cpp"]["url"].as_str(),
            Some("u")
        );
    }
}
