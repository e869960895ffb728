//! Database helpers shared by the services.

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::error::{ApiError, ApiResult};

/// SQLite lets one transaction write at a time, and a writer that finds the
/// lock taken sleeps and retries in steps of 1–100 ms, idling the database
/// while others wait. The process's writers therefore share one connection of
/// their own, which they take in arrival order (the pool is fair), so they reach
/// SQLite one by one and never wait behind readers for a connection.
/// PostgreSQL locks rows: no queue.
#[derive(Clone)]
pub enum WriteQueue {
    Sqlite(DatabaseConnection),
    RowLocks,
}

/// Begins a transaction that is going to write, after the writers queued
/// before it. On SQLite it takes the write lock at BEGIN (IMMEDIATE), so a
/// writer never fails upgrading from reading to writing; PostgreSQL ignores it.
pub async fn begin_write(db: &DatabaseConnection, queue: &WriteQueue) -> Result<DatabaseTransaction, DbErr> {
    let writer = match queue {
        WriteQueue::Sqlite(writer) => writer,
        WriteQueue::RowLocks => db,
    };
    writer
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
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

/// What the services' unit tests share.
#[cfg(test)]
pub mod testing {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database, EntityTrait, QueryTrait, Select, Statement};

    use super::*;

    /// An in-memory SQLite database with every migration applied.
    pub async fn migrated_sqlite() -> DatabaseConnection {
        let db = Database::connect("sqlite::memory:").await.expect("connect");
        Migrator::up(&db, None).await.expect("migrate");
        db
    }

    /// SQLite's plan for `select`, a step per row: its parent step (0 at the
    /// top) and what it does.
    pub async fn query_plan<E: EntityTrait>(db: &impl ConnectionTrait, select: Select<E>) -> Vec<(i64, String)> {
        let query = select.build(db.get_database_backend());
        let explain = Statement::from_sql_and_values(
            db.get_database_backend(),
            format!("EXPLAIN QUERY PLAN {}", query.sql),
            query.values.map(|values| values.0).unwrap_or_default(),
        );
        let rows = db.query_all_raw(explain).await.expect("explain");
        rows.iter()
            .map(|row| (row.try_get("", "parent").expect("parent"), row.try_get("", "detail").expect("detail")))
            .collect()
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
        let queue = WriteQueue::Sqlite(Database::connect("sqlite::memory:").await.expect("writer"));
        let txn = begin_write(&db, &queue).await.expect("first writer");
        let second = tokio::spawn({
            let (db, queue) = (db.clone(), queue.clone());
            async move { begin_write(&db, &queue).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second writer waits while the first holds the connection");
        txn.commit().await.expect("commit");
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second writer proceeds")
            .expect("task")
            .expect("second writer");
    }
}
