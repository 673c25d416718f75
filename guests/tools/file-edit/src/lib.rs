//! The built-in `file_edit` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::edit::TOOL);
