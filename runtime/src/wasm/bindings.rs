//! Host bindings for the `wasmnode:task` and `wasmnode:tool` worlds.

/// The `task` world: `run(input) -> result<string, task-error>`.
pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit/task",
        world: "task",
        exports: { default: async },
    });
}

/// The `tool` world: `describe()` and `invoke(args)`.
pub mod tool {
    wasmtime::component::bindgen!({
        path: "../wit/tool",
        world: "tool",
        exports: { default: async },
    });
}
