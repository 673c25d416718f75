//! The store's tables and how each write changes them.
//!
//! - `jobs`: job id → JSON record (small: no payload, no output)
//! - `requests`: job id → the request as accepted (JSON)
//! - `outputs`: job id → the output document, as the task produced it (JSON)
//! - `logs`: job id → `{"stdout", "stderr"}` (JSON)
//! - `receipts`: job id → the signed receipt of its run (a DSSE envelope)
//! - `by_seq`: submission sequence → job id (listing order)
//! - `active`: submission sequence → job id, for jobs not yet terminal (recovery)
//! - `finished`: (finished at ms, sequence) → job id (retention, oldest first)
//! - `outbox`: (channel, sequence) → report not delivered yet
//! - `meta`: name → value (schema version, health probes)

use super::OutboxItem;
use super::records::{CallbackStatus, EncodedOutput, JobRecord};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use std::sync::Arc;

/// job id → JSON `JobRecord`.
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// job id → JSON `JobRequest`.
pub const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
/// job id → the output document.
pub const OUTPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("outputs");
/// job id → JSON `{"stdout", "stderr"}`.
pub const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("logs");
/// job id → the signed receipt of its run (JSON DSSE envelope).
pub const RECEIPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("receipts");
/// sequence → job id.
pub const BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("by_seq");
/// sequence → job id, while the job is queued or running.
pub const ACTIVE: TableDefinition<u64, &str> = TableDefinition::new("active");
/// (finished at ms, sequence) → job id.
pub const FINISHED: TableDefinition<(u64, u64), &str> = TableDefinition::new("finished");
/// outbox sequence → JSON `OutboxItem` (reports the control plane has not accepted yet).
pub const OUTBOX: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("outbox");
/// name → value.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The layout version this code reads and writes.
pub const SCHEMA_VERSION: &[u8] = b"2";
/// Key of the layout version in `meta`.
pub const SCHEMA_KEY: &str = "schema";

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert or replace a job record (and its index entries).
    Put(Box<JobRecord>),
    /// A job's request as accepted.
    Request(String, Vec<u8>),
    /// What a job produced: its output document, its logs and its receipt
    /// (none if the node signs none).
    Output(String, Arc<EncodedOutput>),
    /// How delivery of a job's callback went, set on its current record.
    Callback(String, CallbackStatus),
    /// Remove a job, what it produced and its index entries.
    Remove(String),
    /// Queue a report for the control plane under this sequence number.
    OutboxPut((u8, u64), Box<OutboxItem>),
    /// Drop a delivered report.
    OutboxRemove((u8, u64)),
    /// Record that the store can be written (a health probe).
    Probe(u64),
}

/// Applies `write` inside `txn`.
pub fn apply(txn: &WriteTransaction, write: &Write) -> Result<(), redb::Error> {
    match write {
        Write::Put(record) => put(txn, record)?,
        Write::Request(id, bytes) => {
            txn.open_table(REQUESTS)?
                .insert(id.as_str(), bytes.as_slice())?;
        }
        Write::Output(job_id, output) => {
            txn.open_table(OUTPUTS)?
                .insert(job_id.as_str(), output.document.as_ref())?;
            txn.open_table(LOGS)?
                .insert(job_id.as_str(), output.logs.as_slice())?;
            let mut receipts = txn.open_table(RECEIPTS)?;
            match &output.receipt {
                Some(receipt) => receipts.insert(job_id.as_str(), receipt.as_slice())?,
                None => receipts.remove(job_id.as_str())?,
            };
        }
        Write::Callback(id, status) => {
            let current = txn
                .open_table(JOBS)?
                .get(id.as_str())?
                .and_then(|v| decode(v.value()));
            if let Some(mut record) = current {
                record.callback = Some(status.clone());
                put(txn, &record)?;
            }
        }
        Write::Remove(id) => remove(txn, id)?,
        Write::OutboxPut(seq, item) => {
            let bytes = serde_json::to_vec(item.as_ref()).expect("outbox items serialize");
            txn.open_table(OUTBOX)?.insert(*seq, bytes.as_slice())?;
        }
        Write::OutboxRemove(seq) => {
            txn.open_table(OUTBOX)?.remove(*seq)?;
        }
        Write::Probe(at) => {
            txn.open_table(META)?
                .insert("probe", at.to_le_bytes().as_slice())?;
        }
    }
    Ok(())
}

fn put(txn: &WriteTransaction, record: &JobRecord) -> Result<(), redb::Error> {
    let mut jobs = txn.open_table(JOBS)?;
    let mut by_seq = txn.open_table(BY_SEQ)?;
    let mut active = txn.open_table(ACTIVE)?;
    let mut finished = txn.open_table(FINISHED)?;
    let previous = jobs
        .get(record.job_id.as_str())?
        .and_then(|v| decode(v.value()));
    if let Some(old) = &previous {
        if let Some(at) = old.finished_at_ms {
            finished.remove((at, old.seq))?;
        }
        active.remove(old.seq)?;
    }
    let bytes = serde_json::to_vec(record).expect("records serialize");
    jobs.insert(record.job_id.as_str(), bytes.as_slice())?;
    by_seq.insert(record.seq, record.job_id.as_str())?;
    if record.state.is_terminal() {
        if let Some(at) = record.finished_at_ms {
            finished.insert((at, record.seq), record.job_id.as_str())?;
        }
    } else {
        active.insert(record.seq, record.job_id.as_str())?;
    }
    Ok(())
}

fn remove(txn: &WriteTransaction, id: &str) -> Result<(), redb::Error> {
    let removed = txn
        .open_table(JOBS)?
        .remove(id)?
        .and_then(|v| decode(v.value()));
    for table in [REQUESTS, OUTPUTS, LOGS, RECEIPTS] {
        txn.open_table(table)?.remove(id)?;
    }
    if let Some(old) = removed {
        txn.open_table(BY_SEQ)?.remove(old.seq)?;
        txn.open_table(ACTIVE)?.remove(old.seq)?;
        if let Some(at) = old.finished_at_ms {
            txn.open_table(FINISHED)?.remove((at, old.seq))?;
        }
    }
    Ok(())
}

/// Creates every table (a new store, or one of an older layout being upgraded).
pub fn create_all(txn: &WriteTransaction) -> Result<(), redb::Error> {
    for table in [JOBS, REQUESTS, OUTPUTS, LOGS, RECEIPTS, META] {
        txn.open_table(table)?;
    }
    txn.open_table(BY_SEQ)?;
    txn.open_table(ACTIVE)?;
    txn.open_table(FINISHED)?;
    txn.open_table(OUTBOX)?;
    Ok(())
}

/// Decodes a stored record; a record this version cannot read is skipped
/// (and logged) rather than crashing the node.
pub fn decode(bytes: &[u8]) -> Option<JobRecord> {
    match serde_json::from_slice(bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::error!(error = %e, "unreadable job record skipped");
            None
        }
    }
}
