//! Database helpers shared by the services.

use sea_orm::{DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait};

/// Begins a transaction that is going to write. On SQLite it takes the write
/// lock at BEGIN (IMMEDIATE), so two writers queue on the busy timeout instead
/// of one failing when it upgrades from reading to writing; PostgreSQL ignores it.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
