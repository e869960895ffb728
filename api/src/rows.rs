//! Models read from a row by position, straight from the driver's row.
//!
//! SeaORM's own mapping looks every column up by name, formats the prefixed
//! name of each joined column, and formats a message for every NULL it meets.
//! On a page of orders joined with their unit, building and assignee that took
//! 20–28 % of the server's time; by position it is one typed read per column.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, DbErr, EntityTrait, IdenStatic, IntoActiveModel, QueryResult,
    TryIntoModel, Value,
    sqlx::{self, Postgres, Row, Sqlite},
};

/// `unread` with `columns` read from the row's columns `first..first +
/// columns.len()`, in that order: a model of which only some columns were
/// selected.
pub fn model_with<E>(
    row: &QueryResult,
    first: usize,
    columns: &[E::Column],
    unread: E::Model,
) -> Result<E::Model, DbErr>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
{
    let (values, _) = values_at::<E>(row, first, columns.iter().copied())?;
    set::<E>(unread.into_active_model(), values)
}

/// Like [`model_with`], for the columns of a left join: `None` when all of
/// them are NULL (no row was joined).
pub fn joined_model_with<E>(
    row: &QueryResult,
    first: usize,
    columns: &[E::Column],
    unread: E::Model,
) -> Result<Option<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
{
    let (values, all_null) = values_at::<E>(row, first, columns.iter().copied())?;
    if all_null {
        return Ok(None);
    }
    set::<E>(unread.into_active_model(), values).map(Some)
}

type ColumnValues<E> = Vec<(<E as EntityTrait>::Column, Value)>;

/// The values of `columns`, read from the row's columns from `first` on, and
/// whether all of them are NULL.
fn values_at<E: EntityTrait>(
    row: &QueryResult,
    first: usize,
    columns: impl ExactSizeIterator<Item = E::Column>,
) -> Result<(ColumnValues<E>, bool), DbErr> {
    let mut values = Vec::with_capacity(columns.len());
    let mut all_null = true;
    for (offset, column) in columns.enumerate() {
        let (value, is_null) = value_at(row, first + offset, column.def().get_column_type())?;
        all_null &= is_null;
        values.push((column, value));
    }
    Ok((values, all_null))
}

fn set<E>(mut model: E::ActiveModel, values: ColumnValues<E>) -> Result<E::Model, DbErr>
where
    E: EntityTrait,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
{
    for (column, value) in values {
        model.try_set(column, value).map_err(|err| DbErr::Type(format!("{}: {err}", column.as_str())))?;
    }
    model.try_into_model()
}

/// The column's value, and whether it is NULL.
fn value_at(row: &QueryResult, index: usize, column_type: &ColumnType) -> Result<(Value, bool), DbErr> {
    fn typed<T>(read: Option<T>, variant: fn(Option<T>) -> Value) -> (Value, bool) {
        let is_null = read.is_none();
        (variant(read), is_null)
    }
    Ok(match column_type {
        ColumnType::BigInteger => typed(get(row, index)?, Value::BigInt),
        ColumnType::Integer => typed(get(row, index)?, Value::Int),
        ColumnType::Boolean => typed(get(row, index)?, Value::Bool),
        // Text and the string-backed enums.
        ColumnType::String(_) | ColumnType::Text => typed(get(row, index)?, Value::String),
        ColumnType::TimestampWithTimeZone => typed(get(row, index)?, Value::ChronoDateTimeUtc),
        other => return Err(DbErr::Type(format!("no positional read for column type {other:?}"))),
    })
}

fn get<T>(row: &QueryResult, index: usize) -> Result<Option<T>, DbErr>
where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>,
{
    let read = if let Some(row) = row.try_as_sqlite_row() {
        row.try_get::<Option<T>, _>(index)
    } else if let Some(row) = row.try_as_pg_row() {
        row.try_get::<Option<T>, _>(index)
    } else {
        return Err(DbErr::Type("a row of neither SQLite nor PostgreSQL".into()));
    };
    read.map_err(|err| DbErr::Type(format!("column {index}: {err}")))
}
