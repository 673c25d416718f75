//! The built-in `find` tool as a `wasmnode:tool` component.

fs_tools::tool_component!(fs_tools::find::TOOL);
