//! Facts about the host machine, read from the OS (never hard-coded): CPU
//! cores and threads, memory, load average, temperature; and this
//! process's own memory.

use sysinfo::{Components, System};

/// Static facts, read once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostFacts {
    /// Host name.
    pub hostname: String,
    /// Physical CPU cores (logical threads where unknown).
    pub cpu_cores: usize,
    /// Logical CPU threads.
    pub cpu_threads: usize,
    /// Total memory, MiB.
    pub memory_mb: u64,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: &'static str,
}

impl HostFacts {
    /// Reads the facts from the OS.
    pub fn read() -> Self {
        let memory = System::new().map(|mut s| {
            s.refresh_memory();
            s.total_memory()
        });
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            hostname: System::host_name().unwrap_or_else(|_| "unknown".into()),
            cpu_cores: System::physical_core_count().unwrap_or(threads),
            cpu_threads: threads,
            memory_mb: memory.unwrap_or(0) / (1024 * 1024),
            arch: std::env::consts::ARCH,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> [f64; 3] {
    System::load_average()
        .map(|l| [l.one, l.five, l.fifteen])
        .unwrap_or_default()
}

/// The hottest sensor's temperature in °C, or `None` where there is no sensor.
pub fn temperature_c() -> Option<f64> {
    Components::new_with_refreshed_list()
        .ok()?
        .iter()
        .filter_map(|c| c.temperature())
        .filter(|t| t.is_finite())
        .map(f64::from)
        .reduce(f64::max)
}

/// This process's resident memory, bytes (0 where the OS does not say).
pub fn process_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Returns heap memory that the allocator holds but no longer uses to the
/// system (glibc keeps what a burst such as compiling guests freed). A
/// no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has
    // no preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes large allocations (request bodies, payloads, outputs) go back to
/// the system as soon as they are freed. glibc otherwise raises its mmap
/// threshold after the first large free and keeps later ones in its heaps,
/// where a burst of large requests stays resident for good. A no-op on
/// other C libraries.
pub fn tune_allocator() {
    // Allocations of 256 KiB and more are mapped on their own.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called once at start, before any other thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Whether an NVIDIA GPU is present (through NVML, where the library exists).
pub fn gpu_present() -> bool {
    match nvml_wrapper::Nvml::init() {
        Ok(nvml) => nvml.device_count().map(|n| n > 0).unwrap_or(false),
        Err(_) => false,
    }
}

/// Current CPU and memory utilisation, each 0..1 (0 where the OS says nothing).
pub struct Utilisation {
    system: Option<System>,
}

impl Default for Utilisation {
    fn default() -> Self {
        let system = System::new().ok().map(|mut s| {
            s.refresh_cpu_usage();
            s.refresh_memory();
            s
        });
        Self { system }
    }
}

impl Utilisation {
    /// (cpu, memory) utilisation since the previous call.
    pub fn sample(&mut self) -> (f64, f64) {
        let Some(system) = &mut self.system else {
            return (0.0, 0.0);
        };
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cpu = f64::from(system.global_cpu_usage()) / 100.0;
        let total = system.total_memory().max(1) as f64;
        let used = system.used_memory() as f64;
        (cpu.clamp(0.0, 1.0), (used / total).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_come_from_the_machine() {
        let facts = HostFacts::read();
        assert_eq!(
            facts.cpu_threads,
            std::thread::available_parallelism().unwrap().get()
        );
        assert!(facts.cpu_cores >= 1 && facts.cpu_cores <= facts.cpu_threads);
        assert!(facts.memory_mb > 64, "{facts:?}");
        assert!(load_average().iter().all(|l| *l >= 0.0));
        let (cpu, memory) = Utilisation::default().sample();
        assert!((0.0..=1.0).contains(&cpu) && memory > 0.0 && memory <= 1.0);
        assert!(!gpu_present() || std::path::Path::new("/dev/nvidia0").exists());
    }
}
