use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use entity::unit_membership;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::{auth::Principal, property::scope};

/// Each person's current memberships of units the viewer may see. It carries
/// the viewer's scope, so it is created per request.
pub struct VisibleMembershipsByResident {
    db: DatabaseConnection,
    viewer: Principal,
}

impl VisibleMembershipsByResident {
    pub fn new(db: DatabaseConnection, viewer: Principal) -> Self {
        Self { db, viewer }
    }
}

impl Loader<i64> for VisibleMembershipsByResident {
    type Value = Vec<unit_membership::Model>;
    type Error = Arc<DbErr>;

    async fn load(&self, user_ids: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        let rows = unit_membership::Entity::find()
            .filter(unit_membership::Column::UserId.is_in(user_ids.iter().copied()))
            .filter(unit_membership::Column::MovedOutOn.is_null())
            .filter(scope::memberships(&self.viewer))
            .order_by_asc(unit_membership::Column::Id)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<i64, Self::Value> = HashMap::new();
        for row in rows {
            grouped.entry(row.user_id).or_default().push(row);
        }
        Ok(grouped)
    }
}
