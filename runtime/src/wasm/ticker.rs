//! The epoch ticker: advances every engine's epoch each tick, which drives
//! the deadline and cancellation checks of running guests, and sleeps
//! while no store exists, so an idle node does not wake a hundred times a
//! second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;
use wasmtime::{Engine, EngineWeak};

/// What the ticker thread and its holders share.
struct Shared {
    /// Stores alive, per engine (each holds a [`Ticking`]): tasks on
    /// different CPUs count on different cache lines.
    holders: Vec<Lane>,
    /// Whether the thread is parked or about to be: a holder that comes
    /// while it is wakes it.
    parked: AtomicBool,
    /// Whether the ticker must end once no store holds it (its executor is
    /// gone).
    stop: AtomicBool,
    /// Ticks so far.
    ticks: AtomicU64,
    thread: Thread,
}

/// One engine's count of holders, alone on its cache line.
#[repr(align(128))]
struct Lane(AtomicUsize);

impl Shared {
    fn idle(&self) -> bool {
        self.holders
            .iter()
            .all(|lane| lane.0.load(Ordering::SeqCst) == 0)
    }
}

/// Starts and owns the ticker thread; it ends when this is dropped and no
/// store holds it any more.
pub struct Ticker {
    shared: Arc<Shared>,
}

/// Keeps the ticker running while it lives: a store holds one, so its
/// epoch deadline comes.
pub struct Ticking {
    shared: Arc<Shared>,
    lane: usize,
}

impl Ticker {
    /// Starts a thread that advances the epochs of `engines` every `tick`
    /// while a [`Ticking`] is held.
    pub fn start(engines: &[Engine], tick: Duration) -> Self {
        let weak: Vec<EngineWeak> = engines.iter().map(Engine::weak).collect();
        let (sender, receiver) = std::sync::mpsc::channel::<Arc<Shared>>();
        let thread = thread::Builder::new()
            .name("wasmnode-epoch".into())
            .spawn(move || {
                let Ok(shared) = receiver.recv() else { return };
                run(&shared, &weak, tick);
            })
            .expect("spawn epoch ticker thread");
        let shared = Arc::new(Shared {
            holders: (0..engines.len().max(1))
                .map(|_| Lane(AtomicUsize::new(0)))
                .collect(),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            thread: thread.thread().clone(),
        });
        sender
            .send(shared.clone())
            .expect("the ticker thread waits for its state");
        Self { shared }
    }

    /// Keeps the epochs advancing until the answer is dropped; `engine` is
    /// the engine of the store that holds it.
    pub fn hold(&self, engine: usize) -> Ticking {
        let shared = &self.shared;
        let lane = engine % shared.holders.len();
        // Sequentially consistent with the thread's store of `parked` and
        // its reads of the counts: either it sees this count or this sees
        // it parked.
        if shared.holders[lane].0.fetch_add(1, Ordering::SeqCst) == 0
            && shared.parked.load(Ordering::SeqCst)
        {
            shared.thread.unpark();
        }
        Ticking {
            shared: shared.clone(),
            lane,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.thread.unpark();
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        let shared = &self.shared;
        if shared.holders[self.lane].0.fetch_sub(1, Ordering::SeqCst) == 1
            && shared.stop.load(Ordering::SeqCst)
        {
            shared.thread.unpark();
        }
    }
}

/// The ticker thread: parked while nothing holds it, else a tick at a time.
/// Once woken it ticks at least once before it looks again, so tasks that
/// come one after another wake it at most once a tick, not once each.
fn run(shared: &Shared, engines: &[EngineWeak], tick: Duration) {
    loop {
        if shared.idle() {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            shared.parked.store(true, Ordering::SeqCst);
            // A holder that came before the store above is counted here;
            // one that comes after it sees `parked` and unparks (then
            // `park` returns at once, as it may spuriously).
            if shared.idle() && !shared.stop.load(Ordering::SeqCst) {
                thread::park();
            }
            shared.parked.store(false, Ordering::SeqCst);
        }
        thread::sleep(tick);
        for engine in engines.iter().filter_map(EngineWeak::upgrade) {
            engine.increment_epoch();
        }
        shared.ticks.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (a real signal: the thread's own state) until `done` holds.
    fn wait(ticker: &Ticker, done: impl Fn(&Shared) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done(&ticker.shared) {
            assert!(
                std::time::Instant::now() < deadline,
                "the ticker never got there"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_ticker_sleeps_until_a_store_holds_it_and_again_once_none_does() {
        let engines = [Engine::default(), Engine::default()];
        let ticker = Ticker::start(&engines, Duration::from_millis(1));
        wait(&ticker, |s| s.parked.load(Ordering::Acquire));
        assert_eq!(
            ticker.shared.ticks.load(Ordering::Acquire),
            0,
            "no tick while idle"
        );

        let held = ticker.hold(0);
        wait(&ticker, |s| s.ticks.load(Ordering::Acquire) >= 3);
        drop(held);
        wait(&ticker, |s| s.parked.load(Ordering::Acquire));
        let parked_at = ticker.shared.ticks.load(Ordering::Acquire);

        let (first, second) = (ticker.hold(0), ticker.hold(1));
        drop(first);
        wait(&ticker, |s| {
            s.ticks.load(Ordering::Acquire) >= parked_at + 3
        });
        assert!(
            !ticker.shared.parked.load(Ordering::Acquire),
            "ticking while a store of the other engine remains"
        );
        drop(second);
    }

    #[test]
    fn a_held_ticker_interrupts_a_spinning_guest() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let ticker = Ticker::start(std::slice::from_ref(&engine), Duration::from_millis(1));
        let spin =
            wasmtime::Module::new(&engine, r#"(module (func (export "spin") (loop (br 0))))"#)
                .unwrap();
        let mut store = wasmtime::Store::new(&engine, ticker.hold(0));
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, &spin, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let trap = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
    }

    #[test]
    fn the_thread_ends_with_its_ticker_once_no_store_holds_it() {
        let ticker = Ticker::start(&[Engine::default()], Duration::from_millis(1));
        let thread = ticker.shared.thread.clone();
        let shared = Arc::downgrade(&ticker.shared);
        let held = ticker.hold(0);
        drop(ticker);
        let ticks = shared.upgrade().unwrap().ticks.load(Ordering::Acquire);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared.upgrade().unwrap().ticks.load(Ordering::Acquire) < ticks + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "a store outliving its executor still gets its ticks"
            );
            thread::sleep(Duration::from_millis(1));
        }
        drop(held);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared.strong_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{thread:?} still runs"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}
