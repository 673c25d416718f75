//! Host bindings for the `wasmnode:task` and `wasmnode:tool` worlds.

/// The `task` world: `run(input) -> result<string, task-error>`.
pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit/task",
        world: "task",
        exports: { default: async },
    });
}

/// The `tool` world: `describe()` and `invoke(args)`, importing the tool's
/// settings (`config`) and levelled logging (`log`).
pub mod tool {
    wasmtime::component::bindgen!({
        path: "../wit/tool",
        world: "tool",
        imports: { default: trappable },
        exports: { default: async },
    });
}
