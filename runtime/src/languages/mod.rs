//! Language runtimes: programs given as source run in the wasm sandbox by
//! an interpreter the operator installed (today Python, `python`).

pub mod python;
