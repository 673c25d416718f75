//! What the machine a report was measured on is: its CPU, memory, kernel
//! and tools, and two costs that move whole sections from one VM to the
//! next: a page fault on fresh memory (every task's sandbox starts with
//! fresh memory) and an `fdatasync` (every durable commit waits for one).

use crate::report::{Samples, human};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// What this machine is, for the report.
pub fn facts() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1_048_576.0))
        .unwrap_or_default();
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    vec![
        ("CPU".into(), format!("{cpu}, {threads} threads")),
        ("memory".into(), memory),
        ("kernel".into(), output("uname", &["-sr"])),
        (
            "Docker".into(),
            output("docker", &["version", "--format", "{{.Server.Version}}"]),
        ),
        ("page faults".into(), page_fault_cost()),
        ("fsync".into(), fsync_latency()),
        ("rustc".into(), output("rustc", &["--version"])),
        (
            "date".into(),
            output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
    ]
}

/// Bytes touched per page-fault sample.
const FAULT_SAMPLE_BYTES: usize = 64 << 20;
const PAGE: usize = 4096;

/// The time to first touch a fresh 4 KiB page of anonymous memory, median of
/// five 64 MiB samples, each a mapping of its own (memory from the
/// allocator may be reused and already faulted in).
fn page_fault_cost() -> String {
    let samples: Option<Vec<Duration>> = (0..5).map(|_| touch_fresh_mapping()).collect();
    match samples {
        Some(samples) => format!(
            "{} per fresh 4 KiB page (first touch of new anonymous memory, median of 5 × 64 MiB)",
            human(Samples(samples).p50() / (FAULT_SAMPLE_BYTES / PAGE) as u32)
        ),
        None => "not measured: mmap failed".into(),
    }
}

/// Maps fresh anonymous memory, writes one byte per page and unmaps it;
/// returns the time the writes took.
fn touch_fresh_mapping() -> Option<Duration> {
    // SAFETY: a private anonymous mapping used only here, written inside
    // its bounds and unmapped before returning.
    unsafe {
        let memory = libc::mmap(
            std::ptr::null_mut(),
            FAULT_SAMPLE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if memory == libc::MAP_FAILED {
            return None;
        }
        let bytes = memory.cast::<u8>();
        let started = Instant::now();
        for offset in (0..FAULT_SAMPLE_BYTES).step_by(PAGE) {
            bytes.add(offset).write_volatile(1);
        }
        let took = started.elapsed();
        libc::munmap(memory, FAULT_SAMPLE_BYTES);
        Some(took)
    }
}

/// The time of a 4 KiB write and `fdatasync` in the temporary directory
/// (where the benchmarks' stores live), median of 50.
fn fsync_latency() -> String {
    let measure = || -> std::io::Result<Duration> {
        let mut file = tempfile::tempfile()?;
        let block = [7u8; 4096];
        let samples = (0..50)
            .map(|_| {
                let started = Instant::now();
                file.write_all(&block)?;
                file.sync_data()?;
                Ok(started.elapsed())
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Samples(samples).p50())
    };
    match measure() {
        Ok(p50) => format!(
            "{} per 4 KiB write + fdatasync in the temporary directory (median of 50)",
            human(p50)
        ),
        Err(e) => format!("not measured: {e}"),
    }
}

/// Restricts this thread to `cpus` (the executor runs a task on the engine
/// of the CPU it starts on).
pub fn pin_to(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it
    // and sched_setaffinity reads at most the size given.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set)
    };
    match pinned {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
