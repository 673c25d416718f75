//! wasmnode's built-in filesystem tools and the glue that turns one of them
//! into a `wasmnode:tool` component.
//!
//! Every tool takes a JSON object of plain-named arguments (`path`,
//! `content`, `old`/`new`, `pattern`, `glob`, `recursive`), works only inside
//! the directories the host mounted (see [`guest_kit::Mounts`]) and returns a
//! JSON document. Each tool crate under `guests/tools/` is one line:
//! `fs_tools::tool_component!(fs_tools::read::TOOL);`.

pub mod edit;
pub mod find;
pub mod grep;
pub mod list;
pub mod read;
mod walk;
pub mod write;

use guest_kit::{GuestError, Inputs, Mounts};
use serde_json::Value;

/// Bindings for the `wasmnode:tool` world, shared by every tool crate.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/tool",
        world: "tool",
        pub_export_macro: true,
        default_bindings_module: "fs_tools::bindings",
    });
}

use bindings::wasmnode::tool::types::{Capabilities, ToolError, ToolInfo};

/// Version reported by every built-in tool.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A built-in tool: its description and its implementation.
pub struct Tool {
    /// Machine name, e.g. `file_read`.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// JSON Schema of the arguments.
    pub schema: &'static str,
    /// Whether the tool writes files (needs a read-write mount).
    pub writes: bool,
    /// Runs one invocation.
    pub run: fn(&Inputs, &Mounts) -> Result<Value, GuestError>,
}

/// The WIT description of `tool`.
pub fn describe(tool: &Tool) -> ToolInfo {
    ToolInfo {
        name: tool.name.into(),
        version: VERSION.into(),
        description: tool.description.into(),
        args_schema: tool.schema.into(),
        capabilities: Capabilities {
            mounts: Vec::new(),
            writes: tool.writes,
        },
    }
}

/// Runs `tool` on the JSON `args` against the host's mount table.
pub fn invoke(tool: &Tool, args: &str) -> Result<String, ToolError> {
    let inputs = Inputs::parse(args).map_err(to_tool_error)?;
    (tool.run)(&inputs, &Mounts::from_env())
        .map(|v| v.to_string())
        .map_err(to_tool_error)
}

fn to_tool_error(e: GuestError) -> ToolError {
    match e {
        GuestError::InvalidInput(m) => ToolError::InvalidArgs(m),
        GuestError::NotFound(m) => ToolError::NotFound(m),
        GuestError::Denied(m) => ToolError::Denied(m),
        GuestError::Failed(m) => ToolError::Failed(m),
    }
}

/// Defines and exports the component for one built-in tool.
#[macro_export]
macro_rules! tool_component {
    ($tool:path) => {
        struct Component;

        impl $crate::bindings::Guest for Component {
            fn describe() -> $crate::bindings::wasmnode::tool::types::ToolInfo {
                $crate::describe(&$tool)
            }

            fn invoke(
                args: String,
            ) -> Result<String, $crate::bindings::wasmnode::tool::types::ToolError> {
                $crate::invoke(&$tool, &args)
            }
        }

        $crate::bindings::export!(Component with_types_in $crate::bindings);
    };
}

#[cfg(test)]
pub(crate) mod testdir {
    //! A throw-away directory mounted like the host would mount it.

    use guest_kit::Mounts;
    use std::path::{Path, PathBuf};

    pub struct TestDir(pub PathBuf);

    impl TestDir {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("fs-tools-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub fn write(&self, rel: &str, body: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
            path
        }

        pub fn path(&self, rel: &str) -> String {
            self.0.join(rel).display().to_string()
        }

        pub fn mounts(&self, mode: &str) -> Mounts {
            Mounts::parse(&format!("{}:{mode}", self.0.display()))
        }

        pub fn root(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn args(v: serde_json::Value) -> guest_kit::Inputs {
        guest_kit::Inputs::from_map(v.as_object().unwrap().clone())
    }
}
