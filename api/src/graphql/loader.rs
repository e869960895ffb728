//! One batch loader for "rows of table E by id", so nested fields of a page cost
//! one query per table, not one per row. Loaders are shared by all requests and
//! keep no cache: each batch is read fresh.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use async_graphql::{SelectionField, dataloader::Loader};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IdenStatic, Iterable, ModelTrait, PrimaryKeyToColumn,
    QueryFilter, Value,
};

use super::boxed_wait;

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
    E::Model: Send + Sync + 'static,
{
    /// Shared: every field that asks for a row in the batch holds the same one.
    type Value = Arc<E::Model>;
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
                Value::BigInt(Some(id)) => Some((id, Arc::new(row))),
                _ => None,
            })
            .collect())
    }
}

/// A table whose rows a page may read with only the columns its selection
/// shows, as the fields of the table's GraphQL object read them.
pub trait ColumnsRead: EntityTrait {
    /// The columns `fields`, selected on this table's GraphQL object, read,
    /// with the id, in the entity's column order. A field the table does not
    /// name here reads every column; by default, every field does.
    fn columns_read_by<'a>(_fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<Self::Column> {
        Self::Column::iter().collect()
    }
}

/// The columns of `E` named in `names`, with `E`'s id, in the entity's column
/// order; every column if `names` holds `None` (a field that reads them all).
pub fn columns_named<E: EntityTrait>(names: impl IntoIterator<Item = Option<&'static [E::Column]>>) -> Vec<E::Column> {
    let mut read: Vec<&'static str> = E::PrimaryKey::iter().map(|key| key.into_column().as_str()).collect();
    for columns in names {
        match columns {
            Some(columns) => read.extend(columns.iter().map(|column| column.as_str())),
            None => return E::Column::iter().collect(),
        }
    }
    E::Column::iter().filter(|column| read.contains(&column.as_str())).collect()
}

/// Rows the request has already read, joined into the query of a page or of
/// a single object, by table and id, each with the columns it holds: nested
/// fields resolve from them without another statement when the row holds what
/// they read.
#[derive(Default)]
pub struct RowsRead(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    rows: HashMap<(TypeId, i64), Held, FastHash>,
    /// The columns each field asking for a kept row reads, by table and
    /// field: worked out once per field, not once per row it is asked of.
    needed: HashMap<(TypeId, FieldKey), Vec<&'static str>, FastHash>,
}

/// The maps' keys are the server's own ids and addresses, not a client's
/// input: they need no defence against chosen collisions, which SipHash pays
/// for in every lookup.
type FastHash = foldhash::fast::RandomState;

struct Held {
    columns: Arc<[&'static str]>,
    /// An `Arc<E::Model>`: each field that asks for the row shares it.
    row: Box<dyn Any + Send + Sync>,
}

/// A field of the request's document, by address. The node lives as long as
/// the request, and selects the same columns whichever row it is asked of.
pub(crate) type FieldKey = usize;

impl RowsRead {
    /// Keeps `row`, of which only the columns named were read: the others
    /// hold placeholders.
    pub fn keep<E>(&self, id: i64, row: E::Model, columns: &Arc<[&'static str]>)
    where
        E: EntityTrait,
        E::Model: Send + Sync + 'static,
    {
        let held = Held { columns: columns.clone(), row: Box::new(Arc::new(row)) };
        self.kept().rows.insert((TypeId::of::<E::Model>(), id), held);
    }

    /// The row of `E` with this id, if one was kept holding every column
    /// `needed` names for `field`; `needed` is only worked out when such a
    /// row was kept, and once per field.
    pub(crate) fn get<E>(
        &self,
        id: i64,
        field: FieldKey,
        needed: impl FnOnce() -> Vec<E::Column>,
    ) -> Option<Arc<E::Model>>
    where
        E: EntityTrait,
        E::Model: Send + Sync + 'static,
    {
        let table = TypeId::of::<E::Model>();
        let kept = &mut *self.kept();
        let held = kept.rows.get(&(table, id))?;
        let needed = kept
            .needed
            .entry((table, field))
            .or_insert_with(|| needed().iter().map(|column| column.as_str()).collect());
        if !needed.iter().all(|column| held.columns.contains(column)) {
            return None;
        }
        held.row.downcast_ref::<Arc<E::Model>>().cloned()
    }

    /// Whether a row of `E` with this id was kept, whatever columns it holds.
    pub fn holds<E>(&self, id: i64) -> bool
    where
        E: EntityTrait,
        E::Model: 'static,
    {
        self.kept().rows.contains_key(&(TypeId::of::<E::Model>(), id))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The maps stay consistent even if a holder panicked: each insert is whole.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Loads the row of `E` with this id for the field `ctx` resolves: from the
/// rows the request already read, if the one kept holds the columns the
/// field's selection reads, or else through the shared batch loader, whole.
pub async fn load_one<E>(ctx: &async_graphql::Context<'_>, id: i64) -> crate::error::ApiResult<Option<Arc<E::Model>>>
where
    E: ColumnsRead,
    E::Model: Send + Sync + 'static,
{
    let field = std::ptr::from_ref(ctx.item) as FieldKey;
    let needed = || E::columns_read_by(ctx.field().selection_set());
    if let Some(row) = ctx.data_opt::<RowsRead>().and_then(|read| read.get::<E>(id, field, needed)) {
        return Ok(Some(row));
    }
    // Boxed, as every field's wait for a query is (see `graphql::boxed_wait`).
    boxed_wait(ctx.data_unchecked::<async_graphql::dataloader::DataLoader<ById<E>>>().load_one(id))
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
