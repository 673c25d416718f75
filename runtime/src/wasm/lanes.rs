//! Which of the executor's engines a task runs on: the one dealt to the CPU
//! the task starts on. Tasks that start on different CPUs at the same time
//! then share no engine, instance pool or loaded code, whose shared counters
//! and locks cost two threads on one engine a fifth of their throughput
//! (docs/BENCHMARKS.md, "Cores").

/// The most engines the executor makes unless told otherwise: each pooling
/// engine reserves address space for its whole pool (about 2 TiB at the
/// standard settings).
pub const MAX_DEFAULT_ENGINES: usize = 8;

/// One engine per CPU this process may use, at most `MAX_DEFAULT_ENGINES`.
pub fn default_engines() -> usize {
    allowed_cpus().len().clamp(1, MAX_DEFAULT_ENGINES)
}

/// Maps CPUs to engine numbers.
pub struct Lanes {
    /// The engine of each CPU, by CPU number.
    by_cpu: Vec<usize>,
    /// How many engines there are.
    count: usize,
}

impl Lanes {
    /// Deals the CPUs this process may run on to `count` engines in turn.
    pub fn new(count: usize) -> Self {
        let count = count.max(1);
        let allowed = allowed_cpus();
        let mut by_cpu = vec![0; allowed.iter().max().map_or(0, |&cpu| cpu + 1)];
        for (i, &cpu) in allowed.iter().enumerate() {
            by_cpu[cpu] = i % count;
        }
        Self { by_cpu, count }
    }

    /// How many engines there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The engine of the CPU this thread runs on now (0 where the kernel
    /// does not say).
    pub fn current(&self) -> usize {
        if self.count == 1 {
            return 0;
        }
        // SAFETY: sched_getcpu takes no arguments and only reads.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).map_or(0, |cpu| self.of(cpu))
    }

    /// The engine of `cpu`; a CPU outside the process's set at start (its
    /// affinity changed since) is dealt by its number.
    fn of(&self, cpu: usize) -> usize {
        self.by_cpu.get(cpu).copied().unwrap_or(cpu % self.count)
    }
}

/// The CPUs this process may run on, in ascending order: the engines are
/// dealt them in turn.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity writes
    // at most the size given.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    if !read {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpus_of_the_process_are_dealt_to_the_engines_in_turn() {
        let allowed = allowed_cpus();
        let lanes = Lanes::new(2);
        let dealt: Vec<usize> = allowed.iter().map(|&cpu| lanes.of(cpu)).collect();
        let expected: Vec<usize> = (0..allowed.len()).map(|i| i % 2).collect();
        assert_eq!(dealt, expected, "CPUs {allowed:?}");
        assert!(lanes.current() < 2);
        assert_eq!(
            lanes.of(allowed.last().unwrap() + 3),
            (allowed.last().unwrap() + 3) % 2
        );
    }

    #[test]
    fn one_engine_takes_every_cpu_and_the_default_is_one_per_cpu_within_the_cap() {
        let lanes = Lanes::new(0);
        assert_eq!(lanes.count(), 1, "at least one engine");
        assert!(allowed_cpus().iter().all(|&cpu| lanes.of(cpu) == 0));
        assert_eq!(lanes.current(), 0);
        assert!((1..=MAX_DEFAULT_ENGINES).contains(&default_engines()));
        assert_eq!(
            default_engines(),
            allowed_cpus().len().min(MAX_DEFAULT_ENGINES),
            "the process may run on at least one CPU"
        );
    }
}
