//! The built-in `file_write` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::write::TOOL);
