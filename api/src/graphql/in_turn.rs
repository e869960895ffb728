//! Objects whose fields are resolved one after another where that reads the
//! same batches as resolving them concurrently.
//!
//! The engine resolves each object's selected fields concurrently, as a task
//! each. For a resident's page of orders, where nearly every field is read
//! from rows already in memory, that machinery took about a tenth of the
//! server's time (S2 in `bench/RESULTS.md`). Concurrency pays only when two
//! or more of an object's fields wait for a query: each relation's batch
//! loader then gathers every row's keys at once. With at most one field that
//! waits, every object on a page reaches it in the same pass either way, so
//! the batches, and the statements, are the same.

use std::{borrow::Cow, collections::HashMap};

use async_graphql::{
    ContainerType, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
    indexmap::IndexMap,
    parser::types::{Field, FragmentDefinition, Selection, SelectionSet},
    registry::Registry,
    resolver_utils::{resolve_container, resolve_container_serial},
};

/// What may make a field of the object wait for a query.
pub trait Waits {
    /// Whether resolving `field`, one of `selected` on this object, may wait
    /// for a query. By default a field with a selection of its own may (a
    /// related object or list), and a field without one reads what the
    /// object holds.
    fn may_wait(&self, _ctx: &ContextSelectionSet<'_>, _selected: Selected<'_>, field: &Field) -> bool {
        has_selection(field)
    }
}

pub fn has_selection(field: &Field) -> bool {
    !field.selection_set.node.items.is_empty()
}

/// The fields of a selection set, those of its fragments included whatever
/// their type condition and directives: a field counted that a fragment does
/// not apply only makes an object resolve concurrently, as before.
#[derive(Clone, Copy)]
pub struct Selected<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    set: &'a SelectionSet,
}

impl<'a> Selected<'a> {
    /// The fields selected under `field`, one of these.
    pub fn under(self, field: &'a Field) -> Self {
        Self { set: &field.selection_set.node, ..self }
    }

    /// Whether `test` holds for any field selected, trying them in order.
    pub fn any(self, test: &mut impl FnMut(&'a Field) -> bool) -> bool {
        self.set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => test(&field.node),
            Selection::FragmentSpread(spread) => self
                .fragments
                .get(&spread.node.fragment_name.node)
                .is_some_and(|fragment| Self { set: &fragment.node.selection_set.node, ..self }.any(test)),
            Selection::InlineFragment(inline) => Self { set: &inline.node.selection_set.node, ..self }.any(test),
        })
    }
}

/// `T` as the same GraphQL object, resolved field after field when at most
/// one of its selected fields may wait.
pub struct InTurn<T>(pub T);

impl<T: OutputType + ContainerType + Waits> OutputType for InTurn<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<Value> {
        let selected = Selected { fragments: &ctx.query_env.fragments, set: &ctx.item.node };
        let mut waiting = 0;
        let two_wait = selected.any(&mut |field| {
            waiting += usize::from(self.0.may_wait(ctx, selected, field));
            waiting > 1
        });
        if two_wait {
            resolve_container(ctx, &self.0).await
        } else if plain_fields(&ctx.item.node.items) {
            Ok(resolve_plain_fields(ctx, &self.0).await)
        } else {
            resolve_container_serial(ctx, &self.0).await
        }
    }
}

/// Whether a selection set is made of fields alone, each with no directive
/// and a response key of its own.
fn plain_fields(items: &[Positioned<Selection>]) -> bool {
    items.iter().enumerate().all(|(at, item)| match &item.node {
        Selection::Field(field) => {
            let key = &field.node.response_key().node;
            field.node.directives.is_empty()
                && !items[..at]
                    .iter()
                    .any(|seen| matches!(&seen.node, Selection::Field(seen) if seen.node.response_key().node == *key))
        }
        _ => false,
    })
}

/// Resolves the fields of a plain selection set (see `plain_fields`) one
/// after another, as the engine's serial resolution does for a schema with no
/// extensions (this one has none) and fields with no directives: each
/// field's value under its response key, in order, and a field that fails
/// left out, its error added to the response's. The engine would box each
/// field's future and grow the object's map as fields arrive; a page's
/// objects are resolved here, so it does neither.
async fn resolve_plain_fields<T: ContainerType + OutputType>(ctx: &ContextSelectionSet<'_>, root: &T) -> Value {
    let items = &ctx.item.node.items;
    let mut object = IndexMap::with_capacity(items.len());
    for item in items {
        let Selection::Field(field) = &item.node else { continue };
        let ctx_field = ctx.with_field(field);
        let key = field.node.response_key().node.clone();
        let value = if field.node.name.node == "__typename" {
            Ok(Some(Value::String(root.introspection_type_name().into_owned())))
        } else {
            root.resolve_field(&ctx_field).await
        };
        match value {
            Ok(value) => {
                object.insert(key, value.unwrap_or_default());
            }
            Err(error) => ctx.add_error(error),
        }
    }
    if object.is_empty() { Value::Null } else { Value::Object(object) }
}
