//! PostgreSQL numbers a transaction's events as it commits. A writer inserts
//! its events as drafts; a deferred constraint trigger, which PostgreSQL runs
//! inside COMMIT, takes the next numbers from the outbox counter and moves
//! each draft into the outbox. The counter's lock, which keeps events
//! committing in `seq` order, is then held for the trigger and the commit's
//! WAL flush only, not across the round trips before the writer's COMMIT
//! arrives. SQLite's writers take turns anyway and append directly.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE event_draft (
    id BIGSERIAL PRIMARY KEY,
    community_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    recipients BIGINT[] NOT NULL
);

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

const DOWN: &str = "
DROP TRIGGER publish_event_draft ON event_draft;
DROP FUNCTION publish_event_draft();
DROP TABLE event_draft;
";

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
