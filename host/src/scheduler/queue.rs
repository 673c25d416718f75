//! `JobQueue`: the in-memory queue of accepted jobs. Three lanes (high,
//! normal, low), FIFO within a lane; a job's lane is raised one step for
//! every `boost_after` it has waited, so low-priority work never starves.
//! It also keeps the total size of the waiting jobs' requests.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A job's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    High = 0,
    Normal = 1,
    Low = 2,
}

impl Priority {
    /// Parses `high` / `normal` / `low` (anything else is normal).
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("high") => Self::High,
            Some("low") => Self::Low,
            _ => Self::Normal,
        }
    }
}

/// A waiting job.
struct Entry {
    id: String,
    since: Instant,
    bytes: u64,
}

/// Waiting jobs.
pub struct JobQueue {
    lanes: [BTreeMap<u64, Entry>; 3],
    index: HashMap<String, (usize, u64)>,
    bytes: u64,
    boost_after: Duration,
}

impl JobQueue {
    /// An empty queue that raises a job's lane for every `boost_after` it waits.
    pub fn new(boost_after: Duration) -> Self {
        Self {
            lanes: Default::default(),
            index: HashMap::new(),
            bytes: 0,
            boost_after,
        }
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `id` is waiting.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Total size of the waiting jobs' requests, bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `id` (submission sequence `seq`, a request of `bytes`) at
    /// `priority`, waiting since `since`.
    pub fn push(&mut self, id: String, seq: u64, priority: Priority, since: Instant, bytes: u64) {
        let lane = priority as usize;
        self.index.insert(id.clone(), (lane, seq));
        self.bytes += bytes;
        self.lanes[lane].insert(seq, Entry { id, since, bytes });
    }

    /// Removes `id`; returns whether it was waiting.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some((lane, seq)) = self.index.remove(id) else {
            return false;
        };
        match self.lanes[lane].remove(&seq) {
            Some(entry) => {
                self.bytes -= entry.bytes;
                true
            }
            None => false,
        }
    }

    /// Takes the next job: the lane heads compete by effective priority
    /// (lane minus one per `boost_after` waited), then by submission order.
    /// Returns its id, sequence, lane and request size.
    pub fn pop(&mut self, now: Instant) -> Option<(String, u64, Priority, u64)> {
        let boost = |since: Instant| {
            let waited = now.saturating_duration_since(since).as_secs_f64();
            (waited / self.boost_after.as_secs_f64().max(1e-9)).floor() as usize
        };
        let (lane, seq) = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(lane, entries)| {
                let (seq, entry) = entries.first_key_value()?;
                Some((lane.saturating_sub(boost(entry.since)), *seq, lane))
            })
            .min()
            .map(|(_, seq, lane)| (lane, seq))?;
        let entry = self.lanes[lane].remove(&seq)?;
        self.index.remove(&entry.id);
        self.bytes -= entry.bytes;
        let priority = [Priority::High, Priority::Normal, Priority::Low][lane];
        Some((entry.id, seq, priority, entry.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_fifo_within_a_priority() {
        let mut q = JobQueue::new(Duration::from_secs(3600));
        let t = Instant::now();
        q.push("n1".into(), 1, Priority::Normal, t, 10);
        q.push("l1".into(), 2, Priority::Low, t, 20);
        q.push("h1".into(), 3, Priority::High, t, 30);
        q.push("n2".into(), 4, Priority::Normal, t, 40);
        q.push("h2".into(), 5, Priority::High, t, 50);
        assert_eq!(q.bytes(), 150);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t).map(|(id, ..)| id)).collect();
        assert_eq!(order, ["h1", "h2", "n1", "n2", "l1"]);
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }

    #[test]
    fn waiting_raises_priority_so_nothing_starves() {
        let mut q = JobQueue::new(Duration::from_secs(10));
        let start = Instant::now();
        q.push("old-low".into(), 1, Priority::Low, start, 0);
        let later = start + Duration::from_secs(25);
        q.push("new-high".into(), 2, Priority::High, later, 0);
        assert_eq!(
            q.pop(later).map(|(id, ..)| id).as_deref(),
            Some("old-low"),
            "25 s of waiting lifts low to high; older wins the tie"
        );
    }

    #[test]
    fn removal_and_membership() {
        let mut q = JobQueue::new(Duration::from_secs(10));
        let t = Instant::now();
        q.push("a".into(), 1, Priority::Normal, t, 7);
        assert_eq!((q.len(), q.bytes()), (1, 7));
        assert!(q.contains("a"));
        assert!(q.remove("a"));
        assert!(!q.contains("a"));
        assert!(!q.remove("a"));
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.pop(t), None);
    }
}
