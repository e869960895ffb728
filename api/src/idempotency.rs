//! Idempotency keys for mutations that create things. A phone that retries
//! after losing the response sends the same key (the `Idempotency-Key` header,
//! or `clientMutationId` over the WebSocket) and gets what the first request
//! created instead of a second repair order or parcel; the same key with other
//! input is a CONFLICT. Keys are per caller and per mutation, and are recorded
//! in the transaction that creates the rows, so a key never outlives a write
//! that was rolled back.

use async_graphql::Context;
use chrono::{DateTime, Duration, Utc};
use entity::idempotency_key;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, sea_query::Expr,
};
use sha2::{Digest, Sha256};

use crate::{
    AppContext,
    auth::Caller,
    db::WrittenWith,
    error::{ApiError, ApiResult, unique_conflict},
};

/// The `Idempotency-Key` header of an HTTP request.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub String);

const MAX_KEY_LENGTH: usize = 255;

/// A key presented with one mutation, with a fingerprint of its input.
#[derive(Debug)]
pub struct Claim {
    caller: String,
    operation: String,
    key: String,
    request_hash: String,
}

/// What a mutation with a key did.
pub enum Outcome<T> {
    Created(T),
    /// An earlier request with this key and input created these rows.
    Replayed(Vec<i64>),
}

impl Claim {
    /// The key of this mutation: `clientMutationId` when given, else the
    /// request's `Idempotency-Key` header; `None` without either.
    pub fn of(ctx: &Context<'_>, caller: &Caller, client_mutation_id: Option<&str>) -> ApiResult<Option<Self>> {
        let (key, source) = match (client_mutation_id, ctx.data_opt::<IdempotencyHeader>()) {
            (Some(key), _) => (key, "clientMutationId"),
            (None, Some(header)) => (header.0.as_str(), "Idempotency-Key"),
            (None, None) => return Ok(None),
        };
        if key.is_empty() || key.len() > MAX_KEY_LENGTH || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_input(source, format!("1 to {MAX_KEY_LENGTH} printable ASCII characters")));
        }
        let arguments = ctx.field().arguments().map_err(|err| ApiError::Internal(err.message))?;
        let arguments: serde_json::Map<String, serde_json::Value> = arguments
            .into_iter()
            .map(|(name, value)| Ok((name.to_string(), value.into_json()?)))
            .collect::<Result<_, serde_json::Error>>()
            .map_err(|err| ApiError::Internal(err.to_string()))?;
        let canonical = canonical_json(&serde_json::Value::Object(arguments));
        Ok(Some(Self {
            caller: caller.key(),
            operation: ctx.field().name().to_owned(),
            key: key.to_owned(),
            request_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        }))
    }

    /// What an earlier request with this key created; CONFLICT when it came
    /// with other input.
    async fn earlier(&self, db: &DatabaseConnection) -> ApiResult<Option<Vec<i64>>> {
        let Some(row) = idempotency_key::Entity::find()
            .filter(idempotency_key::Column::Caller.eq(&self.caller))
            .filter(idempotency_key::Column::Operation.eq(&self.operation))
            .filter(idempotency_key::Column::Key.eq(&self.key))
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        if row.request_hash != self.request_hash {
            return Err(ApiError::conflict("this idempotency key was used with different input"));
        }
        let ids = serde_json::from_str(&row.created_ids).map_err(|err| ApiError::Internal(err.to_string()))?;
        Ok(Some(ids))
    }

    /// Records the key with what the mutation created, in its transaction.
    pub async fn record(&self, txn: &impl ConnectionTrait, created_ids: &[i64]) -> ApiResult<()> {
        let created_ids = serde_json::to_string(created_ids).map_err(|err| ApiError::Internal(err.to_string()))?;
        idempotency_key::ActiveModel {
            caller: Set(self.caller.clone()),
            operation: Set(self.operation.clone()),
            key: Set(self.key.clone()),
            request_hash: Set(self.request_hash.clone()),
            created_ids: Set(created_ids),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(txn)
        .await
        .map_err(taken)?;
        Ok(())
    }

    /// The caller, operation, key and request hash, as [`Claim::recorded_with`] takes them.
    pub fn texts(&self) -> [&str; 4] {
        [&self.caller, &self.operation, &self.key, &self.request_hash]
    }

    /// Records the key of `texts` ([`Claim::texts`]) with the row `statement`
    /// writes, in that statement (PostgreSQL); its error goes through [`taken`].
    pub fn recorded_with(statement: WrittenWith, texts: [&str; 4], created_id: Expr, at: DateTime<Utc>) -> WrittenWith {
        use idempotency_key::Column;
        let [caller, operation, key, request_hash] = texts;
        statement.insert(
            idempotency_key::Entity,
            [
                (Column::Caller, Expr::val(caller)),
                (Column::Operation, Expr::val(operation)),
                (Column::Key, Expr::val(key)),
                (Column::RequestHash, Expr::val(request_hash)),
                // The JSON array `record` writes, of the one id.
                (Column::CreatedIds, Expr::cust_with_expr("json_build_array($1)::text", created_id)),
                (Column::CreatedAt, Expr::val(at)),
            ],
        )
    }
}

/// The error of a statement that recorded a key and meets no other unique
/// index: CONFLICT when a twin request recorded the key first.
pub fn taken(err: DbErr) -> ApiError {
    unique_conflict(err, "a request with this idempotency key is in progress")
}

/// Runs `create` unless an earlier request with the same key did; `create`
/// records the claim in its transaction. A request that loses a race with a
/// twin fails with CONFLICT inside `create` and then finds the twin's result.
pub async fn once<T, F>(app: &AppContext, claim: Option<&Claim>, create: F) -> ApiResult<Outcome<T>>
where
    F: AsyncFnOnce() -> ApiResult<T>,
{
    let Some(claim) = claim else {
        return create().await.map(Outcome::Created);
    };
    if let Some(ids) = claim.earlier(&app.db).await? {
        return Ok(Outcome::Replayed(ids));
    }
    match create().await {
        Ok(created) => Ok(Outcome::Created(created)),
        Err(ApiError::Conflict(message)) => match claim.earlier(&app.db).await? {
            Some(ids) => Ok(Outcome::Replayed(ids)),
            None => Err(ApiError::Conflict(message)),
        },
        Err(err) => Err(err),
    }
}

/// Forgets keys older than the retention period; answers how many.
pub async fn purge(app: &AppContext, now: chrono::DateTime<Utc>) -> ApiResult<u64> {
    let keep = Duration::from_std(app.settings.idempotency_key_ttl)
        .map_err(|_| ApiError::Internal("idempotency key retention out of range".into()))?;
    let deleted = idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedAt.lt(now - keep))
        .exec(&app.db)
        .await?;
    Ok(deleted.rows_affected)
}

/// JSON with object keys sorted, so the same input always hashes the same.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| format!("{}:{}", serde_json::Value::String(key.clone()), canonical_json(value)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_only() {
        let a = serde_json::json!({ "b": 1, "a": { "y": [1, 2], "x": "s" } });
        let b = serde_json::json!({ "a": { "x": "s", "y": [1, 2] }, "b": 1 });
        let c = serde_json::json!({ "a": { "x": "s", "y": [2, 1] }, "b": 1 });
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_ne!(canonical_json(&a), canonical_json(&c));
    }
}
