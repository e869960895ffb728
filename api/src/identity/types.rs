use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SelectionField, SimpleObject, dataloader::DataLoader,
};
use chrono::{DateTime, Utc};
use entity::user;

use super::loader::VisibleMembershipsByResident;
use crate::{
    error::ApiError,
    graphql::{
        ContextExt, boxed_wait,
        ids::{self, Kind},
        in_turn::Waits,
        loader::{ColumnsRead, columns_named},
    },
    property::types::{Building, Community, Membership},
};

/// What kind of account a person has.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::Role")]
pub enum Role {
    /// 业主/租户/家属: lives in one or more units.
    Resident,
    /// 物业管家: the one-stop contact for the residents of assigned buildings.
    Butler,
    /// Customer-service and engineering staff; see `position`.
    Staff,
}

/// A staff member's job.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::StaffPosition")]
pub enum StaffPosition {
    /// 前台接待
    FrontDesk,
    /// 工程维修
    Technician,
    /// 客务主管
    Supervisor,
    /// 客服部经理
    Manager,
}

/// Masks a phone number as 138****1234: residents' numbers are confidential.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "****".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// A person known to the system: a resident, a butler or a staff member.
pub struct User(pub Arc<user::Model>);

impl From<user::Model> for User {
    fn from(model: user::Model) -> Self {
        Self(Arc::new(model))
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ids::encode(Kind::User, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The full number for staff, for butlers and for the person themself;
    /// masked (138****1234) for other residents.
    async fn phone(&self, ctx: &Context<'_>) -> Result<String> {
        let viewer = ctx.principal()?;
        let full = !viewer.is_resident() || viewer.user_id == self.0.id;
        Ok(if full { self.0.phone.clone() } else { mask_phone(&self.0.phone) })
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn position(&self) -> Option<StaffPosition> {
        self.0.position.map(Into::into)
    }
    /// The person's current units among those the viewer may see.
    async fn units(&self, ctx: &Context<'_>) -> Result<Vec<Membership>> {
        let Some(loader) = ctx.data_opt::<DataLoader<VisibleMembershipsByResident>>() else {
            return Err(ApiError::Unauthenticated("authentication required").into());
        };
        let memberships = boxed_wait(loader.load_one(self.0.id))
            .await
            .map_err(|err| ApiError::Internal(format!("batch load failed: {err}")))?
            .unwrap_or_default();
        Ok(memberships.into_iter().map(Membership).collect())
    }
}

impl Waits for User {}

impl ColumnsRead for user::Entity {
    fn columns_read_by<'a>(fields: impl Iterator<Item = SelectionField<'a>>) -> Vec<user::Column> {
        use user::Column::*;
        columns_named::<user::Entity>(fields.map(|field| -> Option<&'static [user::Column]> {
            Some(match field.name() {
                "__typename" | "id" | "units" => &[],
                "name" => &[Name],
                "phone" => &[Phone],
                "role" => &[Role],
                "position" => &[Position],
                _ => return None,
            })
        }))
    }
}

/// The signed-in person, with what their role gives them.
pub struct Viewer(pub user::Model);

#[Object]
impl Viewer {
    async fn id(&self) -> ID {
        ids::encode(Kind::User, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn phone(&self) -> &str {
        &self.0.phone
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn position(&self) -> Option<StaffPosition> {
        self.0.position.map(Into::into)
    }
    /// A resident's current units, each with the resident's relation to it.
    async fn units(&self, ctx: &Context<'_>) -> Result<Vec<Membership>> {
        let memberships = boxed_wait(super::service::current_memberships(ctx.db(), self.0.id)).await?;
        Ok(memberships.into_iter().map(Membership).collect())
    }
    /// A butler's assigned buildings; empty for other roles.
    async fn buildings(&self, ctx: &Context<'_>) -> Result<Vec<Building>> {
        let buildings = boxed_wait(super::service::assigned_buildings(ctx.db(), self.0.id)).await?;
        Ok(buildings.into_iter().map(Building::from).collect())
    }
    /// The community a butler or staff member works for, or a resident lives in.
    async fn community(&self, ctx: &Context<'_>) -> Result<Option<Community>> {
        Ok(boxed_wait(super::service::viewer_community(ctx.db(), &self.0)).await?.map(Community::from))
    }
}

#[derive(InputObject)]
pub struct LoginInput {
    pub phone: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct RefreshTokenInput {
    /// The refresh token from the last login or refresh; it works once.
    pub refresh_token: String,
}

#[derive(InputObject)]
pub struct LogoutInput {
    pub refresh_token: String,
}

/// A signed-in session: send `accessToken` as `Authorization: Bearer …`; before
/// it expires, trade `refreshToken` for a new pair with `refreshToken`.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub viewer: Viewer,
}

#[derive(SimpleObject)]
pub struct LogoutPayload {
    /// False when the token was unknown or already ended.
    pub revoked: bool,
}

/// Filters for the resident directory; all given filters must match.
#[derive(InputObject, Default)]
pub struct ResidentFilter {
    /// Part of a name, phone number or unit number.
    pub search: Option<String>,
    pub building_id: Option<ID>,
    pub unit_id: Option<ID>,
}

#[derive(InputObject, Default)]
pub struct StaffMemberFilter {
    pub role: Option<Role>,
    pub position: Option<StaffPosition>,
}

/// A butler account in the manager's community.
#[derive(InputObject)]
pub struct CreateButlerAccountInput {
    pub phone: String,
    pub name: String,
    /// 8–128 characters.
    pub password: String,
}

/// A staff account in the manager's community.
#[derive(InputObject)]
pub struct CreateStaffAccountInput {
    pub phone: String,
    pub name: String,
    pub position: StaffPosition,
    /// 8–128 characters.
    pub password: String,
}

#[derive(SimpleObject)]
pub struct CreateAccountPayload {
    pub user: User,
}

#[derive(InputObject)]
pub struct ButlerAssignmentInput {
    pub butler_id: ID,
    pub building_id: ID,
}

#[derive(SimpleObject)]
pub struct ButlerAssignmentPayload {
    pub butler: User,
    pub building: Building,
}

#[cfg(test)]
mod tests {
    use super::mask_phone;

    #[test]
    fn masks_the_middle_of_phone_numbers() {
        assert_eq!(mask_phone("13812341234"), "138****1234");
        assert_eq!(mask_phone("12345"), "****");
    }
}
