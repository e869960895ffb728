//! One batch loader for "rows of table E by id", so nested fields of a page cost
//! one query per table, not one per row. Loaders are shared by all requests and
//! keep no cache: each batch is read fresh.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use async_graphql::dataloader::Loader;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter, Value,
};

pub struct ById<E> {
    db: DatabaseConnection,
    entity: PhantomData<fn() -> E>,
}

impl<E> ById<E> {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, entity: PhantomData }
    }
}

impl<E> Loader<i64> for ById<E>
where
    E: EntityTrait,
    E::Model: Clone + Send + Sync + 'static,
{
    type Value = E::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let Some(primary_key) = E::PrimaryKey::iter().next() else {
            return Err(Arc::new(DbErr::Custom("entity without a primary key".into())));
        };
        let column = primary_key.into_column();
        let rows = E::find().filter(column.is_in(keys.iter().copied())).all(&self.db).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match row.get(column) {
                Value::BigInt(Some(id)) => Some((id, row)),
                _ => None,
            })
            .collect())
    }
}

/// Rows the request has already read, joined into a page query, by table and
/// id: nested fields of that page resolve from them without another statement.
#[derive(Default)]
pub struct RowsRead(Mutex<HashMap<(TypeId, i64), Box<dyn Any + Send + Sync>>>);

impl RowsRead {
    pub fn keep<E>(&self, id: i64, row: E::Model)
    where
        E: EntityTrait,
        E::Model: Send + Sync + 'static,
    {
        self.rows().insert((TypeId::of::<E::Model>(), id), Box::new(row));
    }

    pub(crate) fn get<E>(&self, id: i64) -> Option<E::Model>
    where
        E: EntityTrait,
        E::Model: Clone + 'static,
    {
        self.rows().get(&(TypeId::of::<E::Model>(), id)).and_then(|row| row.downcast_ref::<E::Model>()).cloned()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<(TypeId, i64), Box<dyn Any + Send + Sync>>> {
        // The map stays consistent even if a holder panicked: each insert is whole.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Loads one row of `E` by id: from the rows the request already read, or
/// through the shared batch loader.
pub async fn load_one<E>(ctx: &async_graphql::Context<'_>, id: i64) -> crate::error::ApiResult<Option<E::Model>>
where
    E: EntityTrait,
    E::Model: Clone + Send + Sync + 'static,
{
    if let Some(row) = ctx.data_opt::<RowsRead>().and_then(|read| read.get::<E>(id)) {
        return Ok(Some(row));
    }
    ctx.data_unchecked::<async_graphql::dataloader::DataLoader<ById<E>>>()
        .load_one(id)
        .await
        .map_err(|err| crate::error::ApiError::Internal(format!("batch load failed: {err}")))
}

/// Current (not moved-out) memberships of each unit.
pub struct CurrentMembershipsByUnit {
    db: DatabaseConnection,
}

impl CurrentMembershipsByUnit {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Loader<i64> for CurrentMembershipsByUnit {
    type Value = Vec<entity::unit_membership::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, unit_ids: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        use entity::unit_membership::Column;
        use sea_orm::QueryOrder;
        let rows = entity::unit_membership::Entity::find()
            .filter(Column::UnitId.is_in(unit_ids.iter().copied()))
            .filter(Column::MovedOutOn.is_null())
            .order_by_asc(Column::Id)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<i64, Self::Value> = HashMap::new();
        for row in rows {
            grouped.entry(row.unit_id).or_default().push(row);
        }
        Ok(grouped)
    }
}

/// Rows of `E` grouped by a parent-id column, oldest first: one query for the
/// children of a whole page of parents.
pub struct ChildrenOf<E: EntityTrait> {
    db: DatabaseConnection,
    parent: E::Column,
}

impl<E: EntityTrait> ChildrenOf<E> {
    pub fn new(db: DatabaseConnection, parent: E::Column) -> Self {
        Self { db, parent }
    }
}

impl<E> Loader<i64> for ChildrenOf<E>
where
    E: EntityTrait,
    E::Model: Clone + Send + Sync + 'static,
    E::Column: Send + Sync,
{
    type Value = Vec<E::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, parent_ids: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        use sea_orm::QueryOrder;
        let Some(primary_key) = E::PrimaryKey::iter().next() else {
            return Err(Arc::new(DbErr::Custom("entity without a primary key".into())));
        };
        let rows = E::find()
            .filter(self.parent.is_in(parent_ids.iter().copied()))
            .order_by_asc(primary_key.into_column())
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<i64, Self::Value> = HashMap::new();
        for row in rows {
            if let Value::BigInt(Some(parent_id)) = row.get(self.parent) {
                grouped.entry(parent_id).or_default().push(row);
            }
        }
        Ok(grouped)
    }
}
