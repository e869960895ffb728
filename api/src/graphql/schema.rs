use std::sync::Arc;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder, ValidationMode, dataloader::DataLoader};
use entity::{building, community, repair_follow_up, repair_order_change, repair_photo, unit, user};

use super::loader::{ById, ChildrenOf, CurrentMembershipsByUnit};
use crate::{
    AppContext,
    config::Settings,
    identity::{IdentityMutation, IdentityQuery},
    integrations::{IntegrationMutation, IntegrationQuery},
    parcel::{ParcelMutation, ParcelQuery, ParcelSubscription},
    property::{PropertyMutation, PropertyQuery},
    repair::{RepairMutation, RepairQuery, RepairSubscription},
};

#[derive(MergedObject, Default)]
pub struct Query(IdentityQuery, PropertyQuery, RepairQuery, ParcelQuery, IntegrationQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(IdentityMutation, PropertyMutation, RepairMutation, ParcelMutation, IntegrationMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(RepairSubscription, ParcelSubscription);

pub type Engine = Schema<Query, Mutation, Subscription>;

/// The schema, built twice, differing only in how much each request's
/// document is validated. Validation depends on nothing but the document, the
/// operation chosen and the variables, so a request the strict schema has
/// already accepted with all three the same would pass again; running it on
/// `validated` skips only that repetition (see `documents`). The limits
/// (depth, complexity, fragment cycles) are checked by both. Each has its
/// own batch loaders; they keep no cache, so only batching is split.
#[derive(Clone)]
pub struct AppSchema {
    /// Checks every rule of the specification.
    pub strict: Engine,
    /// Checks only the limits.
    pub validated: Engine,
}

/// No engine extensions: `InTurn` resolves a page's objects as the engine
/// does for a schema without them (see `graphql::in_turn`).
fn builder(settings: &Settings) -> SchemaBuilder<Query, Mutation, Subscription> {
    let mut builder = Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(settings.max_query_depth)
        .limit_complexity(settings.max_query_complexity)
        .limit_recursive_depth(settings.max_recursive_depth)
        .limit_directives(settings.max_directives);
    if !settings.introspection_enabled() {
        builder = builder.disable_introspection();
    }
    if settings.is_production() {
        // Suggestions ("did you mean …") would map the schema for an attacker.
        builder = builder.disable_suggestions();
    }
    builder
}

/// The executable schema: the application context and the shared batch loaders.
pub fn build_schema(app: Arc<AppContext>) -> AppSchema {
    AppSchema { strict: engine(app.clone(), ValidationMode::Strict), validated: engine(app, ValidationMode::Fast) }
}

fn engine(app: Arc<AppContext>, validation: ValidationMode) -> Engine {
    let db = app.db.clone();
    builder(&app.settings)
        .validation_mode(validation)
        .data(DataLoader::new(ById::<community::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<building::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<unit::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<user::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(CurrentMembershipsByUnit::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(
            ChildrenOf::<repair_order_change::Entity>::new(db.clone(), repair_order_change::Column::OrderId),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            ChildrenOf::<repair_photo::Entity>::new(db.clone(), repair_photo::Column::OrderId),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            ChildrenOf::<repair_follow_up::Entity>::new(db, repair_follow_up::Column::OrderId),
            tokio::spawn,
        ))
        .data(app)
        .finish()
}

/// The SDL the server serves, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder(&Settings::default()).finish().sdl()
}
