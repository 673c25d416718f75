//! Helpers shared by wasmnode's built-in guests.
//!
//! Task inputs arrive either from the SPLAI protocol (a map of strings, where
//! nested JSON is itself a string such as `items_json`) or from Job Protocol v1
//! (a JSON object whose values may be real arrays and numbers). [`Inputs`]
//! reads both shapes the same way. [`Mounts`] confines paths to the
//! directories the host mounted, so a guest can refuse an escape with a clear
//! message before WASI refuses it again.

mod error;
mod files;
mod inputs;
mod mounts;
mod text;

pub use error::GuestError;
pub use files::write_whole_file;
pub use inputs::{Inputs, kind_of};
pub use mounts::{Mount, Mounts};
pub use text::utf8;
