//! Database helpers shared by the services.

use std::sync::Arc;

use sea_orm::{
    DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{ApiError, ApiResult};

/// SQLite lets one transaction write at a time, and a writer that finds the
/// lock taken sleeps and retries in steps of 1–100 ms, idling the database
/// while others wait. The process's writers therefore queue here, in arrival
/// order, and reach SQLite one by one. PostgreSQL locks rows: no queue.
#[derive(Clone, Default)]
pub struct WriteQueue(Option<Arc<Mutex<()>>>);

impl WriteQueue {
    pub fn for_database(db: &DatabaseConnection) -> Self {
        match db.get_database_backend() {
            DatabaseBackend::Sqlite => Self(Some(Arc::default())),
            _ => Self(None),
        }
    }
}

/// A writer's place at the head of the queue, held until its transaction ends.
pub struct WriteTurn {
    _held: Option<OwnedMutexGuard<()>>,
}

/// Begins a transaction that is going to write, after the writers queued
/// before it. On SQLite it takes the write lock at BEGIN (IMMEDIATE), so a
/// writer never fails upgrading from reading to writing; PostgreSQL ignores it.
///
/// Bind the turn before the transaction (`let (_turn, txn) = …`): the
/// transaction is then dropped, and rolled back, before the turn passes on.
pub async fn begin_write(
    db: &DatabaseConnection,
    queue: &WriteQueue,
) -> Result<(WriteTurn, DatabaseTransaction), DbErr> {
    let turn = match &queue.0 {
        Some(queue) => Some(queue.clone().lock_owned().await),
        None => None,
    };
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    Ok((WriteTurn { _held: turn }, txn))
}

/// CONFLICT when the caller acted on a version of `what` other than the
/// current one, i.e. someone changed it meanwhile.
pub fn require_version(what: &str, current: i32, expected: Option<i32>) -> ApiResult<()> {
    match expected {
        Some(expected) if expected != current => {
            Err(ApiError::conflict(format!("{what} changed: now at version {current}, not {expected}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::Database;

    use super::*;

    #[tokio::test]
    async fn sqlite_writers_wait_for_the_turn_before_them() {
        let db = Database::connect("sqlite::memory:").await.expect("connect");
        let queue = WriteQueue::for_database(&db);
        let (turn, txn) = begin_write(&db, &queue).await.expect("first writer");
        let second = tokio::spawn({
            let (db, queue) = (db.clone(), queue.clone());
            async move { begin_write(&db, &queue).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second writer waits while the first holds its turn");
        txn.commit().await.expect("commit");
        drop(turn);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second writer proceeds")
            .expect("task")
            .expect("second writer");
    }
}
