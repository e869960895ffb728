use std::sync::Arc;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder, dataloader::DataLoader};
use entity::{building, community, repair_follow_up, repair_order_change, repair_photo, unit, user};

use super::{
    error_codes::ErrorCodes,
    loader::{ById, ChildrenOf, CurrentMembershipsByUnit},
};
use crate::{
    AppContext,
    identity::{IdentityMutation, IdentityQuery},
    integrations::{IntegrationMutation, IntegrationQuery},
    parcel::{ParcelMutation, ParcelQuery, ParcelSubscription},
    property::{PropertyMutation, PropertyQuery},
    repair::{RepairMutation, RepairQuery, RepairSubscription},
};

pub const MAX_QUERY_DEPTH: usize = 10;
pub const MAX_QUERY_COMPLEXITY: usize = 1000;

#[derive(MergedObject, Default)]
pub struct Query(IdentityQuery, PropertyQuery, RepairQuery, ParcelQuery, IntegrationQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(IdentityMutation, PropertyMutation, RepairMutation, ParcelMutation, IntegrationMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(RepairSubscription, ParcelSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
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
    builder().finish().sdl()
}
