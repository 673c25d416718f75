//! Opening the store file: a small page cache, a damaged file reported as
//! such (redb may panic on a corrupted page; that never takes the node down
//! with a backtrace), and the upgrade of a store written by an older version.

use super::Origin;
use super::StoreError;
use super::records::{JobOutput, JobRecord, JobResult, JobState, Logs};
use super::tables::{self, JOBS, META, SCHEMA_KEY, SCHEMA_VERSION, Write};
use crate::job::JobRequest;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// Memory redb may use to cache pages. Records are small; payloads and
/// outputs are read once, so a large cache would only hold them resident.
pub const CACHE_BYTES: usize = 16 << 20;

/// Runs `f`, turning a panic into its message without printing a backtrace.
pub fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    outcome.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "redb panicked".into())
    })
}

/// A builder with the store's settings.
pub fn builder(check_integrity: bool) -> redb::Builder {
    let mut builder = Database::builder();
    builder
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(check_integrity);
    builder
}

/// Opens (or creates) the database at `path` and brings it to this
/// version's layout.
pub fn open_db(path: &Path) -> Result<Database, StoreError> {
    open_with(path, builder(false))
}

/// Like [`open_db`], verifying every page first and letting redb repair
/// what it can; also says whether it repaired anything.
pub fn open_checked(path: &Path) -> Result<(Database, bool), StoreError> {
    let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut builder = builder(true);
    let flag = repaired.clone();
    builder.set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed));
    let db = open_with(path, builder)?;
    Ok((db, repaired.load(std::sync::atomic::Ordering::Relaxed)))
}

fn open_with(path: &Path, builder: redb::Builder) -> Result<Database, StoreError> {
    let shown = path.display().to_string();
    let damaged = |message: String| StoreError::Damaged {
        path: shown.clone(),
        message,
    };
    let opened = quietly(|| builder.create(path)).map_err(&damaged)?;
    let db = match opened {
        Ok(db) => db,
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(message))) => {
            return Err(damaged(message));
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::Open {
                path: shown,
                message: "it is in use by another wasmnode process".into(),
            });
        }
        Err(e) => {
            return Err(StoreError::Open {
                path: shown,
                message: e.to_string(),
            });
        }
    };
    quietly(|| upgrade(&db))
        .map_err(&damaged)?
        .map_err(|e| damaged(e.to_string()))?;
    Ok(db)
}

/// A record as version 1 stored it: request and output inside the record.
#[derive(Deserialize)]
struct RecordV1 {
    seq: u64,
    request: JobRequest,
    spec_hash: String,
    state: JobState,
    submitted_at_ms: u64,
    started_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
    attempts: u32,
    result: Option<ResultV1>,
    #[serde(default)]
    origin: Option<Origin>,
    #[serde(default)]
    callback: Option<super::CallbackStatus>,
}

#[derive(Deserialize)]
struct ResultV1 {
    #[serde(default)]
    output: serde_json::Value,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(flatten)]
    rest: JobResult,
}

/// Bytes of version 1 records converted per commit.
const UPGRADE_CHUNK_BYTES: usize = 32 << 20;

/// Creates the tables of a new store, or upgrades a version 1 store (one
/// record holding request and output) to separate requests and outputs.
fn upgrade(db: &Database) -> Result<(), redb::Error> {
    let current = {
        let txn = db.begin_read()?;
        match txn.open_table(META) {
            Ok(meta) => meta.get(SCHEMA_KEY)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        }
    };
    if current.as_deref() == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let txn = db.begin_write()?;
    tables::create_all(&txn)?;
    txn.commit()?;
    let mut after: Option<String> = None;
    let mut upgraded = 0usize;
    loop {
        let txn = db.begin_write()?;
        let mut bytes = 0;
        let mut last = None;
        {
            let mut jobs = txn.open_table(JOBS)?;
            let pending: Vec<(String, Vec<u8>)> = {
                let range = match &after {
                    Some(key) => jobs.range::<&str>((
                        std::ops::Bound::Excluded(key.as_str()),
                        std::ops::Bound::Unbounded,
                    ))?,
                    None => jobs.range::<&str>(..)?,
                };
                let mut pending = Vec::new();
                for entry in range {
                    let (key, value) = entry?;
                    bytes += value.value().len();
                    pending.push((key.value().to_string(), value.value().to_vec()));
                    if bytes >= UPGRADE_CHUNK_BYTES {
                        break;
                    }
                }
                pending
            };
            for (id, value) in pending {
                last = Some(id.clone());
                if serde_json::from_slice::<JobRecord>(&value).is_ok() {
                    continue;
                }
                let mut de = serde_json::Deserializer::from_slice(&value);
                de.disable_recursion_limit();
                let old = match RecordV1::deserialize(&mut de) {
                    Ok(old) => old,
                    Err(e) => {
                        tracing::error!(job_id = %id, error = %e, "a job record of an older version cannot be read; it is left as it was");
                        continue;
                    }
                };
                let (canonical, _) = JobRecord::canonical(&old.request);
                let mut record = JobRecord::queued(&old.request, &canonical, old.seq, 0);
                record.spec_hash = old.spec_hash;
                record.state = old.state;
                record.submitted_at_ms = old.submitted_at_ms;
                record.started_at_ms = old.started_at_ms;
                record.finished_at_ms = old.finished_at_ms;
                record.attempts = old.attempts;
                record.origin = old.origin;
                record.callback = old.callback;
                tables::apply(&txn, &Write::Request(id.clone(), canonical))?;
                if let Some(result) = old.result {
                    let output = JobOutput {
                        output: result.output,
                        logs: Logs {
                            stdout: result.stdout,
                            stderr: result.stderr,
                        },
                        receipt: None,
                    };
                    let output = Write::Output(id.clone(), Arc::new(output.encode()));
                    tables::apply(&txn, &output)?;
                    record.result = Some(result.rest);
                }
                let encoded = serde_json::to_vec(&record).expect("records serialize");
                jobs.insert(id.as_str(), encoded.as_slice())?;
                if !record.state.is_terminal() {
                    txn.open_table(tables::ACTIVE)?
                        .insert(record.seq, id.as_str())?;
                }
                upgraded += 1;
            }
        }
        let done = last.is_none();
        if done {
            txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        }
        txn.commit()?;
        if done {
            break;
        }
        after = last;
    }
    if upgraded > 0 {
        tracing::info!(
            jobs = upgraded,
            "upgraded the job store to keep requests and outputs apart from job records"
        );
    }
    Ok(())
}
