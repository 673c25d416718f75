//! The built-in `file_read` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::read::TOOL);
