//! Relay cursor connections over keyset pagination by primary key: stable under
//! inserts, and each page costs one select, plus one count when `totalCount`
//! is asked for.
//!
//! For the complexity limit a connection field costs `first` times its
//! selection (the `complexity` attribute on each connection field). An
//! out-of-range `first` costs one page, so that the resolver, not the
//! complexity check, answers it with BAD_USER_INPUT naming `first`.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use async_graphql::{
    Object,
    connection::{Connection, CursorType, Edge, EmptyFields},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, Iterable, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
};

use crate::error::{ApiError, ApiResult};

pub const MAX_PAGE_SIZE: i32 = 100;

/// Counts the items of every page, when asked.
pub type Count = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, DbErr>> + Send + Sync>;

/// Extra connection fields.
pub struct ConnectionTotals {
    count: Count,
}

#[Object]
impl ConnectionTotals {
    /// How many items match, across all pages.
    async fn total_count(&self) -> async_graphql::Result<u64> {
        Ok((self.count)().await.map_err(ApiError::from)?)
    }
}

pub type Page<T> = Connection<Cursor, T, ConnectionTotals, EmptyFields>;

/// An edge's cursor: its row's id, encoded only if the client selects the
/// cursor, which a scrolling feed reads for the last edge alone (`endCursor`).
pub struct Cursor(i64);

impl CursorType for Cursor {
    type Error = ApiError;

    fn decode_cursor(cursor: &str) -> ApiResult<Self> {
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix('k').and_then(|id| id.parse().ok()))
            .map(Self)
            .ok_or_else(|| ApiError::bad_input("after", "not a valid cursor"))
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("k{}", self.0))
    }
}

/// A validated `first` / `after` pair.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    first: u64,
    after: Option<i64>,
}

impl PageRequest {
    pub fn new(first: i32, after: Option<&str>) -> ApiResult<Self> {
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::bad_input("first", format!("must be between 1 and {MAX_PAGE_SIZE}")));
        }
        let after = after.map(Cursor::decode_cursor).transpose()?.map(|Cursor(id)| id);
        Ok(Self { first: first as u64, after })
    }

    /// How many rows a page reads: one more than asked for, to tell whether
    /// a next page exists.
    pub fn limit(&self) -> u64 {
        self.first + 1
    }

    /// The id the page starts after.
    pub fn after(&self) -> Option<i64> {
        self.after
    }
}

/// Runs `select` (already scoped to what the caller may see) for one page,
/// ordered by `id_column`, and maps each row to its GraphQL node.
pub async fn fetch<E, T>(
    db: &DatabaseConnection,
    select: Select<E>,
    id_column: E::Column,
    id_of: impl Fn(&E::Model) -> i64,
    request: PageRequest,
    into_node: impl Fn(E::Model) -> T,
) -> ApiResult<Page<T>>
where
    E: EntityTrait,
    E::Model: Sync,
    T: async_graphql::OutputType,
{
    // Counted only if the client selects `totalCount`: lists shown as a
    // scrolling feed do not pay for it.
    let (counted, count_db) = (select.clone().select_only().column(id_column), db.clone());
    let count: Count = Arc::new(move || {
        let (select, db) = (counted.clone(), count_db.clone());
        Box::pin(async move { select.count(&db).await })
    });
    let rows = page_of(select, id_column, &request).columns(E::Column::iter()).all(db).await?;
    Ok(page_from(rows, &request, id_of, into_node, count))
}

/// The page `request` asks for, of `rows` read for it (see
/// [`PageRequest::limit`]), with `count` for its `totalCount`.
pub fn page_from<R, T: async_graphql::OutputType>(
    mut rows: Vec<R>,
    request: &PageRequest,
    id_of: impl Fn(&R) -> i64,
    into_node: impl Fn(R) -> T,
    count: Count,
) -> Page<T> {
    let has_next_page = rows.len() as u64 > request.first;
    rows.truncate(request.first as usize);
    let mut connection =
        Connection::with_additional_fields(request.after.is_some(), has_next_page, ConnectionTotals { count });
    connection.edges.extend(rows.into_iter().map(|row| Edge::new(Cursor(id_of(&row)), into_node(row))));
    connection
}

/// The rows of `select` on the requested page, plus one to tell whether a next
/// page exists, ordered by `id_column`, with no columns listed: the reader
/// lists those it reads. The page's ids are picked first and its rows read by
/// id after: where no index yields the visible rows in id order, the sort then
/// carries the ids of every visible row, not whole rows and whatever the page
/// joins to them.
pub fn page_of<E: EntityTrait>(select: Select<E>, id_column: E::Column, request: &PageRequest) -> Select<E> {
    page_of_ids(select, id_column, request.limit(), request.after)
}

/// Like [`page_of`], for `limit` rows after the id `after`.
pub fn page_of_ids<E: EntityTrait>(
    select: Select<E>,
    id_column: E::Column,
    limit: u64,
    after: Option<i64>,
) -> Select<E> {
    let mut ids = select.select_only().column(id_column).order_by_asc(id_column).limit(limit);
    if let Some(after) = after {
        ids = ids.filter(id_column.gt(after));
    }
    select_from::<E>().filter(id_column.in_subquery(ids.into_query())).order_by_asc(id_column)
}

/// `E::find()` with no columns listed, for a query that lists those it reads.
/// `find` lists every column, building each one's definition, only for a page
/// to replace them: for an order's 31 columns that took about as many
/// instructions as writing the page's SQL. So it runs once per table.
pub fn select_from<E: EntityTrait>() -> Select<E> {
    static BARE: LazyLock<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>> = LazyLock::new(Default::default);
    // Each entry is inserted whole, so a panic elsewhere cannot leave one half-made.
    let mut bare = BARE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let select = bare.entry(TypeId::of::<E>()).or_insert_with(|| Box::new(E::find().select_only()));
    select.downcast_ref::<Select<E>>().cloned().unwrap_or_else(|| E::find().select_only())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_page_size_and_cursor() {
        assert!(PageRequest::new(0, None).is_err());
        assert!(PageRequest::new(101, None).is_err());
        assert!(PageRequest::new(100, None).is_ok());
        assert_eq!(PageRequest::new(5, Some(&Cursor(42).encode_cursor())).unwrap().after, Some(42));
        assert!(PageRequest::new(5, Some("not a cursor")).is_err());
    }
}
