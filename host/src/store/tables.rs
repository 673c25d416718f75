//! The store's tables and how each write changes them.
//!
//! - `jobs`: job id → JSON record
//! - `by_seq`: submission sequence → job id (listing order, recovery order)
//! - `finished`: (finished at ms, sequence) → job id (retention, oldest first)
//! - `outbox`: (channel, sequence) → report not delivered yet

use super::records::JobRecord;
use crate::agent::report::OutboxItem;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// job id → JSON `JobRecord`.
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// sequence → job id.
pub const BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("by_seq");
/// (finished at ms, sequence) → job id.
pub const FINISHED: TableDefinition<(u64, u64), &str> = TableDefinition::new("finished");
/// outbox sequence → JSON `OutboxItem` (reports the control plane has not accepted yet).
pub const OUTBOX: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("outbox");

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert or replace a job record (and its index entries).
    Put(Box<JobRecord>),
    /// Remove a job and its index entries.
    Remove(String),
    /// Queue a report for the control plane under this sequence number.
    OutboxPut((u8, u64), Box<OutboxItem>),
    /// Drop a delivered report.
    OutboxRemove((u8, u64)),
}

/// Applies `write` inside `txn`.
pub fn apply(txn: &WriteTransaction, write: &Write) -> Result<(), redb::Error> {
    match write {
        Write::OutboxPut(seq, item) => {
            let bytes = serde_json::to_vec(item.as_ref()).expect("outbox items serialize");
            txn.open_table(OUTBOX)?.insert(*seq, bytes.as_slice())?;
            return Ok(());
        }
        Write::OutboxRemove(seq) => {
            txn.open_table(OUTBOX)?.remove(*seq)?;
            return Ok(());
        }
        Write::Put(_) | Write::Remove(_) => {}
    }
    let mut jobs = txn.open_table(JOBS)?;
    let mut by_seq = txn.open_table(BY_SEQ)?;
    let mut finished = txn.open_table(FINISHED)?;
    match write {
        Write::Put(record) => {
            let previous = jobs.get(record.job_id.as_str())?.map(|v| decode(v.value()));
            if let Some(Some(old)) = &previous
                && let Some(at) = old.finished_at_ms
            {
                finished.remove((at, old.seq))?;
            }
            let bytes = serde_json::to_vec(record.as_ref()).expect("records serialize");
            jobs.insert(record.job_id.as_str(), bytes.as_slice())?;
            by_seq.insert(record.seq, record.job_id.as_str())?;
            if record.state.is_terminal()
                && let Some(at) = record.finished_at_ms
            {
                finished.insert((at, record.seq), record.job_id.as_str())?;
            }
        }
        Write::Remove(id) => {
            let removed = jobs.remove(id.as_str())?.map(|v| decode(v.value()));
            if let Some(Some(old)) = removed {
                by_seq.remove(old.seq)?;
                if let Some(at) = old.finished_at_ms {
                    finished.remove((at, old.seq))?;
                }
            }
        }
        Write::OutboxPut(..) | Write::OutboxRemove(_) => unreachable!("handled above"),
    }
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
