//! The task types this node knows without an explicit runtime, declared
//! once: the router routes by this table, and `/info`, `/task-types`, the
//! metrics labels, the Vera mapping and the capability lists read it.

use crate::task_inputs::{self, Input};

/// Who runs a task of a known type when its request names no runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The built-in guest of this name.
    Builtin(&'static str),
    /// The built-in guest of this name, or the model executor when the
    /// payload's `retrieval_backend` (or `backend`) names a server.
    BuiltinOrModel(&'static str),
    /// The named tool (its component or image), or a `command`/`script` in
    /// the operator's sandbox image.
    Tool,
    /// The model executor (LLM, embedding and model servers, model cache).
    Model,
    /// Python source (`payload.code`) run by the node's Python runtime in
    /// the wasm sandbox.
    Python,
}

/// A task type the node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskType {
    /// Its name, as SPLAI and Job Protocol requests give it.
    pub name: &'static str,
    /// Who runs it.
    pub route: Route,
    /// Whether Vera's `data_processing` may name it as its `operation`.
    pub vera_operation: bool,
    /// What it reads from its payload.
    pub inputs: &'static [Input],
}

/// Every known task type.
pub const TASK_TYPES: &[TaskType] = &[
    TaskType {
        name: "aggregation",
        route: Route::Builtin("aggregation"),
        vera_operation: true,
        inputs: task_inputs::AGGREGATION,
    },
    TaskType {
        name: "retrieval",
        route: Route::BuiltinOrModel("retrieval"),
        vera_operation: true,
        inputs: task_inputs::RETRIEVAL,
    },
    TaskType {
        name: "tool_execution",
        route: Route::Tool,
        vera_operation: false,
        inputs: task_inputs::TOOL_EXECUTION,
    },
    TaskType {
        name: "embedding",
        route: Route::Model,
        vera_operation: true,
        inputs: task_inputs::EMBEDDING,
    },
    TaskType {
        name: "llm_inference",
        route: Route::Model,
        vera_operation: false,
        inputs: task_inputs::LLM_INFERENCE,
    },
    TaskType {
        name: "model_download",
        route: Route::Model,
        vera_operation: false,
        inputs: task_inputs::MODEL_DOWNLOAD,
    },
    TaskType {
        name: "python",
        route: Route::Python,
        vera_operation: false,
        inputs: task_inputs::PYTHON,
    },
];

/// The known task type `name`.
pub fn task_type(name: &str) -> Option<&'static TaskType> {
    TASK_TYPES.iter().find(|t| t.name == name)
}

/// The names of every known task type.
pub fn names() -> impl Iterator<Item = &'static str> {
    TASK_TYPES.iter().map(|t| t.name)
}

/// Whether the model executor may serve tasks of type `name`.
pub fn served_by_models(name: &str) -> bool {
    task_type(name).is_some_and(|t| matches!(t.route, Route::Model | Route::BuiltinOrModel(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_declared_once() {
        let mut names: Vec<_> = names().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TASK_TYPES.len());
    }

    #[test]
    fn every_type_says_what_it_needs() {
        for t in TASK_TYPES {
            assert!(t.inputs.iter().any(|i| i.required), "{}", t.name);
        }
    }

    #[test]
    fn the_model_executor_serves_model_types_and_remote_retrieval_only() {
        let served: Vec<_> = names().filter(|n| served_by_models(n)).collect();
        assert_eq!(
            served,
            ["retrieval", "embedding", "llm_inference", "model_download"]
        );
        assert!(!served_by_models("aggregation"));
        assert!(!served_by_models("unknown"));
    }
}
