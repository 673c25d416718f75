//! `wasmnode wit` and `wasmnode tool new`: the node's WIT packages, and a
//! plugin project that builds anywhere (the WIT it needs is written into
//! it). The templates are `examples/plugin-tool` (Rust) and
//! `examples/plugin-tool-python` (Python), renamed.

use super::Printed;
use crate::cli::{Lang, ToolNewArgs, WitArgs};
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

/// A template's files: (path in the project, text as the example has it).
type Files = &'static [(&'static str, &'static str)];

/// The golden cases (`wasmnode tool test`) both templates ship.
const CASES: Files = &[
    (
        "cases/counts.json",
        include_str!("../../../examples/plugin-tool/cases/counts.json"),
    ),
    (
        "cases/missing_path.json",
        include_str!("../../../examples/plugin-tool/cases/missing_path.json"),
    ),
    (
        "cases/too_big.json",
        include_str!("../../../examples/plugin-tool/cases/too_big.json"),
    ),
    (
        "cases/data/poem.txt",
        include_str!("../../../examples/plugin-tool/cases/data/poem.txt"),
    ),
];

/// The Rust template, `examples/plugin-tool`.
const RUST: Files = &[
    (
        "src/lib.rs",
        include_str!("../../../examples/plugin-tool/src/lib.rs"),
    ),
    (
        "Cargo.toml",
        include_str!("../../../examples/plugin-tool/Cargo.toml"),
    ),
    (
        "Cargo.lock",
        include_str!("../../../examples/plugin-tool/Cargo.lock"),
    ),
];

/// The Python template, `examples/plugin-tool-python`.
const PYTHON: Files = &[
    (
        "app.py",
        include_str!("../../../examples/plugin-tool-python/app.py"),
    ),
    (
        "test_app.py",
        include_str!("../../../examples/plugin-tool-python/test_app.py"),
    ),
    (
        "Makefile",
        include_str!("../../../examples/plugin-tool-python/Makefile"),
    ),
    (
        ".gitignore",
        include_str!("../../../examples/plugin-tool-python/.gitignore"),
    ),
];

/// The templates' names, replaced by the new tool's.
const TEMPLATE_TOOL: &str = "word_count";
const TEMPLATE_PACKAGE: &str = "word-count";
/// Where the templates find the WIT inside this repository, and where a
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
    let (files, build) = match args.lang {
        Lang::Rust => (RUST, "cargo build --release --target wasm32-wasip2"),
        Lang::Python => (
            PYTHON,
            "make    # needs componentize-py (pip install componentize-py==0.25.1)",
        ),
    };
    let package = name.replace('_', "-");
    for (file, text) in files.iter().chain(CASES) {
        let text = text
            .replace(TEMPLATE_WIT_PATH, PROJECT_WIT_PATH)
            .replace(TEMPLATE_PACKAGE, &package)
            .replace(TEMPLATE_TOOL, name)
            .replace(
                "copy this directory, rename the\n# package, edit src/lib.rs",
                "edit src/lib.rs",
            );
        write_new(&dir.join(file), &text)?;
    }
    let (_, wit_file, wit_text) = WIT[0];
    write_new(&dir.join(PROJECT_WIT_PATH).join(wit_file), wit_text)?;
    let readme = match args.lang {
        Lang::Rust => rust_readme(name),
        Lang::Python => python_readme(name),
    };
    write_new(&dir.join("README.md"), &readme)?;
    super::out(&format!(
        "created {} (tool `{name}`); build it with:\n  cd {} && {build}\n",
        dir.display(),
        dir.display()
    ));
    Ok(Printed { status: 0 })
}

fn rust_readme(name: &str) -> String {
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
         checks before the tool runs) and what it needs (mounts, whether it writes).\n\
         `config::get(KEY)` reads the operator's `[tools.{name}.config]`, `log(LEVEL, TEXT)` writes\n\
         to the job's log. Put the `.wasm` in the node's `node.plugin_dir` and jobs call it by name.\n"
    )
}

fn python_readme(name: &str) -> String {
    format!(
        "# {name}\n\nA wasmnode tool in Python: a WASI component of the `wasmnode:tool` world\n\
         (`wit/tool.wit`), built by componentize-py.\n\n\
         ```sh\n\
         pip install componentize-py==0.25.1   # once\n\
         make test                             # the tool's logic, natively\n\
         make                                  # builds {name}.wasm\n\
         wasmnode tool inspect {name}.wasm\n\
         wasmnode tool run {name}.wasm --mount .:/src --args '{{\"path\": \"/src/README.md\"}}'\n\
         wasmnode tool test {name}.wasm        # the golden cases in cases/ (or: make check)\n\
         ```\n\n\
         `describe()` in app.py declares the tool's name, its arguments (a JSON Schema the node\n\
         checks before the tool runs) and what it needs (mounts, whether it writes); `invoke()`\n\
         returns a JSON document or raises `Err(ToolError_...)`. `config.get(KEY)` reads the\n\
         operator's `[tools.{name}.config]`, `log.log(LEVEL, TEXT)` writes to the job's log.\n\
         Put the `.wasm` in the node's `node.plugin_dir` and jobs call it by name.\n"
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
