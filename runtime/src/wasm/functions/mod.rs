//! Components that export plain functions rather than a wasmnode world:
//! finding each function a host can call with JSON (top-level exports and
//! the functions of exported interfaces), describing its arguments and
//! result as JSON Schema, and calling it in a fresh store.

mod schema;
mod value;

pub use schema::Unsupported;

use super::contract::ToolDescription;
use super::sandbox::State;
use crate::failure::TaskFailure;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Val};
use wasmtime::{Engine, Store};

/// One exported function a host can call with JSON.
#[derive(Debug)]
pub struct Function {
    /// Where it is exported: `add`, or `test:functions/shapes#area` for a
    /// function of an exported interface.
    pub export: String,
    /// Its arguments as a tool contract (one property per parameter); a
    /// function declares no mounts and gets them as the operator gives them.
    pub contract: Arc<ToolDescription>,
    /// JSON Schema of what it returns (`None`: it returns nothing); for a
    /// `result<T, E>`, of `T` (an `E` fails the call).
    pub output_schema: Option<Value>,
    index: ComponentExportIndex,
    params: Vec<(String, Type)>,
    result: Option<Type>,
}

/// A function left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Where it is exported.
    pub export: String,
    /// Why it cannot be called with JSON.
    pub reason: String,
}

/// What a called function gave back.
pub enum Returned {
    /// Its result as JSON (`null` for nothing, or an `ok` without a value).
    Value(Value),
    /// The `err` of a function that returns `result<T, E>`, as JSON.
    Error(Value),
}

/// A plain-function component, ready to instantiate.
pub struct FunctionsPre {
    /// Its pre-instantiation handle.
    pub pre: InstancePre<State>,
    /// The functions a host can call.
    pub functions: Vec<Arc<Function>>,
    /// The functions it exports that cannot be called with JSON.
    pub skipped: Vec<Skipped>,
}

impl FunctionsPre {
    /// The function exported as `export`; an unknown name lists the known ones.
    pub fn function(&self, export: &str) -> Result<&Arc<Function>, TaskFailure> {
        self.functions
            .iter()
            .find(|f| f.export == export)
            .ok_or_else(|| {
                let skipped = self.skipped.iter().find(|s| s.export == export);
                TaskFailure::invalid_input(match skipped {
                    Some(s) => format!("function `{export}` cannot be called: {}", s.reason),
                    None => format!(
                        "the component exports no function `{export}` (it exports: {})",
                        self.names()
                    ),
                })
            })
    }

    /// The callable functions' export names, for messages.
    pub fn names(&self) -> String {
        self.functions
            .iter()
            .map(|f| f.export.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The functions `component` exports at its top level and in the
/// interfaces it exports (WASI's own interfaces aside): those a host can
/// call with JSON, and those it cannot.
pub fn discover(component: &Component, engine: &Engine) -> (Vec<Arc<Function>>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut consider =
        |export: String, func: &ComponentFunc, index: Option<ComponentExportIndex>| {
            let Some(index) = index else { return };
            match Function::new(export.clone(), func, index) {
                Ok(f) => found.push(Arc::new(f)),
                Err(reason) => skipped.push(Skipped { export, reason }),
            }
        };
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                consider(
                    name.to_string(),
                    &func,
                    component.get_export_index(None, name),
                );
            }
            ComponentItem::ComponentInstance(instance) if !name.starts_with("wasi:") => {
                let Some(parent) = component.get_export_index(None, name) else {
                    continue;
                };
                for (inner, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        let index = component.get_export_index(Some(&parent), inner);
                        consider(format!("{name}#{inner}"), &func, index);
                    }
                }
            }
            _ => {}
        }
    }
    (found, skipped)
}

impl Function {
    fn new(
        export: String,
        func: &ComponentFunc,
        index: ComponentExportIndex,
    ) -> Result<Self, String> {
        if func.async_() {
            return Err("it is an async function, which the node does not call".into());
        }
        let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
        let result = func.results().next();
        let unsupported = |e: Unsupported| format!("it {e}");
        let args_schema = schema::object(params.iter().cloned()).map_err(unsupported)?;
        let output_schema = match &result {
            Some(Type::Result(r)) => {
                if let Some(err) = r.err() {
                    schema::of(&err).map_err(unsupported)?;
                }
                r.ok()
                    .map(|ok| schema::of(&ok))
                    .transpose()
                    .map_err(unsupported)?
            }
            Some(ty) => Some(schema::of(ty).map_err(unsupported)?),
            None => None,
        };
        let contract = ToolDescription::new(
            export.clone(),
            String::new(),
            format!("The component's function `{export}`"),
            args_schema,
            Vec::new(),
            true,
        )
        .map_err(|e| e.message)?;
        Ok(Self {
            export,
            contract: Arc::new(contract),
            output_schema,
            index,
            params,
            result,
        })
    }

    /// The arguments `args` (an object, one property per parameter) stand for.
    pub fn arguments(&self, args: &Value) -> Result<Vec<Val>, TaskFailure> {
        let empty = serde_json::Map::new();
        let fields = match args {
            Value::Object(fields) => fields,
            Value::Null => &empty,
            _ => {
                return Err(TaskFailure::invalid_input(format!(
                    "the arguments of function `{}` must be a JSON object",
                    self.export
                )));
            }
        };
        self.params
            .iter()
            .map(|(name, ty)| value::field(fields, name, ty, &format!("/{name}")).map(|(_, v)| v))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                TaskFailure::invalid_input(format!(
                    "arguments of function `{}` do not fit its types: {e}",
                    self.export
                ))
            })
    }

    /// Instantiates `pre` in `store` and calls the function with `args`.
    pub async fn call(
        &self,
        pre: &InstancePre<State>,
        store: &mut Store<State>,
        args: &[Val],
    ) -> wasmtime::Result<Returned> {
        let instance = pre.instantiate_async(&mut *store).await?;
        let func = instance
            .get_func(&mut *store, self.index)
            .ok_or_else(|| wasmtime::format_err!("function `{}` is not exported", self.export))?;
        let mut results = vec![Val::Bool(false); usize::from(self.result.is_some())];
        func.call_async(&mut *store, args, &mut results).await?;
        Ok(match results.first() {
            None => Returned::Value(Value::Null),
            Some(Val::Result(Ok(v))) => {
                Returned::Value(v.as_deref().map_or(Value::Null, value::to_json))
            }
            Some(Val::Result(Err(e))) => {
                Returned::Error(e.as_deref().map_or(Value::Null, value::to_json))
            }
            Some(v) => Returned::Value(value::to_json(v)),
        })
    }
}
