//! `JobStore`: every accepted job and every result, in an embedded
//! transactional store (redb), written before the API answers.
//!
//! A job's record is small (state, times, how it ended); its request and
//! its output live in tables of their own and are read only to start the
//! job or to serve its result, so listing, queueing and recovery stay cheap
//! whatever the payloads weigh.
//!
//! Writes go through one writer thread that groups concurrent writes into a
//! single durable commit and heals the store after I/O errors (see
//! `writer`); reads use redb's MVCC snapshots and never wait for writes.

mod maintenance;
mod open;
mod outbox;
mod reads;
mod records;
pub mod settings;
mod tables;
mod writer;

pub use maintenance::{Repaired, check, repair};
pub use outbox::{Channel, Origin, OutboxItem, ReportStatus};
pub use records::{
    CallbackState, CallbackStatus, EncodedOutput, ErrorCode, ErrorInfo, JobFilter, JobOutput,
    JobRecord, JobResult, JobState, Logs, now_ms, rfc3339,
};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use settings::SyncMode;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use tables::{BY_SEQ, FINISHED, OUTBOX, Write};
use tokio::sync::{Notify, oneshot};

/// Errors of the job store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the job store at {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The database file is damaged.
    #[error(
        "the job store {path} is damaged ({message}); stop the node and run `wasmnode store repair` \
         (it keeps every job it can read and moves the damaged file aside)"
    )]
    Damaged {
        /// The file.
        path: String,
        /// What redb found.
        message: String,
    },
    /// The store cannot be written now (a full disk, an I/O error); the
    /// node retries and heals by itself.
    #[error("the job store cannot be written now: {0}")]
    Unavailable(String),
    /// A write failed; nothing of it was committed.
    #[error("job store write failed: {0}")]
    Write(String),
    /// A read failed.
    #[error("job store read failed: {0}")]
    Read(String),
    /// The writer thread is gone (the node is shutting down).
    #[error("the job store is closed")]
    Closed,
}

impl StoreError {
    /// The error code a front door reports: `STORE_UNAVAILABLE` while the
    /// store heals by itself, else `STORE_ERROR`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "STORE_UNAVAILABLE",
            _ => "STORE_ERROR",
        }
    }
}

fn read_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

/// Pending writes the writer may hold before callers wait.
const WRITE_QUEUE: usize = 16_384;

/// The durable job store (cheap to clone; clones share one database).
#[derive(Clone)]
pub struct JobStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<writer::Shared>,
    writes: SyncSender<writer::Request>,
    /// Joined by `close`.
    #[cfg_attr(not(test), allow(dead_code))]
    writer: std::thread::JoinHandle<()>,
    next_seq: AtomicU64,
    next_outbox: AtomicU64,
    outbox_ready: [Notify; 2],
}

impl JobStore {
    /// Opens (or creates) the store at `path`, forcing every commit to disk.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SyncMode::Always)
    }

    /// Opens (or creates) the store at `path` and starts its writer thread,
    /// which forces commits to disk as `sync` says.
    pub fn open_with(path: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        }
        let db = open::open_db(path)?;
        let (last_seq, last_outbox) = open::quietly(|| last_keys(&db))
            .map_err(|message| StoreError::Damaged {
                path: path.display().to_string(),
                message,
            })?
            .map_err(|e| open_err(&e))?;
        let shared = Arc::new(writer::Shared::new(path.to_path_buf(), db));
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITE_QUEUE);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("wasmnode-store".into())
            .spawn(move || writer::run(writer_shared, rx, sync))
            .map_err(|e| open_err(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writes: tx,
                writer,
                next_seq: AtomicU64::new(last_seq + 1),
                next_outbox: AtomicU64::new(last_outbox + 1),
                outbox_ready: [Notify::new(), Notify::new()],
            }),
        })
    }

    /// Closes the store once this is the last handle: stops the writer after
    /// its pending commits and releases the database file (so a test can
    /// open it again in the same process; the node simply lets it go).
    #[cfg(test)]
    pub fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            drop(inner.writes);
            let _ = inner.writer.join();
        }
    }

    /// Why the store cannot be written now, or `None` while it can.
    pub fn degraded(&self) -> Option<String> {
        self.inner.shared.degraded()
    }

    /// Resolves once the store can be written (at once while it can).
    pub async fn writable(&self) {
        let mut healthy = self.inner.shared.watch_healthy();
        let _ = healthy.wait_for(|ok| *ok).await;
    }

    /// Whether the store can be written now.
    pub fn is_writable(&self) -> bool {
        self.inner.shared.is_healthy()
    }

    /// The next submission sequence number.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.inner.shared.db()?.begin_read().map_err(read_err)
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let sender = self.inner.writes.clone();
        let request = writer::Request { writes, done };
        // The channel is bounded; a full one blocks, so hand it to a blocking thread.
        match sender.try_send(request) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(request)) => {
                tokio::task::spawn_blocking(move || sender.send(request))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        committed.await.map_err(|_| StoreError::Closed)?
    }

    /// Durably accepts a new job: its record and its canonical request.
    pub async fn accept(&self, record: JobRecord, request: Vec<u8>) -> Result<(), StoreError> {
        self.write(vec![
            Write::Request(record.job_id.clone(), request),
            Write::Put(Box::new(record)),
        ])
        .await
    }

    /// Durably inserts or replaces `record`.
    pub async fn put(&self, record: JobRecord) -> Result<(), StoreError> {
        self.write(vec![Write::Put(Box::new(record))]).await
    }

    /// Durably writes `record`, what the job produced (if anything) and, in
    /// the same commit, queues `report` for delivery: a result and its
    /// report are never apart.
    pub async fn put_reporting(
        &self,
        record: JobRecord,
        output: Option<Arc<EncodedOutput>>,
        report: Option<OutboxItem>,
    ) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(3);
        if let Some(output) = output {
            writes.push(Write::Output(record.job_id.clone(), output));
        }
        writes.push(Write::Put(Box::new(record)));
        let channel = report.as_ref().map(|r| r.origin.channel());
        if let Some(report) = report {
            writes.push(self.outbox_write(report));
        }
        self.write(writes).await?;
        if let Some(channel) = channel {
            self.inner.outbox_ready[channel as usize].notify_one();
        }
        Ok(())
    }

    fn outbox_write(&self, report: OutboxItem) -> Write {
        let key = (
            report.origin.channel() as u8,
            self.inner.next_outbox.fetch_add(1, Ordering::Relaxed),
        );
        Write::OutboxPut(key, Box::new(report))
    }

    /// Durably queues a report on its own (a task refused at submission).
    pub async fn queue_report(&self, report: OutboxItem) -> Result<(), StoreError> {
        let channel = report.origin.channel();
        self.write(vec![self.outbox_write(report)]).await?;
        self.inner.outbox_ready[channel as usize].notify_one();
        Ok(())
    }

    /// Durably records how delivery of `job_id`'s callback went (on its
    /// current record; nothing if the job is gone).
    pub async fn set_callback(
        &self,
        job_id: &str,
        status: CallbackStatus,
    ) -> Result<(), StoreError> {
        self.write(vec![Write::Callback(job_id.into(), status)])
            .await
    }

    /// Number of reports not yet delivered on `channel`.
    pub fn outbox_len(&self, channel: Channel) -> usize {
        let c = channel as u8;
        let count = || -> Result<usize, StoreError> {
            let txn = self.read()?;
            let table = txn.open_table(OUTBOX).map_err(read_err)?;
            Ok(table
                .range((c, 0)..=(c, u64::MAX))
                .map_err(read_err)?
                .count())
        };
        count().unwrap_or(0)
    }

    /// The oldest reports not yet delivered on `channel`, up to `limit`.
    pub fn outbox(
        &self,
        channel: Channel,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        let c = channel as u8;
        let txn = self.read()?;
        let table = txn.open_table(OUTBOX).map_err(read_err)?;
        let mut out = Vec::new();
        for entry in table
            .range((c, 0)..=(c, u64::MAX))
            .map_err(read_err)?
            .take(limit)
        {
            let (key, bytes) = entry.map_err(read_err)?;
            let seq = key.value().1;
            match serde_json::from_slice(bytes.value()) {
                Ok(item) => out.push((seq, item)),
                Err(e) => tracing::error!(seq, error = %e, "unreadable outbox item skipped"),
            }
        }
        Ok(out)
    }

    /// Drops a delivered (or refused) report.
    pub async fn outbox_remove(&self, channel: Channel, seq: u64) -> Result<(), StoreError> {
        self.write(vec![Write::OutboxRemove((channel as u8, seq))])
            .await
    }

    /// Resolves when a report was queued on `channel` since the last call.
    pub async fn outbox_ready(&self, channel: Channel) {
        self.inner.outbox_ready[channel as usize].notified().await;
    }

    /// Durably removes the jobs `ids`.
    pub async fn remove(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(ids.into_iter().map(Write::Remove).collect())
            .await
    }

    /// Removes finished jobs beyond `max_jobs` or older than `max_age_ms`,
    /// oldest first; returns how many were removed.
    pub async fn apply_retention(
        &self,
        max_jobs: usize,
        max_age_ms: u64,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(max_age_ms);
        let doomed: Vec<String> = {
            let txn = self.read()?;
            let finished = txn.open_table(FINISHED).map_err(read_err)?;
            let total = finished.len().map_err(read_err)? as usize;
            let mut excess = total.saturating_sub(max_jobs);
            let mut doomed = Vec::new();
            for entry in finished.iter().map_err(read_err)? {
                let (key, id) = entry.map_err(read_err)?;
                let (finished_at, _) = key.value();
                if excess == 0 && finished_at >= cutoff {
                    break;
                }
                excess = excess.saturating_sub(1);
                doomed.push(id.value().to_string());
            }
            doomed
        };
        let removed = doomed.len();
        for chunk in doomed.chunks(1024) {
            self.remove(chunk.to_vec()).await?;
        }
        Ok(removed)
    }
}

/// The last job sequence and outbox sequence in use.
fn last_keys(db: &redb::Database) -> Result<(u64, u64), redb::Error> {
    let txn = db.begin_read()?;
    let jobs = txn.open_table(BY_SEQ)?;
    let outbox = txn.open_table(OUTBOX)?;
    let jobs_last = jobs.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let mut outbox_last = 0;
    for entry in outbox.iter()? {
        let (key, _) = entry?;
        outbox_last = outbox_last.max(key.value().1);
    }
    Ok((jobs_last, outbox_last))
}

#[cfg(test)]
mod tests;
