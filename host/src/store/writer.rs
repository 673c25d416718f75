//! The group-commit writer: one thread owns the write transactions and
//! commits every write that queued up while the previous commit was syncing
//! in one transaction, so many concurrent submissions share one fsync.
//!
//! Under `sync = "periodic"` a commit is forced to disk only when the last
//! forced one is a second old; the commits in between are made durable by
//! the next forced commit, which the writer makes within a second even when
//! no more writes come, and before it stops.
//!
//! It also owns the store's health. A commit that fails (a full disk, an
//! I/O error) leaves redb's handle unusable, so the writer closes it, marks
//! the store degraded (writes are refused at once with the reason), and
//! every second reopens the file and probes it with a small commit until
//! one succeeds: the store heals without a restart.

use super::StoreError;
use super::open::{open_db, quietly};
use super::settings::SyncMode;
use super::tables::{self, Write};
use redb::{Database, Durability};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 4096;
/// How often a degraded store tries to recover.
const RETRY: Duration = Duration::from_secs(1);
/// Under `sync = "periodic"`, the longest a commit stays unforced.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// A batch of writes from one caller and where to report the commit.
pub struct Request {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
    /// Told once the writes are durable (or failed).
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// The database handle that readers and the writer share, and the store's
/// health; the writer replaces the handle when it reopens the file.
pub struct Shared {
    /// The database file.
    pub path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    degraded: Mutex<Option<String>>,
    healthy: watch::Sender<bool>,
}

impl Shared {
    /// Shares `db`, opened from `path`.
    pub fn new(path: PathBuf, db: Database) -> Self {
        Self {
            path,
            db: RwLock::new(Some(Arc::new(db))),
            degraded: Mutex::new(None),
            healthy: watch::Sender::new(true),
        }
    }

    /// The open database, unless the writer closed it to recover.
    pub fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .expect("store handle lock")
            .clone()
            .ok_or_else(|| StoreError::Unavailable(self.reason()))
    }

    /// Why writes are refused, or `None` while the store is healthy.
    pub fn degraded(&self) -> Option<String> {
        self.degraded.lock().expect("store health lock").clone()
    }

    fn reason(&self) -> String {
        self.degraded()
            .unwrap_or_else(|| "the store is being reopened".into())
    }

    /// A receiver that sees `true` whenever the store can be written.
    pub fn watch_healthy(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    /// Whether the store can be written now.
    pub fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    fn degrade(&self, reason: String, close: bool) {
        let was = self
            .degraded
            .lock()
            .expect("store health lock")
            .replace(reason.clone());
        if was.is_none() {
            tracing::error!(path = %self.path.display(), %reason, "the job store cannot be written; new jobs are refused until it can (retrying every second)");
        }
        self.healthy.send_replace(false);
        if close {
            // Readers still holding the old handle finish with it; the file
            // is reopened once they are done.
            self.db.write().expect("store handle lock").take();
        }
    }

    fn heal(&self) {
        if self
            .degraded
            .lock()
            .expect("store health lock")
            .take()
            .is_some()
        {
            tracing::info!(path = %self.path.display(), "the job store can be written again");
        }
        self.healthy.send_replace(true);
    }

    /// Reopens the file if it is closed, then probes it with a commit.
    fn recover(&self) {
        if self.db.read().expect("store handle lock").is_none() {
            match open_db(&self.path) {
                Ok(db) => *self.db.write().expect("store handle lock") = Some(Arc::new(db)),
                Err(e) => return self.degrade(e.to_string(), false),
            }
        }
        match self.probe() {
            Ok(()) => self.heal(),
            Err(e) => self.degrade(e.to_string(), true),
        }
    }

    /// Commits a small write, forced to disk (with every commit before it).
    fn probe(&self) -> Result<(), StoreError> {
        let probe = [Write::Probe(crate::store::now_ms())];
        commit(self, &[&probe], Durability::Immediate)
    }
}

/// When the writer forces commits to disk, and whether some are not yet.
struct Forcing {
    sync: SyncMode,
    last_forced: Instant,
    /// Since when a commit has been waiting for a forced one.
    unforced_since: Option<Instant>,
}

impl Forcing {
    /// The durability of the next commit.
    fn next(&self) -> Durability {
        match self.sync {
            SyncMode::Periodic if self.last_forced.elapsed() < SYNC_PERIOD => Durability::None,
            _ => Durability::Immediate,
        }
    }

    fn committed(&mut self, durability: Durability) {
        if matches!(durability, Durability::Immediate) {
            self.last_forced = Instant::now();
            self.unforced_since = None;
        } else {
            self.unforced_since.get_or_insert_with(Instant::now);
        }
    }

    /// How long the writer may wait for the next request.
    fn wait(&self) -> Duration {
        self.unforced_since
            .map_or(Duration::from_secs(3600), |since| {
                SYNC_PERIOD.saturating_sub(since.elapsed())
            })
    }

    /// Forces the unforced commits to disk, if there are any.
    fn flush(&mut self, shared: &Shared) {
        if self.unforced_since.is_some() && shared.degraded().is_none() {
            match shared.probe() {
                Ok(()) => self.committed(Durability::Immediate),
                Err(e) => shared.degrade(e.to_string(), true),
            }
        }
    }
}

/// Runs until every sender is dropped (forcing what is unforced first).
pub fn run(shared: Arc<Shared>, requests: Receiver<Request>, sync: SyncMode) {
    let mut last_attempt = Instant::now();
    let mut forcing = Forcing {
        sync,
        last_forced: Instant::now(),
        unforced_since: None,
    };
    loop {
        let wait = if shared.degraded().is_some() {
            RETRY
        } else {
            forcing.wait()
        };
        let first = match requests.recv_timeout(wait) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return forcing.flush(&shared),
        };
        if shared.degraded().is_some() && last_attempt.elapsed() >= RETRY {
            last_attempt = Instant::now();
            shared.recover();
        }
        let Some(first) = first else {
            forcing.flush(&shared);
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let result = match shared.degraded() {
            Some(reason) => Err(StoreError::Unavailable(reason)),
            None => {
                let writes: Vec<&[Write]> = batch.iter().map(|r| r.writes.as_slice()).collect();
                let durability = forcing.next();
                match commit(&shared, &writes, durability) {
                    Ok(()) => {
                        forcing.committed(durability);
                        Ok(())
                    }
                    Err(e) => {
                        shared.degrade(e.to_string(), true);
                        last_attempt = Instant::now();
                        Err(StoreError::Unavailable(e.to_string()))
                    }
                }
            }
        };
        for request in batch {
            let _ = request.done.send(result.clone());
        }
    }
}

/// Commits `batches` in one transaction. A panic inside redb (a damaged
/// page) is an error like any other.
fn commit(shared: &Shared, batches: &[&[Write]], durability: Durability) -> Result<(), StoreError> {
    let db = shared.db()?;
    let outcome = quietly(|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(durability)?;
        for writes in batches {
            for write in *writes {
                tables::apply(&txn, write)?;
            }
        }
        txn.commit()?;
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::Write(e.to_string())),
        Err(panic) => Err(StoreError::Damaged {
            path: shared.path.display().to_string(),
            message: panic,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forcing(sync: SyncMode) -> Forcing {
        Forcing {
            sync,
            last_forced: Instant::now(),
            unforced_since: None,
        }
    }

    #[test]
    fn always_forces_every_commit() {
        let mut f = forcing(SyncMode::Always);
        for _ in 0..3 {
            assert!(matches!(f.next(), Durability::Immediate));
            f.committed(f.next());
            assert_eq!(f.wait(), Duration::from_secs(3600));
        }
    }

    #[test]
    fn periodic_forces_a_commit_once_the_last_forced_one_is_a_second_old() {
        let mut f = forcing(SyncMode::Periodic);
        assert!(matches!(f.next(), Durability::None));
        f.committed(Durability::None);
        assert!(
            f.wait() <= SYNC_PERIOD,
            "an unforced commit is forced within the period"
        );
        f.last_forced -= SYNC_PERIOD;
        assert!(matches!(f.next(), Durability::Immediate));
        f.committed(Durability::Immediate);
        assert_eq!(f.unforced_since, None);
        assert_eq!(f.wait(), Duration::from_secs(3600), "nothing left to force");
    }
}
