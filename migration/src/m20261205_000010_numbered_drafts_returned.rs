//! PostgreSQL only. `take_event_drafts` numbers committed drafts into the
//! outbox as `number_event_drafts` did, and returns the events it numbered,
//! with their recipients: the instance that numbers them hands them to its
//! own subscribers without reading them back. `number_event_drafts` keeps
//! its signature and now counts what `take_event_drafts` numbered.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE FUNCTION take_event_drafts(batch BIGINT)
RETURNS TABLE (
    seq BIGINT, community_id BIGINT, kind TEXT, entity_type TEXT, entity_id BIGINT,
    created_at TIMESTAMPTZ, recipients BIGINT[]
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    previous_last BIGINT;
    taken BIGINT;
BEGIN
    IF NOT EXISTS (SELECT FROM event_draft) THEN
        RETURN;
    END IF;
    SELECT stream.last_seq INTO previous_last FROM event_stream AS stream WHERE stream.id = 1 FOR UPDATE;
    -- A new statement sees every draft committed while this one waited for the lock.
    RETURN QUERY
    WITH moved AS (
        DELETE FROM event_draft
        WHERE id IN (SELECT id FROM event_draft ORDER BY id LIMIT batch)
        RETURNING *
    ), draft AS (
        SELECT previous_last + row_number() OVER (ORDER BY moved.id) AS seq, moved.* FROM moved
    ), events AS (
        INSERT INTO event (seq, community_id, kind, entity_type, entity_id, created_at)
        SELECT draft.seq, draft.community_id, draft.kind, draft.entity_type, draft.entity_id, draft.created_at
        FROM draft
    ), recipients AS (
        INSERT INTO event_recipient (event_seq, user_id) SELECT draft.seq, unnest(draft.recipients) FROM draft
    )
    SELECT draft.seq, draft.community_id, draft.kind, draft.entity_type, draft.entity_id, draft.created_at,
        draft.recipients
    FROM draft ORDER BY draft.seq;
    GET DIAGNOSTICS taken = ROW_COUNT;
    UPDATE event_stream SET last_seq = previous_last + taken WHERE id = 1;
END
$$;

CREATE OR REPLACE FUNCTION number_event_drafts(batch BIGINT, OUT numbered BIGINT, OUT last_seq BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT count(*) INTO numbered FROM take_event_drafts(batch);
    SELECT stream.last_seq INTO last_seq FROM event_stream AS stream WHERE stream.id = 1;
END
$$;
"#;

/// `number_event_drafts` as migration `m20261205_000008` left it.
const DOWN: &str = r#"
CREATE OR REPLACE FUNCTION number_event_drafts(batch BIGINT, OUT numbered BIGINT, OUT last_seq BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM event_draft) THEN
        numbered := 0;
        SELECT stream.last_seq INTO last_seq FROM event_stream AS stream WHERE stream.id = 1;
        RETURN;
    END IF;
    SELECT stream.last_seq INTO last_seq FROM event_stream AS stream WHERE stream.id = 1 FOR UPDATE;
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

DROP FUNCTION take_event_drafts(BIGINT);
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
