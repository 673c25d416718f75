//! The built-in `list` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::list::TOOL);
