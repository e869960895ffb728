//! Database helpers shared by the services.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    SqliteTransactionMode, Statement, StatementBuilder, TransactionOptions, TransactionTrait,
    sea_query::{
        Alias, Asterisk, CommonTableExpression, DynIden, Expr, IntoIden, IntoTableRef, Query, SelectStatement,
        SubQueryStatement, WithClause, WithQuery,
    },
    sqlx,
};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use crate::error::{ApiError, ApiResult};

/// SQLite lets one transaction write at a time, and a writer that finds the
/// lock taken sleeps and retries in steps of 1–100 ms, idling the database
/// while others wait. The process's writers therefore share one connection of
/// their own, which they take in arrival order (the lock is fair), so they
/// reach SQLite one by one and never wait behind readers for a connection.
///
/// Each commit on SQLite writes the pages it changed to the log and waits for
/// the disk (`fsync`). Writers queued behind one another therefore share one
/// commit: each writes inside a savepoint of one open transaction, which is
/// committed once every writer that was waiting when the first finished has
/// had its turn. A writer is answered only after that commit.
///
/// Several instances on one SQLite file meet at its write lock. SQLite's own
/// wait sleeps longer after each try (up to 100 ms), while the instance
/// holding the lock takes it again the moment its next writer arrives; so a
/// writer's connection waits 1 ms at a time, and its BEGIN is retried until
/// [`LOCK_WAIT`] runs out.
///
/// PostgreSQL locks rows: no queue, one commit per writer.
#[derive(Clone)]
pub enum WriteQueue {
    Sqlite(Arc<Mutex<SharedCommit>>),
    /// The pool each writer takes its own transaction from.
    RowLocks(DatabaseConnection),
}

impl WriteQueue {
    /// The queue for writers on SQLite's writer connection `writer`, which
    /// leaves checkpoints to the pool `checkpointer` (see [`checkpoints`]).
    pub fn sqlite(writer: DatabaseConnection, checkpointer: sqlx::SqlitePool) -> Self {
        let queue = Arc::new(Mutex::new(SharedCommit {
            writer,
            open: None,
            waiting: Vec::new(),
            commit_queued: false,
            release_pending: None,
            left_open: None,
        }));
        tokio::spawn(checkpoints(Arc::downgrade(&queue), checkpointer));
        Self::Sqlite(queue)
    }

    /// Runs `work` in a transaction that writes, after the writers queued
    /// before it, and commits it if `work` succeeds. Either way it returns
    /// only once the writes `work` could see are committed: a writer told of
    /// a conflict finds its cause when it reads again, and one that succeeded
    /// is answered only when its writes are durable.
    pub async fn write<T>(&self, work: impl AsyncFnOnce(&Write) -> ApiResult<T>) -> ApiResult<T> {
        let txn = self.begin().await?;
        match work(&txn).await {
            Ok(done) => {
                txn.commit().await?;
                Ok(done)
            }
            Err(err) => {
                txn.abandon().await;
                Err(err)
            }
        }
    }

    /// Where one statement that writes may run by itself, committed as it
    /// ends: PostgreSQL's pool. A statement is atomic on its own, so it needs
    /// no BEGIN and COMMIT, two round trips fewer. SQLite's writers take their
    /// turns instead.
    pub fn alone(&self) -> Option<&DatabaseConnection> {
        match self {
            WriteQueue::RowLocks(db) => Some(db),
            WriteQueue::Sqlite(_) => None,
        }
    }

    /// On SQLite the shared transaction takes the write lock at BEGIN
    /// (IMMEDIATE), so a writer never fails upgrading from reading to writing.
    async fn begin(&self) -> Result<Write, DbErr> {
        let queue = match self {
            WriteQueue::Sqlite(queue) => queue,
            WriteQueue::RowLocks(db) => return Ok(Write::Own(db.begin().await?)),
        };
        let mut shared = queue.clone().lock_owned().await;
        if !shared.undo_savepoint_left_open().await {
            shared.commit().await;
        }
        if shared.open.is_none() {
            shared.open = Some(begin_immediate(&shared.writer).await?);
        }
        let releases = shared.release_pending.take();
        Ok(Write::Turn(Turn {
            shared,
            queue: queue.clone(),
            releases,
            savepoint_state: AtomicU8::new(savepoint_state::UNOPENED),
        }))
    }
}

/// How often SQLite's log is copied back into its database file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// SQLite's commits append to its log (WAL), whose pages a checkpoint
/// copies back into the database file, waiting for the disk. By default the
/// commit that takes the log past 1,000 pages runs it, on the writers'
/// connection, and every writer queued behind waits for it. The writers'
/// connection runs none (its `wal_autocheckpoint` is 0): this task runs them
/// on `pool`, beside the writers, for as long as the queue lives. A passive
/// checkpoint waits for no one; what it cannot copy yet, the next one does.
/// It goes to the pool itself, not through SeaORM: upkeep, which a
/// connection's metric callback, counting the service's statements, skips.
async fn checkpoints(queue: Weak<Mutex<SharedCommit>>, pool: sqlx::SqlitePool) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if queue.strong_count() == 0 {
            return;
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %err, "checkpoint failed");
        }
    }
}

/// How long a statement waits for a lock another connection holds.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long SQLite's writer connection waits for the write lock: briefly, so
/// that [`begin_immediate`] tries again at once rather than after SQLite's
/// ever longer sleeps.
pub const WRITER_LOCK_WAIT: Duration = Duration::from_millis(1);

/// Begins the shared transaction, taking the write lock, and retries while
/// another process holds it, for up to [`LOCK_WAIT`].
async fn begin_immediate(writer: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let mode =
        TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let tried = tokio::time::Instant::now();
        match writer.begin_with_options(mode).await {
            Err(err) if is_busy(&err) && tried < deadline => {
                // Should SQLite answer busy without waiting, wait here instead.
                tokio::time::sleep_until(tried + Duration::from_millis(1)).await;
            }
            begun => return begun,
        }
    }
}

/// SQLITE_BUSY, with any of its extended codes: another connection holds the lock.
fn is_busy(err: &DbErr) -> bool {
    const SQLITE_BUSY: i32 = 5;
    let (DbErr::Conn(RuntimeErr::SqlxError(err))
    | DbErr::Exec(RuntimeErr::SqlxError(err))
    | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return false;
    };
    let code = match err.as_ref() {
        sqlx::Error::Database(database) => database.code().and_then(|code| code.parse::<i32>().ok()),
        _ => None,
    };
    code.is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// A transaction that is going to write.
pub enum Write {
    /// PostgreSQL: the writer's own transaction.
    Own(DatabaseTransaction),
    /// SQLite: a savepoint within the shared transaction, held for the
    /// writer's turn.
    Turn(Turn),
}

/// The name of a writer's savepoint on SQLite's writer connection.
///
/// Every round trip to that connection holds up the writers queued behind,
/// so a writer's savepoint is opened by its first statement, in the same
/// round trip; and that of a writer that succeeded is released by the next
/// writer's first statement, or by the commit. The two names take turns, so
/// that the savepoint a writer opens is never the one it releases: should
/// its request be cancelled while its first statement is in flight, undoing
/// its own savepoint can reach nothing of the writer before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Savepoint {
    Even,
    Odd,
}

impl Savepoint {
    /// The savepoint a turn opens, and the SQL that opens it, releasing
    /// first the savepoint of the writer before if it is still open.
    fn after(pending: Option<Savepoint>) -> (Self, &'static str) {
        match pending {
            None => (Savepoint::Even, "SAVEPOINT writer_even;\n"),
            Some(Savepoint::Even) => (Savepoint::Odd, "RELEASE writer_even;\nSAVEPOINT writer_odd;\n"),
            Some(Savepoint::Odd) => (Savepoint::Even, "RELEASE writer_odd;\nSAVEPOINT writer_even;\n"),
        }
    }

    /// Undoes this savepoint's writes and closes it.
    fn undo(self) -> &'static str {
        match self {
            Savepoint::Even => "ROLLBACK TO writer_even; RELEASE writer_even",
            Savepoint::Odd => "ROLLBACK TO writer_odd; RELEASE writer_odd",
        }
    }
}

/// Where a turn's savepoint stands (`Turn::savepoint_state`).
mod savepoint_state {
    /// No statement has run: the savepoint is not open.
    pub const UNOPENED: u8 = 0;
    /// The first statement, which opens it, is on its way: should the turn
    /// end now, whether it was opened is unknown.
    pub const OPENING: u8 = 1;
    /// The first statement has answered; should it have failed before the
    /// savepoint, undoing it fails and changes nothing.
    pub const OPEN: u8 = 2;
    /// Undone; or kept, for the next writer's first statement or the commit
    /// to release.
    pub const CLOSED: u8 = 3;
}

/// A savepoint left open when its writer's turn ended: the request was
/// cancelled, or undoing it failed. Its writes are undone before anyone
/// else writes or commits.
#[derive(Clone, Copy)]
struct LeftOpen {
    savepoint: Savepoint,
    /// Its writer was cancelled while its first statement was on its way.
    /// If undoing it fails, that statement never opened it, and may or may
    /// not have released the savepoint of the writer before: the shared
    /// transaction is then committed, so that the next writer begins with
    /// none open.
    maybe_unopened: bool,
}

impl Write {
    async fn commit(self) -> Result<(), DbErr> {
        let mut turn = match self {
            Write::Own(txn) => return txn.commit().await,
            Write::Turn(turn) => turn,
        };
        let state = turn.savepoint_state.get_mut();
        match *state {
            savepoint_state::OPEN => {
                *state = savepoint_state::CLOSED;
                turn.shared.release_pending = Some(turn.savepoint());
            }
            // A statement dropped before it answered leaves the savepoint's
            // state unknown; the turn's end undoes it.
            savepoint_state::OPENING => {
                let _ = turn.end().await;
                return Err(DbErr::Custom("a writer's first statement did not answer".into()));
            }
            _ => {}
        }
        turn.end().await.map_err(DbErr::Custom)
    }

    /// Undoes this writer's writes, keeping those of the writers before it.
    async fn abandon(self) {
        match self {
            Write::Own(txn) => {
                // The writer answers with its own error; PostgreSQL ends a
                // transaction whose connection fails in any case.
                let _ = txn.rollback().await;
            }
            Write::Turn(mut turn) => {
                if *turn.savepoint_state.get_mut() == savepoint_state::OPEN
                    && let Ok(open) = turn.transaction()
                    && open.execute_unprepared(turn.savepoint().undo()).await.is_ok()
                {
                    *turn.savepoint_state.get_mut() = savepoint_state::CLOSED;
                }
                // Otherwise the turn's end leaves it to be undone before the
                // next writer's turn. The writer answers with its own error,
                // whatever the commit's outcome.
                let _ = turn.end().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Write {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Write::Own(txn) => txn.get_database_backend(),
            Write::Turn(_) => DbBackend::Sqlite,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Write::Own(txn) => txn.execute_raw(stmt).await,
            Write::Turn(turn) => turn.run(stmt, async |txn, stmt| txn.execute_raw(stmt).await).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Write::Own(txn) => txn.execute_unprepared(sql).await,
            Write::Turn(turn) => {
                let stmt = Statement::from_string(DbBackend::Sqlite, sql);
                turn.run(stmt, async |txn, stmt| txn.execute_unprepared(&stmt.sql).await).await
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Write::Own(txn) => txn.query_one_raw(stmt).await,
            Write::Turn(turn) => turn.run(stmt, async |txn, stmt| txn.query_one_raw(stmt).await).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Write::Own(txn) => txn.query_all_raw(stmt).await,
            Write::Turn(turn) => turn.run(stmt, async |txn, stmt| txn.query_all_raw(stmt).await).await,
        }
    }
}

/// The writers' connection and the transaction they are writing into.
pub struct SharedCommit {
    writer: DatabaseConnection,
    open: Option<DatabaseTransaction>,
    /// Writers whose turn has ended, waiting for the commit.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
    /// A task is queued for the turn after the writers now waiting, to commit.
    commit_queued: bool,
    /// The savepoint of the last writer, which succeeded: the next writer's
    /// first statement releases it, or the commit does.
    release_pending: Option<Savepoint>,
    left_open: Option<LeftOpen>,
}

impl SharedCommit {
    /// Undoes the writes of a savepoint a writer left open. False if that
    /// failed, and the shared transaction must be committed before anyone
    /// else writes: SQLite may have rolled it back on the error that ended
    /// the turn, or the savepoint was never opened (see
    /// [`LeftOpen::maybe_unopened`]).
    async fn undo_savepoint_left_open(&mut self) -> bool {
        let Some(left) = self.left_open.take() else { return true };
        let Some(open) = &self.open else { return true };
        match open.execute_unprepared(left.savepoint.undo()).await {
            Ok(_) => true,
            Err(_) if left.maybe_unopened => false,
            Err(err) => {
                tracing::warn!(error = %err, "undoing a writer's savepoint failed");
                false
            }
        }
    }

    /// Commits the open transaction, savepoints and all, and tells the
    /// writers waiting for it.
    async fn commit(&mut self) {
        self.undo_savepoint_left_open().await;
        self.release_pending = None;
        let Some(open) = self.open.take() else { return };
        let outcome = open.commit().await.map_err(|err| {
            tracing::error!(error = %err, writers = self.waiting.len(), "shared commit failed");
            err.to_string()
        });
        for writer in self.waiting.drain(..) {
            // A writer that gave up waiting (its request was cancelled) needs no answer.
            let _ = writer.send(outcome.clone());
        }
    }
}

/// A writer's turn on SQLite's writer connection. Ending it, however it ends,
/// makes sure the transaction it wrote into gets committed.
pub struct Turn {
    shared: OwnedMutexGuard<SharedCommit>,
    queue: Arc<Mutex<SharedCommit>>,
    /// The savepoint of the writer before, which this writer's first
    /// statement releases; it gives this writer's (`Savepoint::after`).
    releases: Option<Savepoint>,
    /// One of [`savepoint_state`]'s.
    savepoint_state: AtomicU8,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (savepoint, releases) = (self.savepoint(), self.releases);
        match *self.savepoint_state.get_mut() {
            // No statement went out: the savepoint before is still to release.
            savepoint_state::UNOPENED => self.shared.release_pending = releases,
            savepoint_state::OPENING => {
                self.shared.left_open = Some(LeftOpen { savepoint, maybe_unopened: true });
            }
            savepoint_state::OPEN => self.shared.left_open = Some(LeftOpen { savepoint, maybe_unopened: false }),
            _ => {}
        }
        if self.shared.open.is_some() && !self.shared.commit_queued {
            // The commit takes the turn after the writers already queued, so
            // that they join this transaction.
            self.shared.commit_queued = true;
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let mut shared = queue.lock().await;
                shared.commit_queued = false;
                shared.commit().await;
            });
        }
    }
}

impl Turn {
    /// The shared transaction, open for the whole turn.
    fn transaction(&self) -> Result<&DatabaseTransaction, DbErr> {
        self.shared.open.as_ref().ok_or_else(|| DbErr::Custom("the shared transaction is not open".into()))
    }

    /// The savepoint this writer's writes go into.
    fn savepoint(&self) -> Savepoint {
        Savepoint::after(self.releases).0
    }

    /// Runs `stmt` with `run` in the shared transaction; the writer's first
    /// statement opens its savepoint.
    async fn run<T>(
        &self,
        mut stmt: Statement,
        run: impl AsyncFnOnce(&DatabaseTransaction, Statement) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let txn = self.transaction()?;
        let opens = self
            .savepoint_state
            .compare_exchange(savepoint_state::UNOPENED, savepoint_state::OPENING, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if opens {
            stmt.sql = format!("{}{}", Savepoint::after(self.releases).1, stmt.sql);
        }
        let answer = run(txn, stmt).await;
        if opens {
            self.savepoint_state.store(savepoint_state::OPEN, Ordering::Relaxed);
        }
        answer
    }

    /// Ends the turn and waits for the commit of the shared transaction,
    /// which holds what the writers before it left, plus this writer's
    /// writes unless they were undone.
    async fn end(mut self) -> Result<(), String> {
        let (committed, outcome) = oneshot::channel();
        self.shared.waiting.push(committed);
        drop(self);
        outcome.await.unwrap_or_else(|_| Err("the shared commit was abandoned".into()))
    }
}

/// One PostgreSQL statement that writes a row and the rows that go with it,
/// as data-modifying `WITH` clauses: `WITH written AS (INSERT or UPDATE …
/// RETURNING *), … SELECT * FROM written`. The rows that go with it are
/// inserted from [`written`], so they can carry the new row's id; PostgreSQL
/// runs every such clause to completion, though the answer reads none.
pub struct WrittenWith {
    clauses: WithClause,
    inserts: usize,
}

const WRITTEN: &str = "written";

/// A column of the row being written, for the rows that go with it.
pub fn written(column: impl IntoIden) -> Expr {
    Expr::col((Alias::new(WRITTEN), column))
}

/// `SELECT column FROM written`.
pub fn select_written(column: impl IntoIden) -> SelectStatement {
    Query::select().expr(written(column)).from(Alias::new(WRITTEN)).take()
}

impl WrittenWith {
    /// `written` must return the row's columns (`RETURNING *`). When it
    /// writes no row, neither do the others.
    pub fn new(written: impl Into<SubQueryStatement>) -> Self {
        let mut clauses = WithClause::new();
        clauses.cte(clause(Alias::new(WRITTEN), written));
        Self { clauses, inserts: 0 }
    }

    /// Adds `INSERT INTO table (columns) SELECT values FROM written`.
    pub fn insert<C: IntoIden>(mut self, table: impl IntoTableRef, row: impl IntoIterator<Item = (C, Expr)>) -> Self {
        let (columns, values): (Vec<DynIden>, Vec<Expr>) =
            row.into_iter().map(|(column, value)| (column.into_iden(), value)).unzip();
        let insert = Query::insert()
            .into_table(table)
            .columns(columns)
            .select_from(Query::select().exprs(values).from(Alias::new(WRITTEN)).take())
            .expect("as many values as columns: they were unzipped from one list")
            .take();
        self.inserts += 1;
        self.clauses.cte(clause(Alias::new(format!("with_{}", self.inserts)), insert));
        self
    }

    /// The query, answering with the written row.
    pub fn query(self) -> WithQuery {
        let answer = Query::select().column(Asterisk).from(Alias::new(WRITTEN)).take();
        // Built in place: sea-query's builders hand back `&mut`, and
        // `to_owned()` (as in `WithClause::query`) would copy the whole tree.
        let mut query = WithQuery::new();
        query.with_clause(self.clauses).query(answer);
        query
    }

    /// The query's statement.
    pub fn statement(self) -> Statement {
        StatementBuilder::build(&self.query(), &DbBackend::Postgres)
    }
}

/// `first` then `then`, as one string of statements for one round trip
/// (SQLite). Their placeholders are unnumbered, so `then`'s take the values
/// after `first`'s.
pub fn joined(first: Statement, then: Statement) -> Statement {
    let mut values = first.values.map(|values| values.0).unwrap_or_default();
    values.extend(then.values.map(|values| values.0).unwrap_or_default());
    Statement::from_sql_and_values(first.db_backend, format!("{};\n{}", first.sql, then.sql), values)
}

/// `name AS (query)`.
fn clause(name: Alias, query: impl Into<SubQueryStatement>) -> CommonTableExpression {
    let mut clause = CommonTableExpression::new();
    clause.query(query).table_name(name);
    clause
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
    use std::{path::Path, time::Duration};

    use futures_util::future::BoxFuture;
    use sea_orm::{ConnectOptions, Database, sqlx::sqlite::SqliteJournalMode};

    use super::*;

    async fn connect(path: &Path) -> DatabaseConnection {
        let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
        options.max_connections(1).sqlx_logging(false).map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal).busy_timeout(Duration::from_secs(5))
        });
        Database::connect(options).await.expect("connect")
    }

    /// A database file with a table of numbers, a connection that reads what
    /// is committed, and the queue of writers.
    async fn numbers() -> (tempfile::TempDir, DatabaseConnection, WriteQueue) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("numbers.db");
        let reader = connect(&path).await;
        reader.execute_unprepared("CREATE TABLE number (n INTEGER PRIMARY KEY)").await.expect("create table");
        let queue = WriteQueue::sqlite(connect(&path).await, reader.get_sqlite_connection_pool().clone());
        (dir, reader, queue)
    }

    async fn insert(txn: &Write, n: i64) -> Result<ExecResult, DbErr> {
        txn.execute_unprepared(&format!("INSERT INTO number VALUES ({n})")).await
    }

    async fn committed(reader: &DatabaseConnection) -> Vec<i64> {
        let rows = reader
            .query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT n FROM number ORDER BY n"))
            .await
            .expect("read");
        rows.iter().map(|row| row.try_get("", "n").expect("n")).collect()
    }

    async fn finished<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("finishes").expect("task")
    }

    /// Starts a writer that runs `work` in its turn.
    fn writer(
        queue: &WriteQueue,
        work: impl for<'t> FnOnce(&'t Write) -> BoxFuture<'t, ApiResult<()>> + Send + 'static,
    ) -> tokio::task::JoinHandle<ApiResult<()>> {
        let queue = queue.clone();
        tokio::spawn(async move { queue.write(async move |txn| work(txn).await).await })
    }

    /// Starts a writer that inserts `n`, then holds its turn until told to go on.
    fn holding(queue: &WriteQueue, n: i64) -> (tokio::task::JoinHandle<ApiResult<()>>, oneshot::Sender<()>) {
        let (go, may_end) = oneshot::channel::<()>();
        let writer = writer(queue, move |txn| {
            Box::pin(async move {
                insert(txn, n).await?;
                may_end.await.expect("go");
                Ok(())
            })
        });
        (writer, go)
    }

    /// Starts a writer that inserts `numbers` in turn.
    fn inserting(queue: &WriteQueue, numbers: &'static [i64]) -> tokio::task::JoinHandle<ApiResult<()>> {
        writer(queue, move |txn| {
            Box::pin(async move {
                for &n in numbers {
                    insert(txn, n).await?;
                }
                Ok(())
            })
        })
    }

    /// Lets the spawned writers reach the queue, or their next step.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    #[test]
    fn a_row_and_the_rows_that_go_with_it_are_one_statement_answering_with_the_row() {
        let parent = Query::insert()
            .into_table(Alias::new("parent"))
            .columns([Alias::new("name")])
            .values_panic([Expr::val("a")])
            .returning_all()
            .take();
        let child = [(Alias::new("parent_id"), written(Alias::new("id"))), (Alias::new("note"), Expr::val("b"))];
        let statement = WrittenWith::new(parent).insert(Alias::new("child"), child).statement();
        assert_eq!(
            statement.sql,
            r#"WITH "written" AS (INSERT INTO "parent" ("name") VALUES ($1) RETURNING *) , "with_1" AS (INSERT INTO "child" ("parent_id", "note") SELECT "written"."id", $2 FROM "written") SELECT * FROM "written""#
        );
        assert_eq!(statement.values.map(|values| values.0), Some(vec!["a".into(), "b".into()]));
    }

    #[tokio::test]
    async fn queued_writers_share_one_commit_and_are_answered_after_it() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let (second, second_go) = holding(&queue, 2);
        settle().await;
        first_go.send(()).expect("first writer waits");
        settle().await;
        assert!(!first.is_finished(), "the first writer waits for the writer queued behind it");
        assert_eq!(committed(&reader).await, Vec::<i64>::new(), "nothing is committed before the second's turn ends");

        second_go.send(()).expect("second writer waits");
        finished(first).await.expect("first writer");
        finished(second).await.expect("second writer");
        assert_eq!(committed(&reader).await, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_refused_writer_answers_after_the_writes_it_saw_are_committed_and_undoes_only_its_own() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        // The first's row is visible in the shared transaction: a duplicate.
        let second = inserting(&queue, &[2, 1]);
        settle().await;
        let third = inserting(&queue, &[3]);
        settle().await;

        first_go.send(()).expect("first writer waits");
        assert!(finished(second).await.is_err(), "the duplicate is refused");
        assert_eq!(committed(&reader).await, vec![1, 3], "the row the second writer collided with is committed");
        finished(first).await.expect("first writer");
        finished(third).await.expect("third writer");
    }

    #[tokio::test]
    async fn a_writers_first_statement_counts_only_its_own_rows_though_it_opens_the_savepoint() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let second = writer(&queue, |txn| {
            Box::pin(async move {
                // The writer before changed a row; this statement changes none.
                let untouched = txn.execute_unprepared("UPDATE number SET n = n + 10 WHERE n > 100").await?;
                assert_eq!(untouched.rows_affected(), 0);
                let inserted = insert(txn, 2).await?;
                assert_eq!((inserted.rows_affected(), inserted.last_insert_id()), (1, 2));
                Ok(())
            })
        });
        settle().await;
        first_go.send(()).expect("first writer waits");
        finished(first).await.expect("first writer");
        finished(second).await.expect("second writer");
        assert_eq!(committed(&reader).await, vec![1, 2]);
    }

    #[tokio::test]
    async fn many_writers_in_one_commit_keep_their_writes_but_a_refused_ones_own() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let writers: Vec<_> = (2..50)
            .map(|n| {
                let numbers: &'static [i64] = match n {
                    // Its own row, then a duplicate of the first's.
                    40 => &[1000, 1],
                    _ => Vec::leak(vec![n, 100 + n]),
                };
                inserting(&queue, numbers)
            })
            .collect();
        settle().await;

        first_go.send(()).expect("first writer waits");
        finished(first).await.expect("first writer");
        let mut expected = vec![1];
        for (n, writer) in (2..).zip(writers) {
            match n {
                40 => assert!(finished(writer).await.is_err(), "the duplicate is refused"),
                _ => {
                    finished(writer).await.expect("writer");
                    expected.extend([n, 100 + n]);
                }
            }
        }
        expected.sort_unstable();
        assert_eq!(committed(&reader).await, expected);
    }

    #[tokio::test]
    async fn a_writer_refused_before_its_first_statement_leaves_the_others_committed() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let refused = writer(&queue, |_| Box::pin(async { Err(ApiError::conflict("refused before writing")) }));
        settle().await;
        let third = inserting(&queue, &[3]);
        settle().await;

        first_go.send(()).expect("first writer waits");
        assert!(finished(refused).await.is_err());
        finished(first).await.expect("first writer");
        finished(third).await.expect("third writer");
        assert_eq!(committed(&reader).await, vec![1, 3]);
    }

    /// Queues the writer `start` starts between one that inserts 1 and one
    /// that inserts 3, cancels it in its turn, and checks that the others'
    /// rows are committed and none of its own.
    async fn cancelled_in_its_turn(start: impl FnOnce(&WriteQueue) -> tokio::task::JoinHandle<ApiResult<()>>) {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let cancelled = start(&queue);
        settle().await;
        let third = inserting(&queue, &[3]);
        settle().await;

        first_go.send(()).expect("first writer waits");
        settle().await;
        assert!(!cancelled.is_finished(), "the writer is in its turn");
        cancelled.abort();
        finished(first).await.expect("first writer");
        finished(third).await.expect("third writer");
        assert_eq!(committed(&reader).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_writer_cancelled_in_its_turn_leaves_the_others_committed() {
        cancelled_in_its_turn(|queue| {
            writer(queue, |txn| {
                Box::pin(async move {
                    insert(txn, 2).await?;
                    std::future::pending().await
                })
            })
        })
        .await;
    }

    /// Inserts `n` once SQLite has counted to a million: a statement that
    /// is still running a while after it went out.
    fn slow_insert(n: i64) -> String {
        format!(
            "INSERT INTO number SELECT {n} WHERE (WITH RECURSIVE c(i) AS \
             (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000000) SELECT count(*) FROM c) > 0"
        )
    }

    #[tokio::test]
    async fn a_writer_cancelled_while_its_first_statement_runs_undoes_its_own_writes_only() {
        // Its first statement releases the first writer's savepoint.
        cancelled_in_its_turn(|queue| {
            writer(queue, |txn| Box::pin(async move { Ok(txn.execute_unprepared(&slow_insert(2)).await.map(drop)?) }))
        })
        .await;
    }

    /// Starts a writer whose first statement is on its way and never goes
    /// out, as when its request is cancelled at that moment.
    fn never_sending(queue: &WriteQueue) -> tokio::task::JoinHandle<ApiResult<()>> {
        writer(queue, |txn| {
            Box::pin(async move {
                let Write::Turn(turn) = txn else { panic!("SQLite's writers take turns") };
                let never_sent = Statement::from_string(DbBackend::Sqlite, "INSERT INTO number VALUES (0)");
                turn.run(never_sent, async |_, _| std::future::pending::<Result<(), DbErr>>().await).await?;
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn a_writer_cancelled_before_its_first_statement_went_out_undoes_nothing_of_the_writer_before() {
        // Its first statement would release the first writer's savepoint.
        cancelled_in_its_turn(never_sending).await;
    }

    #[tokio::test]
    async fn a_writer_cancelled_before_any_statement_leaves_the_release_it_would_have_sent_to_the_next() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let idle = writer(&queue, |_| Box::pin(std::future::pending()));
        settle().await;
        let (third, fourth) = (inserting(&queue, &[3]), inserting(&queue, &[4]));
        settle().await;
        // Should the savepoint of the first still be open, nested under the
        // others, undoing this one's savepoint, of the same name, reaches it.
        let fifth = never_sending(&queue);
        settle().await;
        let sixth = inserting(&queue, &[6]);
        settle().await;

        first_go.send(()).expect("first writer waits");
        settle().await;
        idle.abort();
        settle().await;
        fifth.abort();
        for writer in [first, third, fourth, sixth] {
            finished(writer).await.expect("writer");
        }
        assert_eq!(committed(&reader).await, vec![1, 3, 4, 6]);
    }

    /// The server's writer connection to the database at `path`.
    async fn writer_connection(path: &Path) -> DatabaseConnection {
        let settings = crate::config::Settings {
            database_url: format!("sqlite://{}?mode=rwc", path.display()),
            ..Default::default()
        };
        crate::connect_sqlite_writer(&settings).await.expect("connect")
    }

    #[tokio::test]
    async fn the_writers_commits_reach_the_database_file_though_they_run_no_checkpoint() {
        let (dir, reader, _) = numbers().await;
        let path = dir.path().join("numbers.db");
        reader.execute_unprepared("CREATE TABLE note (body BLOB NOT NULL)").await.expect("create table");
        let queue = WriteQueue::sqlite(writer_connection(&path).await, reader.get_sqlite_connection_pool().clone());
        let file_size = || std::fs::metadata(&path).expect("the database file").len();
        let before = file_size();
        // A hundred pages: a tenth of what makes a commit checkpoint by default.
        let notes = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
            INSERT INTO note SELECT randomblob(4000) FROM n";
        queue.write(async |txn| Ok(txn.execute_unprepared(notes).await?)).await.expect("write");
        let copied = tokio::time::timeout(CHECKPOINT_INTERVAL * 10, async {
            while file_size() < before + 100 * 4000 {
                tokio::time::sleep(CHECKPOINT_INTERVAL / 5).await;
            }
        });
        copied.await.expect("the notes copied into the database file by a checkpoint");
    }

    #[tokio::test]
    async fn a_writer_of_another_instance_on_the_same_file_waits_for_the_write_lock() {
        let (dir, reader, _) = numbers().await;
        let path = dir.path().join("numbers.db");
        let (this_instance, other_instance) = (
            WriteQueue::sqlite(writer_connection(&path).await, reader.get_sqlite_connection_pool().clone()),
            WriteQueue::sqlite(writer_connection(&path).await, reader.get_sqlite_connection_pool().clone()),
        );
        let (first, first_go) = holding(&this_instance, 1);
        settle().await;
        let second = inserting(&other_instance, &[2]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "the other instance's writer waits while the lock is held");

        first_go.send(()).expect("first writer waits");
        finished(first).await.expect("first writer");
        finished(second).await.expect("the other instance's writer, once the lock is free");
        assert_eq!(committed(&reader).await, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_writer_cancelled_in_the_queue_holds_up_nobody() {
        let (_dir, reader, queue) = numbers().await;
        let (first, first_go) = holding(&queue, 1);
        settle().await;
        let second = inserting(&queue, &[2]);
        settle().await;
        second.abort();

        first_go.send(()).expect("first writer waits");
        finished(first).await.expect("first writer");
        assert_eq!(committed(&reader).await, vec![1]);
    }
}
