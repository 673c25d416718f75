//! `wasmnode precompile`: the built-in guests compiled for any CPU of this
//! binary's target, written for a release build to embed.

use super::{Printed, load_config, out};
use crate::cli::PrecompileArgs;
use std::path::Path;

/// Compiles the built-ins under the configuration's engine settings.
pub fn execute(config_file: Option<&Path>, args: &PrecompileArgs) -> anyhow::Result<Printed> {
    let config = load_config(config_file, &[])?;
    let written = wasmnode_runtime::wasm::precompile(&config.wasm_config().engine, &args.out)?;
    for w in &written {
        out(&format!(
            "{}\t{} bytes\t{}\n",
            w.name,
            w.bytes,
            w.path.display()
        ));
    }
    Ok(Printed { status: 0 })
}
