//! Deterministic mode: what a guest reads of time and randomness is a
//! function of the task alone, so the same component on the same input
//! produces the same output on any node, any number of times.
//!
//! The wall clock starts at 2000-01-01T00:00:00Z and the monotonic clock at
//! zero; each reading of either advances both by one microsecond, so a
//! guest that measures elapsed time sees it pass without reading the
//! host's. Randomness, secure and insecure, comes from PCG generators
//! seeded from the task's seed (PCG's output is the same on every
//! platform).

use rand_core::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Seconds from the Unix epoch to 2000-01-01T00:00:00Z.
const WALL_START_SECONDS: u64 = 946_684_800;
/// How far one clock reading advances time, in nanoseconds.
const TICK_NANOS: u64 = 1_000;
/// Mixed into the seed of the insecure generator, so the two differ.
const INSECURE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Makes `builder`'s clocks and randomness deterministic under `seed`.
pub fn apply(builder: &mut WasiCtxBuilder, seed: u64) {
    let ticks = Arc::new(AtomicU64::new(0));
    builder
        .secure_random(Pcg64Mcg::seed_from_u64(seed))
        .insecure_random(Pcg64Mcg::seed_from_u64(seed ^ INSECURE_SALT))
        .insecure_random_seed(u128::from(seed) << 64 | u128::from(seed ^ INSECURE_SALT))
        .wall_clock(Wall(ticks.clone()))
        .monotonic_clock(Monotonic(ticks));
}

/// Advances the shared clock by one tick; the nanoseconds passed before it.
fn tick(ticks: &AtomicU64) -> u64 {
    ticks.fetch_add(1, Ordering::Relaxed) * TICK_NANOS
}

/// A wall clock that starts at 2000-01-01 and advances per reading.
struct Wall(Arc<AtomicU64>);

impl HostWallClock for Wall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NANOS)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(WALL_START_SECONDS) + Duration::from_nanos(tick(&self.0))
    }
}

/// A monotonic clock that starts at zero and advances per reading.
struct Monotonic(Arc<AtomicU64>);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        TICK_NANOS
    }

    fn now(&self) -> u64 {
        tick(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn the_clocks_start_fixed_and_advance_per_reading() {
        let ticks = Arc::new(AtomicU64::new(0));
        let (wall, monotonic) = (Wall(ticks.clone()), Monotonic(ticks));
        assert_eq!(wall.now(), Duration::from_secs(WALL_START_SECONDS));
        assert_eq!(monotonic.now(), TICK_NANOS);
        assert_eq!(
            wall.now(),
            Duration::from_secs(WALL_START_SECONDS) + Duration::from_nanos(2 * TICK_NANOS)
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_numbers_and_another_seed_others() {
        let draw = |seed| Pcg64Mcg::seed_from_u64(seed).next_u64();
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
