use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder, dataloader::DataLoader};
use entity::{building, community, unit, user};

use super::{
    error_codes::ErrorCodes,
    loader::{ById, CurrentMembershipsByUnit},
};
use crate::{
    AppContext,
    identity::{IdentityMutation, IdentityQuery},
    property::{PropertyMutation, PropertyQuery},
};

pub const MAX_QUERY_DEPTH: usize = 10;
pub const MAX_QUERY_COMPLEXITY: usize = 1000;

#[derive(MergedObject, Default)]
pub struct Query(IdentityQuery, PropertyQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(IdentityMutation, PropertyMutation);

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_QUERY_DEPTH)
        .limit_complexity(MAX_QUERY_COMPLEXITY)
        .extension(ErrorCodes)
}

/// The executable schema: the application context and the shared batch loaders.
pub fn build_schema(app: Arc<AppContext>) -> AppSchema {
    let db = app.db.clone();
    builder()
        .data(DataLoader::new(ById::<community::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<building::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<unit::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(ById::<user::Entity>::new(db.clone()), tokio::spawn))
        .data(DataLoader::new(CurrentMembershipsByUnit::new(db), tokio::spawn))
        .data(app)
        .finish()
}

/// The SDL the server serves, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
