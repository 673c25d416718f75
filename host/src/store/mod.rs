//! `JobStore`: every accepted job and every result, in an embedded
//! transactional store (redb), written before the API answers.
//!
//! Writes go through one writer thread that groups concurrent writes into a
//! single durable commit (see `writer`); reads use redb's MVCC snapshots and
//! never wait for writes.

mod records;
mod tables;
mod writer;

pub use records::{CallbackStatus, ErrorInfo, JobRecord, JobResult, JobState, now_ms, rfc3339};

use crate::agent::report::{Channel, OutboxItem};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use tables::{BY_SEQ, FINISHED, JOBS, OUTBOX, Write, decode};
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
    db: Arc<Database>,
    writes: SyncSender<writer::Request>,
    /// Joined by `close`.
    #[cfg_attr(not(test), allow(dead_code))]
    writer: std::thread::JoinHandle<()>,
    next_seq: AtomicU64,
    next_outbox: AtomicU64,
    outbox_ready: [Notify; 2],
}

impl JobStore {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        }
        let db = Database::create(path).map_err(|e| open_err(&e))?;
        {
            let txn = db.begin_write().map_err(|e| open_err(&e))?;
            txn.open_table(JOBS).map_err(|e| open_err(&e))?;
            txn.open_table(BY_SEQ).map_err(|e| open_err(&e))?;
            txn.open_table(FINISHED).map_err(|e| open_err(&e))?;
            txn.open_table(OUTBOX).map_err(|e| open_err(&e))?;
            txn.commit().map_err(|e| open_err(&e))?;
        }
        let db = Arc::new(db);
        let (last_seq, last_outbox) = {
            let txn = db.begin_read().map_err(|e| open_err(&e))?;
            let jobs = txn.open_table(BY_SEQ).map_err(|e| open_err(&e))?;
            let outbox = txn.open_table(OUTBOX).map_err(|e| open_err(&e))?;
            let jobs_last = jobs
                .last()
                .map_err(|e| open_err(&e))?
                .map(|(k, _)| k.value());
            let mut outbox_last = 0;
            for entry in outbox.iter().map_err(|e| open_err(&e))? {
                let (key, _) = entry.map_err(|e| open_err(&e))?;
                outbox_last = outbox_last.max(key.value().1);
            }
            (jobs_last.unwrap_or(0), outbox_last)
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITE_QUEUE);
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("wasmnode-store".into())
            .spawn(move || writer::run(writer_db, rx))
            .map_err(|e| open_err(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
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

    /// The next submission sequence number.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
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

    /// Durably inserts or replaces `record`.
    pub async fn put(&self, record: JobRecord) -> Result<(), StoreError> {
        self.write(vec![Write::Put(Box::new(record))]).await
    }

    /// Durably writes `record` and, in the same commit, queues `report`
    /// for delivery: a result and its report are never apart.
    pub async fn put_reporting(
        &self,
        record: JobRecord,
        report: Option<OutboxItem>,
    ) -> Result<(), StoreError> {
        let Some(report) = report else {
            return self.put(record).await;
        };
        let channel = report.origin.channel();
        let key = (
            channel as u8,
            self.inner.next_outbox.fetch_add(1, Ordering::Relaxed),
        );
        self.write(vec![
            Write::Put(Box::new(record)),
            Write::OutboxPut(key, Box::new(report)),
        ])
        .await?;
        self.inner.outbox_ready[channel as usize].notify_one();
        Ok(())
    }

    /// Durably queues a report on its own (a task refused at submission).
    pub async fn queue_report(&self, report: OutboxItem) -> Result<(), StoreError> {
        let channel = report.origin.channel();
        let key = (
            channel as u8,
            self.inner.next_outbox.fetch_add(1, Ordering::Relaxed),
        );
        self.write(vec![Write::OutboxPut(key, Box::new(report))])
            .await?;
        self.inner.outbox_ready[channel as usize].notify_one();
        Ok(())
    }

    /// Number of reports not yet delivered on `channel`.
    pub fn outbox_len(&self, channel: Channel) -> usize {
        let c = channel as u8;
        let count = || -> Result<usize, StoreError> {
            let txn = self.inner.db.begin_read().map_err(read_err)?;
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
        let txn = self.inner.db.begin_read().map_err(read_err)?;
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

    /// The record of `job_id`.
    pub fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        Ok(jobs
            .get(job_id)
            .map_err(read_err)?
            .and_then(|v| decode(v.value())))
    }

    /// Up to `limit` jobs after sequence `after`, oldest first, optionally
    /// only in `state`; also returns the cursor for the next page.
    pub fn list(
        &self,
        state: Option<JobState>,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<u64>), StoreError> {
        let txn = self.inner.db.begin_read().map_err(read_err)?;
        let by_seq = txn.open_table(BY_SEQ).map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        let mut out = Vec::new();
        for entry in by_seq.range(after.saturating_add(1)..).map_err(read_err)? {
            let (seq, id) = entry.map_err(read_err)?;
            let Some(record) = jobs
                .get(id.value())
                .map_err(read_err)?
                .and_then(|v| decode(v.value()))
            else {
                continue;
            };
            if state.is_none_or(|s| s == record.state) {
                out.push(record);
                if out.len() == limit {
                    return Ok((out, Some(seq.value())));
                }
            }
        }
        Ok((out, None))
    }

    /// Every job that is not terminal, in submission order (for recovery).
    pub fn unfinished(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.inner.db.begin_read().map_err(read_err)?;
        let by_seq = txn.open_table(BY_SEQ).map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        let mut out = Vec::new();
        for entry in by_seq.iter().map_err(read_err)? {
            let (_, id) = entry.map_err(read_err)?;
            if let Some(record) = jobs
                .get(id.value())
                .map_err(read_err)?
                .and_then(|v| decode(v.value()))
                && !record.state.is_terminal()
            {
                out.push(record);
            }
        }
        Ok(out)
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
            let txn = self.inner.db.begin_read().map_err(read_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobRequest;

    fn request(id: &str) -> JobRequest {
        JobRequest::parse(
            format!(r#"{{"protocol_version":1,"job_id":"{id}","task":{{"type":"retrieval"}},"runtime":{{"mode":"wasm"}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn finished(mut r: JobRecord, at: u64) -> JobRecord {
        r.state = JobState::Finished;
        r.finished_at_ms = Some(at);
        r.result = Some(JobResult::default());
        r
    }

    #[tokio::test]
    async fn records_survive_reopening_and_sequences_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        {
            let store = JobStore::open(&path).unwrap();
            for id in ["a", "b"] {
                store
                    .put(JobRecord::queued(request(id), store.next_seq(), now_ms()))
                    .await
                    .unwrap();
            }
            store.close();
        }
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().state, JobState::Queued);
        assert_eq!(store.next_seq(), 3);
        assert_eq!(store.unfinished().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn concurrent_writes_are_grouped_and_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
        let writes = (0..500).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(JobRecord::queued(
                        request(&format!("j{i}")),
                        store.next_seq(),
                        now_ms(),
                    ))
                    .await
            })
        });
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let (page, cursor) = store.list(None, 0, 100).unwrap();
        assert_eq!(page.len(), 100);
        let (rest, end) = store.list(None, cursor.unwrap(), 1000).unwrap();
        assert_eq!(rest.len(), 400);
        assert!(end.is_none());
        assert_eq!(
            store.list(Some(JobState::Running), 0, 10).unwrap().0.len(),
            0
        );
    }

    #[tokio::test]
    async fn retention_removes_the_oldest_finished_jobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
        let now = now_ms();
        store
            .put(finished(
                JobRecord::queued(request("old"), store.next_seq(), now),
                now - 10_000,
            ))
            .await
            .unwrap();
        store
            .put(finished(
                JobRecord::queued(request("mid"), store.next_seq(), now),
                now - 5_000,
            ))
            .await
            .unwrap();
        store
            .put(finished(
                JobRecord::queued(request("new"), store.next_seq(), now),
                now,
            ))
            .await
            .unwrap();
        store
            .put(JobRecord::queued(
                request("waiting"),
                store.next_seq(),
                now - 99_000,
            ))
            .await
            .unwrap();
        assert_eq!(store.apply_retention(2, 60_000).await.unwrap(), 1);
        assert!(store.get("old").unwrap().is_none());
        assert_eq!(store.apply_retention(10, 7_000).await.unwrap(), 0);
        assert_eq!(store.apply_retention(10, 1_000).await.unwrap(), 1);
        assert!(store.get("mid").unwrap().is_none());
        assert!(store.get("new").unwrap().is_some());
        assert!(
            store.get("waiting").unwrap().is_some(),
            "unfinished jobs are never removed"
        );
    }

    #[tokio::test]
    async fn replacing_a_record_moves_its_retention_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.redb")).unwrap();
        let now = now_ms();
        let r = JobRecord::queued(request("x"), store.next_seq(), now);
        store.put(finished(r.clone(), now - 100_000)).await.unwrap();
        store.put(finished(r, now)).await.unwrap();
        assert_eq!(
            store.apply_retention(10, 50_000).await.unwrap(),
            0,
            "only the latest finish time counts"
        );
        store.remove(vec!["x".into()]).await.unwrap();
        assert!(store.get("x").unwrap().is_none());
        assert!(store.list(None, 0, 10).unwrap().0.is_empty());
    }
}
