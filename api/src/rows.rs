//! Models read from a row by position, straight from the driver's row.
//!
//! SeaORM's own mapping looks every column up by name, formats the prefixed
//! name of each joined column, and formats a message for every NULL it meets.
//! On a page of orders joined with their unit, building and assignee that took
//! 20–28 % of the server's time; by position it is one typed read per column.

use std::sync::Arc;

use sea_orm::{
    ColumnTrait, ColumnType, DbErr, EntityTrait, IdenStatic, Iterable, ModelTrait, PrimaryKeyToColumn, QueryResult,
    Value,
    sqlx::{self, Postgres, Row, Sqlite},
};

/// Columns of `E` read by position, with how to read each worked out once
/// for all the rows a statement returns, and their names, shared by every
/// row kept with them.
pub struct ReadPlan<E: EntityTrait> {
    columns: Vec<E::Column>,
    reads: Vec<Option<Read>>,
    names: Arc<[&'static str]>,
    /// Where among `columns` the primary key is, if it is read.
    key: Option<usize>,
}

impl<E: EntityTrait> ReadPlan<E> {
    pub fn new(columns: Vec<E::Column>) -> Self {
        let reads = columns.iter().map(|column| Read::of(column.def().get_column_type())).collect();
        let names: Arc<[&'static str]> = columns.iter().map(|column| column.as_str()).collect();
        let key = E::PrimaryKey::iter()
            .next()
            .and_then(|key| names.iter().position(|name| *name == key.into_column().as_str()));
        Self { columns, reads, names, key }
    }

    pub fn columns(&self) -> &[E::Column] {
        &self.columns
    }

    pub fn names(&self) -> &Arc<[&'static str]> {
        &self.names
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The columns but the primary key, for a row whose key another row
    /// already holds.
    pub fn columns_but_key(&self) -> impl Iterator<Item = E::Column> + '_ {
        let key = self.key;
        self.columns.iter().enumerate().filter(move |(at, _)| Some(*at) != key).map(|(_, &column)| column)
    }
}

/// How a column's value is read: by its type, the string-backed enums as text.
#[derive(Clone, Copy)]
enum Read {
    BigInteger,
    Integer,
    Boolean,
    Text,
    TimestampWithTimeZone,
}

impl Read {
    fn of(column_type: &ColumnType) -> Option<Self> {
        Some(match column_type {
            ColumnType::BigInteger => Self::BigInteger,
            ColumnType::Integer => Self::Integer,
            ColumnType::Boolean => Self::Boolean,
            ColumnType::String(_) | ColumnType::Text => Self::Text,
            ColumnType::TimestampWithTimeZone => Self::TimestampWithTimeZone,
            _ => return None,
        })
    }
}

/// `unread` with the plan's columns read from the row's columns `first..`,
/// in that order: a model of which only some columns were selected. With
/// `held_key`, the statement did not select the row's key because the row it
/// is joined to holds it (a foreign key): the key is set to it, and the
/// other columns are read in order.
pub fn model_with<E: EntityTrait>(
    row: &QueryResult,
    first: usize,
    plan: &ReadPlan<E>,
    unread: E::Model,
    held_key: Option<i64>,
) -> Result<E::Model, DbErr> {
    let mut model = unread;
    let mut at = first;
    for (index, (&column, &read)) in plan.columns.iter().zip(&plan.reads).enumerate() {
        let value = match held_key.filter(|_| Some(index) == plan.key) {
            Some(key) => key.into(),
            None => {
                at += 1;
                value_at(row, at - 1, read_of(column, read)?)?.0
            }
        };
        model.try_set(column, value).map_err(|err| DbErr::Type(format!("{}: {err}", column.as_str())))?;
    }
    Ok(model)
}

/// The key of the row left-joined at the row's columns `first..` in the
/// plan's order: `None` when no row was joined, which a NULL key tells, since
/// no row has one.
pub fn joined_key<E: EntityTrait>(row: &QueryResult, first: usize, plan: &ReadPlan<E>) -> Result<Option<i64>, DbErr> {
    let key = plan.key.ok_or_else(|| DbErr::Type("a joined row is read with its key".into()))?;
    get(row, first + key)
}

fn read_of<C: ColumnTrait>(column: C, read: Option<Read>) -> Result<Read, DbErr> {
    read.ok_or_else(|| DbErr::Type(format!("no positional read for column {}", column.as_str())))
}

/// The column's value, and whether it is NULL.
fn value_at(row: &QueryResult, index: usize, read: Read) -> Result<(Value, bool), DbErr> {
    fn typed<T>(read: Option<T>, variant: fn(Option<T>) -> Value) -> (Value, bool) {
        let is_null = read.is_none();
        (variant(read), is_null)
    }
    Ok(match read {
        Read::BigInteger => typed(get(row, index)?, Value::BigInt),
        Read::Integer => typed(get(row, index)?, Value::Int),
        Read::Boolean => typed(get(row, index)?, Value::Bool),
        Read::Text => typed(get(row, index)?, Value::String),
        Read::TimestampWithTimeZone => typed(get(row, index)?, Value::ChronoDateTimeUtc),
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
