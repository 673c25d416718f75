//! Reading the store: a job's record, request, output, logs and receipt,
//! pages of jobs, the unfinished ones and those that ended in a window,
//! each from one MVCC snapshot (reads never wait for the writer).

use super::records::{JobFilter, JobRecord, Logs};
use super::tables::{ACTIVE, BY_SEQ, FINISHED, JOBS, LOGS, OUTPUTS, RECEIPTS, REQUESTS, decode};
use super::{JobStore, StoreError, read_err};
use crate::job::JobRequest;
use redb::ReadableTable;

impl JobStore {
    /// The record of `job_id`.
    pub fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.read()?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        Ok(jobs
            .get(job_id)
            .map_err(read_err)?
            .and_then(|v| decode(v.value())))
    }

    /// The request of `job_id`, as accepted.
    pub fn request(&self, job_id: &str) -> Result<Option<JobRequest>, StoreError> {
        let txn = self.read()?;
        let requests = txn.open_table(REQUESTS).map_err(read_err)?;
        let Some(bytes) = requests.get(job_id).map_err(read_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| {
                StoreError::Read(format!("the request of job {job_id} is unreadable: {e}"))
            })
    }

    /// The output document of `job_id` as the task produced it (JSON bytes).
    pub fn output(&self, job_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let outputs = txn.open_table(OUTPUTS).map_err(read_err)?;
        Ok(outputs
            .get(job_id)
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }

    /// The signed receipt of `job_id`'s run, once it ended (a store from
    /// before receipts has none).
    pub fn receipt(&self, job_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let receipts = match txn.open_table(RECEIPTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        Ok(receipts
            .get(job_id)
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }

    /// What `job_id` printed (empty before it ended).
    pub fn logs(&self, job_id: &str) -> Result<Logs, StoreError> {
        let txn = self.read()?;
        let logs = txn.open_table(LOGS).map_err(read_err)?;
        let Some(bytes) = logs.get(job_id).map_err(read_err)? else {
            return Ok(Logs::default());
        };
        serde_json::from_slice(bytes.value()).map_err(read_err)
    }

    /// A page of at most `limit` jobs that `filter` admits, in its order,
    /// after the job of sequence number `cursor` (from the first, or the
    /// newest, when `None`), and the cursor of the next page, if any.
    pub fn list(
        &self,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<u64>), StoreError> {
        let txn = self.read()?;
        let by_seq = txn.open_table(BY_SEQ).map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        let entries = if filter.newest_first {
            let before = cursor.unwrap_or(u64::MAX);
            Box::new(by_seq.range(..before).map_err(read_err)?.rev()) as Box<dyn Iterator<Item = _>>
        } else {
            let after = cursor.unwrap_or(0);
            Box::new(by_seq.range(after.saturating_add(1)..).map_err(read_err)?)
        };
        let mut out = Vec::new();
        for entry in entries {
            let (seq, id) = entry.map_err(read_err)?;
            let Some(record) = jobs
                .get(id.value())
                .map_err(read_err)?
                .and_then(|v| decode(v.value()))
            else {
                continue;
            };
            if filter.admits(&record) {
                out.push(record);
                if out.len() == limit {
                    return Ok((out, Some(seq.value())));
                }
            }
        }
        Ok((out, None))
    }

    /// Calls `visit` with every job that ended at or after `since_ms` and
    /// before `until_ms` (ms since the Unix epoch), oldest first, from one
    /// snapshot of the store.
    pub fn visit_ended(
        &self,
        since_ms: u64,
        until_ms: u64,
        mut visit: impl FnMut(&JobRecord),
    ) -> Result<(), StoreError> {
        let txn = self.read()?;
        let finished = txn.open_table(FINISHED).map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        for entry in finished
            .range((since_ms, 0)..(until_ms, 0))
            .map_err(read_err)?
        {
            let (_, id) = entry.map_err(read_err)?;
            if let Some(record) = jobs
                .get(id.value())
                .map_err(read_err)?
                .and_then(|v| decode(v.value()))
            {
                visit(&record);
            }
        }
        Ok(())
    }

    /// Every job that is not terminal, in submission order (for recovery).
    pub fn unfinished(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.read()?;
        let active = txn.open_table(ACTIVE).map_err(read_err)?;
        let jobs = txn.open_table(JOBS).map_err(read_err)?;
        let mut out = Vec::new();
        for entry in active.iter().map_err(read_err)? {
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
}
