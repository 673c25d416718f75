//! The group-commit writer: one thread owns the write transactions and
//! commits every write that queued up while the previous commit was syncing
//! in one transaction, so many concurrent submissions share one fsync.

use super::StoreError;
use super::tables::{self, Write};
use redb::Database;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 4096;

/// A batch of writes from one caller and where to report the commit.
pub struct Request {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
    /// Told once the writes are durable (or failed).
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// Runs until every sender is dropped.
pub fn run(db: Arc<Database>, requests: Receiver<Request>) {
    loop {
        let first = match requests.recv_timeout(std::time::Duration::from_secs(3600)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let result = commit(&db, &batch).map_err(|e| StoreError::Write(e.to_string()));
        for request in batch {
            let _ = request.done.send(result.clone());
        }
    }
}

fn commit(db: &Database, batch: &[Request]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    for request in batch {
        for write in &request.writes {
            tables::apply(&txn, write)?;
        }
    }
    txn.commit()?;
    Ok(())
}
