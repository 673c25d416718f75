//! Facts about the host machine, read from the OS (never hard-coded): OS,
//! CPU model, cores and threads, memory, load average, temperature (from
//! sysfs); and this process's own memory.

use std::path::Path;
use sysinfo::{CpuRefreshKind, RefreshKind, System};

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
    /// CPU architecture this binary was built for (`x86_64`, `aarch64`,
    /// `arm`, ...).
    pub arch: &'static str,
    /// The operating system and its version (`Linux (Debian GNU/Linux 12)`).
    pub os: String,
    /// The kernel's machine name (`uname -m`: `x86_64`, `aarch64`,
    /// `armv7l`); differs from `arch` for a 32-bit build on a 64-bit kernel.
    pub os_architecture: String,
    /// The CPU's model name, where the OS names it.
    pub cpu_model: Option<String>,
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
            os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
            os_architecture: System::cpu_arch(),
            cpu_model: cpu_model(),
        }
    }
}

fn cpu_model() -> Option<String> {
    let refresh = RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing());
    let system = System::new_with_specifics(refresh).ok()?;
    let brand = system.cpus().first()?.brand().trim().to_string();
    (!brand.is_empty()).then_some(brand)
}

/// Total and available memory now, MiB (`None` where the OS does not say).
pub fn memory_mb() -> Option<(u64, u64)> {
    let mut system = System::new().ok()?;
    system.refresh_memory();
    Some((system.total_memory() >> 20, system.available_memory() >> 20))
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> [f64; 3] {
    System::load_average()
        .map(|l| [l.one, l.five, l.fifteen])
        .unwrap_or_default()
}

/// The hottest sensor's temperature in °C, read from the thermal zones and
/// hwmon sensors under `sysfs` (`/sys` unless a test or a container points
/// elsewhere), or `None` where there is no sensor. Readings outside
/// -40..=150 °C (unset or broken sensors) are ignored.
pub fn temperature_c(sysfs: &Path) -> Option<f64> {
    let sensors = [
        ("class/thermal", "thermal_zone", "temp"),
        ("class/hwmon", "hwmon", "_input"),
    ];
    let mut hottest: Option<f64> = None;
    for (class, device, reading) in sensors {
        let Ok(devices) = std::fs::read_dir(sysfs.join(class)) else {
            continue;
        };
        for device_dir in devices.flatten() {
            if !device_dir.file_name().to_string_lossy().starts_with(device) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(device_dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                let is_reading = if device == "hwmon" {
                    name.starts_with("temp") && name.ends_with(reading)
                } else {
                    name == reading
                };
                if !is_reading {
                    continue;
                }
                let celsius = std::fs::read_to_string(file.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .map(|millis| millis as f64 / 1000.0)
                    .filter(|c| (-40.0..=150.0).contains(c));
                if let Some(c) = celsius {
                    hottest = Some(hottest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
    hottest
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
        assert!(!facts.os.is_empty() && !facts.os_architecture.is_empty());
        let (total, available) = memory_mb().unwrap();
        assert!(total == facts.memory_mb && available > 0 && available <= total);
    }

    fn sensor(root: &Path, dir: &str, file: &str, value: &str) {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join(file), value).unwrap();
    }

    #[test]
    fn temperature_is_the_hottest_plausible_sensor_under_the_sysfs_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(temperature_c(root.path()), None, "no sensor: null");
        sensor(
            root.path(),
            "class/thermal/thermal_zone0",
            "temp",
            "48500\n",
        );
        sensor(
            root.path(),
            "class/thermal/thermal_zone0",
            "type",
            "71000\n",
        );
        sensor(
            root.path(),
            "class/thermal/cooling_device0",
            "temp",
            "99000\n",
        );
        assert_eq!(temperature_c(root.path()), Some(48.5));
        sensor(root.path(), "class/hwmon/hwmon1", "temp2_input", "61250\n");
        sensor(root.path(), "class/hwmon/hwmon1", "temp2_max", "105000\n");
        assert_eq!(temperature_c(root.path()), Some(61.25));
        sensor(
            root.path(),
            "class/thermal/thermal_zone1",
            "temp",
            "-273000\n",
        );
        sensor(
            root.path(),
            "class/thermal/thermal_zone2",
            "temp",
            "garbage",
        );
        assert_eq!(temperature_c(root.path()), Some(61.25));
    }
}
