//! `wasmnode store check` and `wasmnode store repair`: verify every page of
//! a stopped node's store, and bring a damaged one back with every job that
//! can still be read (the damaged file is kept beside it).

use super::StoreError;
use super::open::{builder, open_checked, open_db, quietly};
use super::records::{JobRecord, JobResult, JobState, now_ms};
use super::tables::{self, JOBS, LOGS, OUTBOX, OUTPUTS, REQUESTS, Write};
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a store holds, by state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    /// Jobs by state name.
    pub jobs: BTreeMap<&'static str, usize>,
    /// Reports not yet delivered.
    pub pending_reports: usize,
}

impl std::fmt::Display for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.jobs.values().sum();
        write!(f, "{total} jobs")?;
        if total > 0 {
            let by_state: Vec<String> = self.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
            write!(f, " ({})", by_state.join(", "))?;
        }
        write!(f, ", {} reports pending", self.pending_reports)
    }
}

/// Verifies every page of the store at `path` (the node must be stopped);
/// redb repairs in place what it can (the answer says whether it did).
pub fn check(path: &Path) -> Result<(Census, bool), StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    let (db, repaired) = open_checked(path)?;
    let census = census(&db).map_err(|e| StoreError::Damaged {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((census, repaired))
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// The store was sound, or redb repaired it in place.
    InPlace {
        /// What it holds.
        census: Census,
        /// Whether redb repaired anything.
        repaired: bool,
    },
    /// The store was rebuilt from what could be read; the damaged file was
    /// moved to `moved_to`.
    Rebuilt {
        /// What the new store holds.
        census: Census,
        /// Where the damaged file is now.
        moved_to: PathBuf,
        /// Unfinished jobs whose request was lost (recorded as failed).
        lost_requests: usize,
    },
}

/// Repairs the store at `path` (the node must be stopped): in place when
/// redb can, else by moving the file aside and copying every job, request,
/// output and pending report that can still be read into a new store.
pub fn repair(path: &Path) -> Result<Repaired, StoreError> {
    match open_checked(path) {
        Ok((db, repaired)) => {
            return census(&db)
                .map(|census| Repaired::InPlace { census, repaired })
                .map_err(|e| StoreError::Read(e.to_string()));
        }
        Err(StoreError::Damaged { .. }) => {}
        Err(e) => return Err(e),
    }
    let moved_to = path.with_extension(format!("redb.damaged-{}", now_ms()));
    std::fs::rename(path, &moved_to).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: format!("cannot move it aside: {e}"),
    })?;
    tracing::warn!(damaged = %moved_to.display(), "moved the damaged store aside; copying what can be read");
    let fresh = open_db(path)?;
    let lost_requests = salvage(&moved_to, &fresh);
    let census = census(&fresh).map_err(|e| StoreError::Read(e.to_string()))?;
    Ok(Repaired::Rebuilt {
        census,
        moved_to,
        lost_requests,
    })
}

fn census(db: &Database) -> Result<Census, redb::Error> {
    let txn = db.begin_read()?;
    let mut census = Census::default();
    for entry in txn.open_table(JOBS)?.iter()? {
        let (_, value) = entry?;
        if let Some(record) = tables::decode(value.value()) {
            *census.jobs.entry(record.state.as_str()).or_default() += 1;
        }
    }
    census.pending_reports = txn.open_table(OUTBOX)?.iter()?.count();
    Ok(census)
}

/// Copies what `damaged` still yields into `fresh`; returns how many
/// unfinished jobs lost their request.
fn salvage(damaged: &Path, fresh: &Database) -> usize {
    let old = match quietly(|| builder(false).create(damaged)) {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "nothing could be read from the damaged store");
            return 0;
        }
        Err(panic) => {
            tracing::warn!(%panic, "nothing could be read from the damaged store");
            return 0;
        }
    };
    for table in [REQUESTS, OUTPUTS, LOGS] {
        copy(&old, fresh, table, |txn, key, value| {
            txn.open_table(table)?.insert(key.value(), value.value())?;
            Ok(())
        });
    }
    copy(&old, fresh, OUTBOX, |txn, key, value| {
        txn.open_table(OUTBOX)?.insert(key.value(), value.value())?;
        Ok(())
    });
    let mut lost = 0;
    copy(&old, fresh, JOBS, |txn, key, value| {
        let Some(mut record) = tables::decode(value.value()) else {
            return Ok(());
        };
        let has_request = txn.open_table(REQUESTS)?.get(key.value())?.is_some();
        if !record.state.is_terminal() && !has_request {
            lost += 1;
            fail_lost(&mut record);
        }
        tables::apply(txn, &Write::Put(Box::new(record)))
    });
    lost
}

fn fail_lost(record: &mut JobRecord) {
    record.state = JobState::Failed;
    record.finished_at_ms = Some(now_ms());
    record.result = Some(JobResult::error(
        super::ErrorCode::StoreDamaged,
        "the job's request was lost when the damaged job store was repaired",
    ));
}

/// Entries copied per commit while salvaging.
const SALVAGE_CHUNK: usize = 256;

/// Copies the entries of `table` from `old` into `fresh` through `put`,
/// until the first entry that cannot be read; what was copied stays.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    old: &Database,
    fresh: &Database,
    table: redb::TableDefinition<K, V>,
    mut put: impl FnMut(
        &redb::WriteTransaction,
        redb::AccessGuard<'_, K>,
        redb::AccessGuard<'_, V>,
    ) -> Result<(), redb::Error>,
) {
    let name = table.name().to_string();
    let copied = (|| -> Result<usize, String> {
        let read = quietly(|| old.begin_read())?.map_err(|e| e.to_string())?;
        let source = quietly(|| read.open_table(table))?.map_err(|e| e.to_string())?;
        let mut entries = quietly(|| source.iter())?.map_err(|e| e.to_string())?;
        let mut write = fresh.begin_write().map_err(|e| e.to_string())?;
        let (mut copied, mut pending) = (0, 0);
        loop {
            let (key, value) = match quietly(|| entries.next()) {
                Ok(Some(Ok(entry))) => entry,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(table = %name, error = %e, "stopped at an unreadable entry");
                    break;
                }
                Err(panic) => {
                    tracing::warn!(table = %name, %panic, "stopped at an unreadable entry");
                    break;
                }
            };
            put(&write, key, value).map_err(|e| e.to_string())?;
            copied += 1;
            pending += 1;
            if pending == SALVAGE_CHUNK {
                write.commit().map_err(|e| e.to_string())?;
                write = fresh.begin_write().map_err(|e| e.to_string())?;
                pending = 0;
            }
        }
        write.commit().map_err(|e| e.to_string())?;
        Ok(copied)
    })();
    match copied {
        Ok(copied) => tracing::info!(table = %name, copied, "salvaged"),
        Err(e) => tracing::warn!(table = %name, error = %e, "could not salvage"),
    }
}
