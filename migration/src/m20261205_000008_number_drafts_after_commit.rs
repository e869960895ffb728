//! PostgreSQL numbers events after their writers commit. The deferred trigger
//! of `m20261205_000007_event_drafts` numbered each transaction's drafts
//! inside its COMMIT, so every writer held the outbox counter's lock through
//! its own WAL flush and commits could not share one. Now writers only insert
//! drafts, and `number_event_drafts` numbers every committed draft in one
//! short transaction of its own, called by the API after a commit and by a
//! timer: writers commit together, and the counter's lock, which keeps events
//! committing in `seq` order, is taken once per batch.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
DROP TRIGGER publish_event_draft ON event_draft;
DROP FUNCTION publish_event_draft();

CREATE FUNCTION number_event_drafts(batch BIGINT, OUT numbered BIGINT, OUT last_seq BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM event_draft) THEN
        numbered := 0;
        SELECT stream.last_seq INTO last_seq FROM event_stream AS stream WHERE stream.id = 1;
        RETURN;
    END IF;
    SELECT stream.last_seq INTO last_seq FROM event_stream AS stream WHERE stream.id = 1 FOR UPDATE;
    -- A new statement sees every draft committed while this one waited for the lock.
    WITH moved AS (
        DELETE FROM event_draft
        WHERE id IN (SELECT id FROM event_draft ORDER BY id LIMIT batch)
        RETURNING *
    ), draft AS (
        SELECT last_seq + row_number() OVER (ORDER BY moved.id) AS seq, moved.* FROM moved
    ), events AS (
        INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
        SELECT draft.seq, draft.community_id, draft.kind, draft.entity_type, draft.entity_id, draft.created_at
        FROM draft
    ), recipients AS (
        INSERT INTO event_recipient (event_seq, user_id) SELECT draft.seq, unnest(draft.recipients) FROM draft
    )
    SELECT count(*) INTO numbered FROM draft;
    last_seq := last_seq + numbered;
    UPDATE event_stream SET last_seq = number_event_drafts.last_seq WHERE id = 1;
END
$$;
"#;

const DOWN: &str = r#"
DROP FUNCTION number_event_drafts(BIGINT);

CREATE FUNCTION publish_event_draft() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    numbered BIGINT;
BEGIN
    UPDATE event_stream SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq INTO numbered;
    INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
        VALUES (numbered, NEW.community_id, NEW.kind, NEW.entity_type, NEW.entity_id, NEW.created_at);
    INSERT INTO event_recipient (event_seq, user_id) SELECT numbered, unnest(NEW.recipients);
    DELETE FROM event_draft WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER publish_event_draft AFTER INSERT ON event_draft
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION publish_event_draft();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(UP).await.map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DOWN).await.map(drop)
    }
}
