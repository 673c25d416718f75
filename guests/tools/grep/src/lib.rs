//! The built-in `grep` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::grep::TOOL);
