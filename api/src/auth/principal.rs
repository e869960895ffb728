use entity::enums::{Role, StaffPosition};

/// The authenticated caller, as read from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
    pub position: Option<StaffPosition>,
    /// Set for butlers and staff: the community they work for.
    pub community_id: Option<i64>,
}

impl Principal {
    pub fn is_resident(&self) -> bool {
        self.role == Role::Resident
    }
}
