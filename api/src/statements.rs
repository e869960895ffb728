//! Statements whose SQL is written once per shape, not once per request.
//!
//! Building a page's query with SeaQuery and writing its SQL took about a
//! tenth of a resident's list request, and a submission's statement a fifth
//! of the server's work on it; yet two requests that differ only in the ids,
//! numbers, instants, texts and limits they bind run the same SQL. A
//! [`Templates`] keeps, per shape, that SQL and where each bound value comes
//! from, and fills in a request's values.
//!
//! What varies between requests of one shape reaches the statement only
//! through [`Parameters`], which the builder reads. A template is made by
//! building the statement with every parameter replaced by a sentinel no
//! request holds, so each bound value is traced to its parameter or found to
//! be a constant of the shape. It is kept only if a build with other
//! sentinels, and one with the first request's values, are exactly the
//! template filled with them: a value that also shows in the SQL, or a
//! constant that varies, leaves the shape unkept, and its statements are
//! built each time.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseBackend, IdenStatic, Statement, StatementBuilder, Value};

/// Templates kept per kind of statement. Clients choose shapes through their
/// selections and filters, so the number kept is bounded; past it, a new
/// shape's statements are built each time.
const MOST_TEMPLATES: usize = 512;

/// Which parameters are given is kept in a mask of this many bits; a
/// statement with more parameters is built each time.
const MOST_PARAMETERS: usize = 64;

/// A value a statement binds that varies between requests of one shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Parameter {
    Id(i64),
    Number(i64),
    Instant(DateTime<Utc>),
    Text(String),
    Limit(u64),
}

impl Parameter {
    fn value(&self) -> Value {
        match self {
            Self::Id(id) | Self::Number(id) => (*id).into(),
            Self::Instant(instant) => (*instant).into(),
            Self::Text(text) => text.clone().into(),
            Self::Limit(limit) => (*limit).into(),
        }
    }

    /// A value of the same kind that no request holds, one per round and
    /// position.
    fn sentinel(&self, round: u8, position: usize) -> Self {
        let nth = u64::from(round) * 64 + position as u64;
        match self {
            Self::Id(_) => Self::Id(i64::MIN + 1 + nth as i64),
            Self::Number(_) => Self::Number(i64::MIN + 1 + nth as i64),
            Self::Instant(_) => Self::Instant(DateTime::<Utc>::MIN_UTC + Duration::seconds(nth as i64 + 1)),
            Self::Text(_) => Self::Text(format!("\u{1}sentinel {round} {position}\u{1}")),
            Self::Limit(_) => Self::Limit(u64::MAX - nth),
        }
    }
}

/// The parameters of one statement, by position; which are given is part of
/// the shape, as a missing filter changes the SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters(Vec<Option<Parameter>>);

impl Parameters {
    pub fn new(parameters: Vec<Option<Parameter>>) -> Self {
        Self(parameters)
    }

    pub fn id(&self, position: usize) -> Option<i64> {
        match self.0.get(position) {
            Some(Some(Parameter::Id(id))) => Some(*id),
            _ => None,
        }
    }

    pub fn number(&self, position: usize) -> Option<i64> {
        match self.0.get(position) {
            Some(Some(Parameter::Number(number))) => Some(*number),
            _ => None,
        }
    }

    pub fn instant(&self, position: usize) -> Option<DateTime<Utc>> {
        match self.0.get(position) {
            Some(Some(Parameter::Instant(instant))) => Some(*instant),
            _ => None,
        }
    }

    pub fn text(&self, position: usize) -> Option<&str> {
        match self.0.get(position) {
            Some(Some(Parameter::Text(text))) => Some(text),
            _ => None,
        }
    }

    pub fn limit(&self, position: usize) -> Option<u64> {
        match self.0.get(position) {
            Some(Some(Parameter::Limit(limit))) => Some(*limit),
            _ => None,
        }
    }

    fn given(&self) -> u64 {
        self.0.iter().enumerate().filter(|(_, given)| given.is_some()).fold(0, |mask, (at, _)| mask | 1 << at)
    }

    fn sentinels(&self, round: u8) -> Self {
        let each = self.0.iter().enumerate();
        Self(each.map(|(at, given)| given.as_ref().map(|parameter| parameter.sentinel(round, at))).collect())
    }
}

/// Where a template's bound value comes from.
#[derive(Debug, PartialEq)]
enum Slot {
    Parameter(usize),
    Constant(Value),
}

#[derive(Debug)]
struct Template {
    sql: String,
    slots: Vec<Slot>,
}

impl Template {
    /// The template of `shape`'s statements, if the shape binds its
    /// parameters as values only.
    fn of<K, S: StatementBuilder>(
        backend: DatabaseBackend,
        shape: &K,
        parameters: &Parameters,
        build: impl Fn(&K, &Parameters) -> S,
    ) -> Option<Self> {
        let sentinels = parameters.sentinels(0);
        let traced = backend.build(&build(shape, &sentinels));
        let slot_of = |value: Value| {
            let parameter =
                sentinels.0.iter().position(|sentinel| sentinel.as_ref().map(Parameter::value) == Some(value.clone()));
            parameter.map_or(Slot::Constant(value), Slot::Parameter)
        };
        let values = traced.values.map(|values| values.0).unwrap_or_default();
        let template = Self { sql: traced.sql, slots: values.into_iter().map(slot_of).collect() };
        // Checked against other sentinels, and against the request's own values.
        let others = parameters.sentinels(1);
        let fits = |parameters: &Parameters| {
            template.fill(backend, parameters).is_some_and(|filled| filled == backend.build(&build(shape, parameters)))
        };
        (fits(&others) && fits(parameters)).then_some(template)
    }

    /// The statement with `parameters` bound; `None` if one the template
    /// binds is not given (the shape's key says which are, so never).
    fn fill(&self, backend: DatabaseBackend, parameters: &Parameters) -> Option<Statement> {
        let value = |slot: &Slot| match slot {
            Slot::Parameter(at) => parameters.0.get(*at)?.as_ref().map(Parameter::value),
            Slot::Constant(value) => Some(value.clone()),
        };
        let values = self.slots.iter().map(value).collect::<Option<Vec<_>>>()?;
        Some(Statement::from_sql_and_values(backend, self.sql.clone(), values))
    }
}

/// By shape, then by backend and which parameters are given: a template, or
/// `None` for a shape found to bind a parameter other than as a value.
type Kept<K> = HashMap<K, Vec<(u8, u64, Option<Arc<Template>>)>, foldhash::fast::RandomState>;

/// The templates of one kind of statement, by shape `K`: whatever besides
/// its [`Parameters`] the statement is built from.
pub struct Templates<K> {
    kept: Mutex<Store<K>>,
}

struct Store<K> {
    by_shape: Kept<K>,
    templates: usize,
}

impl<K> Default for Templates<K> {
    fn default() -> Self {
        Self { kept: Mutex::new(Store { by_shape: HashMap::default(), templates: 0 }) }
    }
}

impl<K: Hash + Eq + Clone> Templates<K> {
    /// The statement `build` makes of `shape` and `parameters`, from the
    /// shape's template when it has one. `build` must read everything that
    /// varies within a shape from `parameters`, and choose its SQL by which
    /// of them are given, never by their values.
    pub fn statement<S: StatementBuilder>(
        &self,
        backend: DatabaseBackend,
        shape: &K,
        parameters: &Parameters,
        build: impl Fn(&K, &Parameters) -> S,
    ) -> Statement {
        if parameters.0.len() > MOST_PARAMETERS {
            return backend.build(&build(shape, parameters));
        }
        let (backend_key, given) = (backend_key(backend), parameters.given());
        let found = self.kept().by_shape.get(shape).and_then(|variants| {
            let variant = variants.iter().find(|(backend, mask, _)| (*backend, *mask) == (backend_key, given));
            variant.map(|(_, _, template)| template.clone())
        });
        let template = match found {
            Some(template) => template,
            None => {
                let template = Template::of(backend, shape, parameters, &build).map(Arc::new);
                let mut guard = self.kept();
                let kept = &mut *guard;
                if kept.templates < MOST_TEMPLATES {
                    let variants = kept.by_shape.entry(shape.clone()).or_default();
                    // Another request of the shape may have made it meanwhile.
                    if !variants.iter().any(|(backend, mask, _)| (*backend, *mask) == (backend_key, given)) {
                        variants.push((backend_key, given, template.clone()));
                        kept.templates += 1;
                    }
                }
                template
            }
        };
        template
            .and_then(|template| template.fill(backend, parameters))
            .unwrap_or_else(|| backend.build(&build(shape, parameters)))
    }

    /// Asserts that the statement for `shape` and `parameters` is the one
    /// `build` makes directly.
    #[cfg(test)]
    pub(crate) fn assert_builds_as_directly<S: StatementBuilder>(
        &self,
        backend: DatabaseBackend,
        shape: &K,
        parameters: &Parameters,
        build: impl Fn(&K, &Parameters) -> S,
    ) {
        assert_eq!(self.statement(backend, shape, parameters, &build), backend.build(&build(shape, parameters)));
    }

    /// How many shapes' variants have a template, and how many were found
    /// to have none.
    #[cfg(test)]
    pub(crate) fn kept_and_unkept(&self) -> (usize, usize) {
        let store = self.kept();
        let variants = || store.by_shape.values().flatten();
        let kept = variants().filter(|(_, _, template)| template.is_some()).count();
        (kept, variants().count() - kept)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Store<K>> {
        // Each entry is inserted whole, so a panic elsewhere cannot leave one half-made.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Columns in the order a statement reads them, as part of a shape: the
/// entities' column types are neither `Eq` nor `Hash`, their names are.
#[derive(Debug, Clone)]
pub struct Columns<C>(pub Vec<C>);

impl<C: IdenStatic> PartialEq for Columns<C> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(one, other)| one.as_str() == other.as_str())
    }
}

impl<C: IdenStatic> Eq for Columns<C> {}

impl<C: IdenStatic> Hash for Columns<C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().for_each(|column| column.as_str().hash(state));
    }
}

/// `DatabaseBackend` is not `Hash`.
fn backend_key(backend: DatabaseBackend) -> u8 {
    match backend {
        DatabaseBackend::Sqlite => 0,
        DatabaseBackend::Postgres => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use entity::repair_order::{self, Column};
    use sea_orm::{
        ColumnTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
        sea_query::{Expr, ExprTrait, SelectStatement},
    };

    use super::*;

    /// Orders of a unit, after an id, created before an instant, described
    /// like a text, with a limit; the unit optional.
    fn orders(inline_unit: &bool, parameters: &Parameters) -> SelectStatement {
        let mut select = repair_order::Entity::find().select_only().column(Column::Id);
        if let Some(unit) = parameters.id(0) {
            select = match inline_unit {
                true => select.filter(Expr::cust(format!("unit_id = {unit}"))),
                false => select.filter(Column::UnitId.eq(unit)),
            };
        }
        let select = select
            .filter(Column::Id.gt(parameters.id(1).unwrap_or_default()))
            .filter(Column::CreatedAt.lt(parameters.instant(2).unwrap_or_default()))
            .filter(Expr::col(Column::Description).like(parameters.text(3).unwrap_or_default()))
            .filter(Column::ResponseOverdue.eq(true));
        select.limit(parameters.limit(4).unwrap_or_default()).into_query()
    }

    fn parameters(unit: Option<i64>, after: i64) -> Parameters {
        let created = DateTime::from_timestamp(1_700_000_000 + after, 0).expect("an instant");
        Parameters::new(vec![
            unit.map(Parameter::Id),
            Some(Parameter::Id(after)),
            Some(Parameter::Instant(created)),
            Some(Parameter::Text(format!("%漏水 {after}%"))),
            Some(Parameter::Limit(21 + after as u64)),
        ])
    }

    #[test]
    fn a_shape_is_written_once_and_binds_each_requests_values() {
        let templates = Templates::default();
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            for unit in [Some(7), None, Some(8)] {
                for after in [0, 40, 41] {
                    let parameters = parameters(unit, after);
                    templates.assert_builds_as_directly(backend, &false, &parameters, orders);
                }
            }
        }
        // One per backend and per set of parameters given: with a unit and without.
        assert_eq!(templates.kept_and_unkept(), (4, 0));
    }

    #[test]
    fn a_shape_that_writes_a_value_into_its_sql_is_built_each_time() {
        let templates = Templates::default();
        for unit in [Some(7), Some(8), None] {
            let parameters = parameters(unit, 1);
            templates.assert_builds_as_directly(DatabaseBackend::Sqlite, &true, &parameters, orders);
        }
        // Without a unit nothing is written into the SQL.
        assert_eq!(templates.kept_and_unkept(), (1, 1));
    }

    #[test]
    fn a_shape_that_binds_a_value_worked_out_from_a_parameter_is_built_each_time() {
        let next_page = |_: &(), parameters: &Parameters| {
            let after = parameters.id(0).unwrap_or_default();
            repair_order::Entity::find().select_only().filter(Column::Id.gt(after + 1)).into_query()
        };
        let templates = Templates::default();
        for after in [3, 4] {
            let parameters = Parameters::new(vec![Some(Parameter::Id(after))]);
            templates.assert_builds_as_directly(DatabaseBackend::Postgres, &(), &parameters, next_page);
        }
        assert_eq!(templates.kept_and_unkept(), (0, 1));
    }

    #[test]
    fn a_shape_whose_sql_a_value_chooses_is_built_each_time() {
        let own_or_public = |_: &(), parameters: &Parameters| {
            let select = repair_order::Entity::find().select_only();
            match parameters.id(0).unwrap_or_default() {
                id if id > 0 => select.filter(Column::UnitId.eq(id)),
                _ => select.filter(Column::UnitId.is_null()),
            }
            .into_query()
        };
        let templates = Templates::default();
        for unit in [7, -1, 8] {
            let parameters = Parameters::new(vec![Some(Parameter::Id(unit))]);
            templates.assert_builds_as_directly(DatabaseBackend::Sqlite, &(), &parameters, own_or_public);
        }
        assert_eq!(templates.kept_and_unkept(), (0, 1));
    }

    #[test]
    fn a_statement_with_more_parameters_than_the_mask_holds_is_built_each_time() {
        let of_units = |_: &(), parameters: &Parameters| {
            let units = (0..parameters.0.len()).filter_map(|at| parameters.number(at));
            repair_order::Entity::find().select_only().filter(Column::UnitId.is_in(units)).into_query()
        };
        let templates = Templates::default();
        for count in [MOST_PARAMETERS, MOST_PARAMETERS + 1, MOST_PARAMETERS + 8] {
            let parameters = Parameters::new((0..count as i64).map(|unit| Some(Parameter::Number(unit))).collect());
            templates.assert_builds_as_directly(DatabaseBackend::Postgres, &(), &parameters, of_units);
        }
        // Only the statement whose parameters fit the mask has a template.
        assert_eq!(templates.kept_and_unkept(), (1, 0));
    }

    #[test]
    fn shapes_past_the_most_kept_are_built_each_time() {
        let by_limit = |limit: &u64, _: &Parameters| repair_order::Entity::find().limit(*limit).into_query();
        let templates = Templates::default();
        let parameters = Parameters::new(vec![]);
        for limit in 0..MOST_TEMPLATES as u64 + 10 {
            templates.assert_builds_as_directly(DatabaseBackend::Sqlite, &limit, &parameters, by_limit);
        }
        assert_eq!(templates.kept().templates, MOST_TEMPLATES);
        assert_eq!(templates.kept().by_shape.len(), MOST_TEMPLATES);
    }
}
