//! Appending to the outbox inside the caller's transaction.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult, Statement,
    sea_query::{Alias, Expr},
};

use crate::db::{self, WrittenWith};

pub struct NewEvent<Id = i64> {
    pub community_id: i64,
    pub kind: &'static str,
    pub entity_type: &'static str,
    pub entity_id: Id,
    pub recipients: Vec<i64>,
}

impl<Id> NewEvent<Id> {
    /// Recipients in order, each once, as the outbox stores them.
    fn name_each_recipient_once(&mut self) {
        self.recipients.sort_unstable();
        self.recipients.dedup();
    }
}

/// Appends events in the caller's transaction. Events commit in `seq` order,
/// so none can appear behind a later one: on SQLite they are numbered from
/// the outbox counter, whose lock is held from the bump to the commit; on
/// PostgreSQL they are numbered after the commit (see `numbering`).
pub async fn append(txn: &impl ConnectionTrait, events: Vec<NewEvent>) -> Result<(), DbErr> {
    append_after(txn, None, events).await
}

/// Runs `first`, a statement that writes and returns no rows, then appends
/// `events` as [`append`] does; on SQLite both in one round trip.
pub async fn append_after(
    txn: &impl ConnectionTrait,
    first: Option<Statement>,
    mut events: Vec<NewEvent>,
) -> Result<(), DbErr> {
    if events.is_empty() {
        return match first {
            Some(first) => txn.execute_raw(first).await.map(drop),
            None => Ok(()),
        };
    }
    events.iter_mut().for_each(NewEvent::name_each_recipient_once);
    let now = Utc::now();
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            if let Some(first) = first {
                txn.execute_raw(first).await?;
            }
            append_drafts(txn, events, now).await
        }
        _ => append_numbered(txn, first, events, now).await,
    }
}

/// On PostgreSQL the events are inserted as drafts, in one statement, and
/// numbered into the outbox after the commit by `numbering`, in a short
/// transaction of its own; so writers never queue for the counter's lock and
/// their commits share WAL flushes.
async fn append_drafts(txn: &impl ConnectionTrait, events: Vec<NewEvent>, now: DateTime<Utc>) -> Result<(), DbErr> {
    const SQL: &str = "INSERT INTO event_draft (community_id, kind, entity_type, entity_id, created_at, recipients)
        SELECT new.community_id, new.kind, new.entity_type, new.entity_id, $1,
            ARRAY(SELECT recipient.user_id FROM unnest($6::bigint[], $7::bigint[]) AS recipient (ord, user_id)
                WHERE recipient.ord = new.ord)
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[])
            WITH ORDINALITY AS new (community_id, kind, entity_type, entity_id, ord)
        ORDER BY new.ord";
    let (mut community_ids, mut kinds, mut entity_types, mut entity_ids) = (vec![], vec![], vec![], vec![]);
    let (mut recipient_ords, mut recipient_ids) = (vec![], vec![]);
    for (ord, new) in (1_i64..).zip(events) {
        community_ids.push(new.community_id);
        kinds.push(new.kind.to_owned());
        entity_types.push(new.entity_type.to_owned());
        entity_ids.push(new.entity_id);
        recipient_ords.extend(std::iter::repeat_n(ord, new.recipients.len()));
        recipient_ids.extend(new.recipients);
    }
    let values = [
        now.into(),
        community_ids.into(),
        kinds.into(),
        entity_types.into(),
        entity_ids.into(),
        recipient_ords.into(),
        recipient_ids.into(),
    ];
    txn.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, SQL, values)).await.map(drop)
}

/// Adds the draft of an event about the row `statement` writes, numbered as
/// [`append_drafts`]' are (PostgreSQL).
pub fn draft_with(
    statement: WrittenWith,
    kind: &'static str,
    entity_type: &'static str,
    community_id: Expr,
    entity_id: Expr,
    recipients: Expr,
    now: DateTime<Utc>,
) -> WrittenWith {
    let row = [
        ("community_id", community_id),
        ("kind", Expr::val(kind)),
        ("entity_type", Expr::val(entity_type)),
        ("entity_id", entity_id),
        ("created_at", Expr::val(now)),
        ("recipients", recipients),
    ];
    statement.insert(Alias::new("event_draft"), row.map(|(column, value)| (Alias::new(column), value)))
}

/// Elsewhere (SQLite) writers take turns on one connection in the process,
/// one after another, so each round trip to that connection holds up the
/// writers queued behind it: `first`, the counter's bump, the events and
/// their recipients go in one, as one string of statements. The events and
/// the recipients are passed as JSON arrays, so the SQL is the same for any
/// number of either and SQLite's limit on bound values does not apply.
async fn append_numbered(
    txn: &impl ConnectionTrait,
    first: Option<Statement>,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let rows: Vec<_> = events.iter().map(|new| (new.community_id, new.kind, new.entity_type, new.entity_id)).collect();
    let recipients = events.iter().map(|new| new.recipients.as_slice());
    let statement = numbered_after(first, &NUMBERED_OUTBOX, &rows, recipients, now)?;
    let bumped = txn.query_all_raw(statement).await?;
    // Without the counter's row the inserts found nothing to number from and
    // wrote nothing; the caller's writes are undone on this error.
    if bumped.len() != 1 {
        return Err(DbErr::Custom("event stream row missing".into()));
    }
    Ok(())
}

/// SQL giving the id of the row that statements before it, in the same
/// round trip on SQLite's writer connection, inserted: such as
/// `(SELECT max(id) FROM t)`, as the writer holds the write lock.
pub struct NewRowId(pub &'static str);

/// Runs `writes`, statements of which the first inserts one row and answers
/// with it (`RETURNING *`) and the others answer with no rows, then appends
/// `event` about that row, as [`append`] does, all in one round trip though
/// the row's id is not known before. SQLite only. Answers with the row.
pub async fn append_about_new_row(
    txn: &impl ConnectionTrait,
    writes: Statement,
    mut event: NewEvent<NewRowId>,
) -> Result<QueryResult, DbErr> {
    event.name_each_recipient_once();
    let outbox = numbered_outbox(event.entity_id.0);
    let row = [(event.community_id, event.kind, event.entity_type)];
    let statement = numbered_after(Some(writes), &outbox, &row, [event.recipients.as_slice()], Utc::now())?;
    let mut answered = txn.query_all_raw(statement).await?.into_iter();
    match (answered.next(), answered.next(), answered.next()) {
        (Some(new_row), Some(_bumped), None) => Ok(new_row),
        _ => Err(DbErr::Custom("the new row or the event stream row missing".into())),
    }
}

/// `first`, then `outbox`'s statements with the events' `rows` and each
/// one's recipients as their values.
fn numbered_after<'a>(
    first: Option<Statement>,
    outbox: &str,
    rows: &[impl serde::Serialize],
    recipients: impl IntoIterator<Item = &'a [i64]>,
    now: DateTime<Utc>,
) -> Result<Statement, DbErr> {
    let count = rows.len() as i64;
    // Tuples serialise as JSON arrays: `[community_id, kind, entity_type,
    // entity_id]` and `[the event's place in the list, user_id]`.
    let recipients: Vec<_> = (0_i64..)
        .zip(recipients)
        .flat_map(|(ord, recipients)| recipients.iter().map(move |&user_id| (ord, user_id)))
        .collect();
    let json_error = |err: serde_json::Error| DbErr::Custom(format!("events as JSON: {err}"));
    let (events, recipients) =
        (serde_json::to_string(rows).map_err(json_error)?, serde_json::to_string(&recipients).map_err(json_error)?);
    let values = [count.into(), count.into(), now.into(), events.into(), count.into(), recipients.into()];
    let outbox = Statement::from_sql_and_values(DbBackend::Sqlite, outbox, values);
    Ok(match first {
        Some(first) => db::joined(first, outbox),
        None => outbox,
    })
}

/// The outbox's statements on SQLite, for events whose JSON arrays carry
/// their entity's id. Their values, in order: the number of events; that
/// number, the time and the events as JSON; that number and the recipients
/// as JSON.
static NUMBERED_OUTBOX: LazyLock<String> = LazyLock::new(|| numbered_outbox("new.value ->> 3"));

/// The outbox's statements on SQLite, for events whose entity's id is
/// `entity_id`: SQL over each event's JSON array, `new.value`.
fn numbered_outbox(entity_id: &str) -> String {
    format!(
        "UPDATE event_stream SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq;
    INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
        SELECT stream.last_seq - ? + 1 + new.key, new.value ->> 0, new.value ->> 1, new.value ->> 2, {entity_id}, ?
        FROM event_stream AS stream, json_each(?) AS new WHERE stream.id = 1 ORDER BY new.key;
    INSERT INTO event_recipient (event_seq, user_id)
        SELECT stream.last_seq - ? + 1 + (recipient.value ->> 0), recipient.value ->> 1
        FROM event_stream AS stream, json_each(?) AS recipient WHERE stream.id = 1;"
    )
}

#[cfg(test)]
mod tests {
    use entity::{event, event_recipient, event_stream};
    use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder, TransactionTrait};

    use super::*;
    use crate::db::testing::migrated_sqlite as migrated;

    fn event(entity_id: i64, recipients: Vec<i64>) -> NewEvent {
        NewEvent { community_id: 7, kind: "SUBMITTED", entity_type: "REPAIR_ORDER", entity_id, recipients }
    }

    #[tokio::test]
    async fn numbers_events_after_the_counter_with_their_own_recipients_on_sqlite() {
        let db = migrated().await;
        event_stream::Entity::update(event_stream::ActiveModel { id: Set(1), last_seq: Set(41) })
            .exec(&db)
            .await
            .expect("set counter");
        let now = Utc::now();
        let txn = db.begin().await.expect("begin");
        append(&txn, vec![event(10, vec![3, 2, 3]), event(11, vec![]), event(12, vec![2])]).await.expect("append");
        txn.commit().await.expect("commit");

        let events = event::Entity::find().order_by_asc(event::Column::Seq).all(&db).await.expect("events");
        let numbered: Vec<_> = events.iter().map(|event| (event.seq, event.entity_id)).collect();
        assert_eq!(numbered, [(42, 10), (43, 11), (44, 12)]);
        assert!(events.iter().all(|event| event.community_id == 7 && event.kind == "SUBMITTED"));
        assert!(events.iter().all(|event| event.entity_type == "REPAIR_ORDER" && event.created_at >= now));
        let recipients: Vec<_> = event_recipient::Entity::find()
            .order_by_asc(event_recipient::Column::EventSeq)
            .order_by_asc(event_recipient::Column::UserId)
            .all(&db)
            .await
            .expect("recipients")
            .into_iter()
            .map(|recipient| (recipient.event_seq, recipient.user_id))
            .collect();
        assert_eq!(recipients, [(42, 2), (42, 3), (44, 2)]);
        let last = event_stream::Entity::find_by_id(1).one(&db).await.expect("read").expect("counter row").last_seq;
        assert_eq!(last, 44);
    }

    #[tokio::test]
    async fn runs_a_first_statement_with_its_own_values_before_the_events_on_sqlite() {
        use sea_orm::{QueryResult, sea_query::Query};
        let db = migrated().await;
        db.execute_unprepared("CREATE TABLE note (n INTEGER NOT NULL, said TEXT NOT NULL)").await.expect("create");
        let first = Query::insert()
            .into_table(Alias::new("note"))
            .columns([Alias::new("n"), Alias::new("said")])
            .values_panic([5.into(), "five".into()])
            .to_owned();
        let first = db.get_database_backend().build(&first);
        let txn = db.begin().await.expect("begin");
        append_after(&txn, Some(first), vec![event(10, vec![4])]).await.expect("append");
        txn.commit().await.expect("commit");

        let notes = db.query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT n, said FROM note")).await;
        let notes: Vec<(i64, String)> = notes
            .expect("notes")
            .iter()
            .map(|row: &QueryResult| (row.try_get("", "n").expect("n"), row.try_get("", "said").expect("said")))
            .collect();
        assert_eq!(notes, [(5, "five".to_owned())]);
        let events = event::Entity::find().all(&db).await.expect("events");
        assert_eq!(events.iter().map(|event| (event.seq, event.entity_id)).collect::<Vec<_>>(), [(1, 10)]);
        let recipients = event_recipient::Entity::find().all(&db).await.expect("recipients");
        assert_eq!(recipients.iter().map(|r| (r.event_seq, r.user_id)).collect::<Vec<_>>(), [(1, 4)]);
    }

    #[tokio::test]
    async fn numbers_an_event_about_a_row_inserted_in_the_same_round_trip_and_answers_with_the_row_on_sqlite() {
        use sea_orm::sea_query::Query;
        let db = migrated().await;
        db.execute_unprepared(
            "CREATE TABLE note (id INTEGER PRIMARY KEY AUTOINCREMENT, said TEXT NOT NULL);
            CREATE TABLE note_seen (note_id INTEGER NOT NULL);
            INSERT INTO note (said) VALUES ('older')",
        )
        .await
        .expect("create");
        let insert = Query::insert()
            .into_table(Alias::new("note"))
            .columns([Alias::new("said")])
            .values_panic(["five".into()])
            .returning_all()
            .to_owned();
        let newest = "(SELECT max(id) FROM note)";
        let seen = Query::insert()
            .into_table(Alias::new("note_seen"))
            .columns([Alias::new("note_id")])
            .values_panic([Expr::cust(newest)])
            .to_owned();
        let backend = db.get_database_backend();
        let writes = db::joined(backend.build(&insert), backend.build(&seen));
        let new = NewEvent {
            community_id: 7,
            kind: "SUBMITTED",
            entity_type: "NOTE",
            entity_id: NewRowId(newest),
            recipients: vec![4, 3, 4],
        };
        let txn = db.begin().await.expect("begin");
        let row = append_about_new_row(&txn, writes, new).await.expect("append");
        txn.commit().await.expect("commit");

        let (id, said): (i64, String) = (row.try_get("", "id").expect("id"), row.try_get("", "said").expect("said"));
        assert_eq!((id, said.as_str()), (2, "five"));
        let seen = db.query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT note_id FROM note_seen")).await;
        let seen: i64 = seen.expect("read").expect("a row").try_get("", "note_id").expect("note_id");
        assert_eq!(seen, 2);
        let events = event::Entity::find().all(&db).await.expect("events");
        let about: Vec<_> =
            events.iter().map(|event| (event.seq, event.entity_type.as_str(), event.entity_id)).collect();
        assert_eq!(about, [(1, "NOTE", 2)]);
        let recipients = event_recipient::Entity::find()
            .order_by_asc(event_recipient::Column::UserId)
            .all(&db)
            .await
            .expect("recipients");
        assert_eq!(recipients.iter().map(|r| (r.event_seq, r.user_id)).collect::<Vec<_>>(), [(1, 3), (1, 4)]);
    }

    #[tokio::test]
    async fn refuses_to_write_events_without_the_counter_row_on_sqlite() {
        let db = migrated().await;
        event_stream::Entity::delete_by_id(1).exec(&db).await.expect("delete counter");
        let txn = db.begin().await.expect("begin");
        let err = append(&txn, vec![event(10, vec![2])]).await.expect_err("no counter");
        assert!(err.to_string().contains("event stream row missing"), "{err}");
        assert_eq!(event::Entity::find().all(&txn).await.expect("events"), []);
        assert_eq!(event_recipient::Entity::find().all(&txn).await.expect("recipients"), []);
    }
}
