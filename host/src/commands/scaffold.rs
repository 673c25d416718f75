//! `wasmnode wit` and `wasmnode tool new`: the node's WIT packages, and a
//! plugin project that builds anywhere (the WIT it needs is written into
//! it). The Rust template is `examples/plugin-tool`, renamed.

use super::Printed;
use crate::cli::{ToolNewArgs, WitArgs};
use anyhow::{Context, bail};
use std::path::Path;

/// The node's WIT packages: (directory, file, text).
const WIT: &[(&str, &str, &str)] = &[
    (
        "tool",
        "tool.wit",
        include_str!("../../../wit/tool/tool.wit"),
    ),
    (
        "task",
        "task.wit",
        include_str!("../../../wit/task/task.wit"),
    ),
];

/// The template's files, as `examples/plugin-tool` has them.
const TEMPLATE_LIB: &str = include_str!("../../../examples/plugin-tool/src/lib.rs");
const TEMPLATE_CARGO: &str = include_str!("../../../examples/plugin-tool/Cargo.toml");
const TEMPLATE_LOCK: &str = include_str!("../../../examples/plugin-tool/Cargo.lock");
/// The template's golden cases (`wasmnode tool test`), as written.
const TEMPLATE_CASES: &[(&str, &str)] = &[
    (
        "cases/counts.json",
        include_str!("../../../examples/plugin-tool/cases/counts.json"),
    ),
    (
        "cases/missing_path.json",
        include_str!("../../../examples/plugin-tool/cases/missing_path.json"),
    ),
    (
        "cases/data/poem.txt",
        include_str!("../../../examples/plugin-tool/cases/data/poem.txt"),
    ),
];
/// The template's names, replaced by the new tool's.
const TEMPLATE_TOOL: &str = "word_count";
const TEMPLATE_PACKAGE: &str = "word-count";
/// Where the template finds the WIT inside this repository, and where a
/// new project has its own copy.
const TEMPLATE_WIT_PATH: &str = "../../wit/tool";
const PROJECT_WIT_PATH: &str = "wit";

/// Prints the WIT packages, or writes them under `--out`.
pub fn wit(args: WitArgs) -> anyhow::Result<Printed> {
    match args.out {
        Some(dir) => {
            for (package, file, text) in WIT {
                write_new(&dir.join(package).join(file), text)?;
            }
            super::out(&format!("wrote the WIT packages under {}\n", dir.display()));
        }
        None => {
            for (_, _, text) in WIT {
                super::out(&format!("{text}\n"));
            }
        }
    }
    Ok(Printed { status: 0 })
}

/// Creates a plugin project named after the tool.
pub fn new(args: ToolNewArgs) -> anyhow::Result<Printed> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "a tool name is lower-case letters, digits and `_`, starting with a letter: `{name}` is not"
        );
    }
    let dir = args.dir.unwrap_or_else(|| name.into());
    if dir.exists() {
        bail!("{} already exists; pick another --dir", dir.display());
    }
    let package = name.replace('_', "-");
    let lib = TEMPLATE_LIB
        .replace(TEMPLATE_WIT_PATH, PROJECT_WIT_PATH)
        .replace(TEMPLATE_TOOL, name);
    let cargo = TEMPLATE_CARGO
        .replace(TEMPLATE_PACKAGE, &package)
        .replace(TEMPLATE_TOOL, name)
        .replace(
            "copy this directory, rename the\n# package, edit src/lib.rs",
            "edit src/lib.rs",
        );
    let lock = TEMPLATE_LOCK.replace(
        &format!("name = \"{TEMPLATE_PACKAGE}\""),
        &format!("name = \"{package}\""),
    );
    let (_, wit_file, wit_text) = WIT[0];
    write_new(&dir.join("src/lib.rs"), &lib)?;
    write_new(&dir.join("Cargo.toml"), &cargo)?;
    write_new(&dir.join("Cargo.lock"), &lock)?;
    write_new(&dir.join(PROJECT_WIT_PATH).join(wit_file), wit_text)?;
    write_new(&dir.join("README.md"), &readme(name))?;
    for (file, text) in TEMPLATE_CASES {
        write_new(&dir.join(file), text)?;
    }
    super::out(&format!(
        "created {} (tool `{name}`); build it with:\n  cd {} && cargo build --release --target wasm32-wasip2\n",
        dir.display(),
        dir.display()
    ));
    Ok(Printed { status: 0 })
}

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA wasmnode tool: a WASI component of the `wasmnode:tool` world (`wit/tool.wit`).\n\n\
         ```sh\n\
         rustup target add wasm32-wasip2      # once\n\
         cargo test                           # the tool's logic, natively\n\
         cargo build --release --target wasm32-wasip2\n\
         wasmnode tool inspect target/wasm32-wasip2/release/{name}.wasm\n\
         wasmnode tool run target/wasm32-wasip2/release/{name}.wasm --mount .:/src --args '{{\"path\": \"/src/README.md\"}}'\n\
         wasmnode tool test target/wasm32-wasip2/release/{name}.wasm   # the golden cases in cases/\n\
         ```\n\n\
         `describe()` in src/lib.rs declares the tool's name, its arguments (a JSON Schema the node\n\
         checks before the tool runs) and what it needs (mounts, whether it writes). Put the `.wasm`\n\
         in the node's `node.plugin_dir` and jobs call it by name.\n"
    )
}

/// Writes `text` to `path` (creating its directory), refusing to overwrite.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
