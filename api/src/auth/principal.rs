use entity::enums::{Role, StaffPosition};

/// An authenticated person, as read from a verified access token.
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

/// What an integrator's client credentials allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    ParcelsRead,
    ParcelsWrite,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::ParcelsRead, Scope::ParcelsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ParcelsRead => "parcels:read",
            Scope::ParcelsWrite => "parcels:write",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    /// Parses a space-separated scope list, skipping unknown scopes.
    pub fn parse_list(text: &str) -> Vec<Scope> {
        text.split_whitespace().filter_map(Scope::parse).collect()
    }

    pub fn format_list(scopes: &[Scope]) -> String {
        scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(" ")
    }
}

/// A third-party system calling with client credentials, limited to its
/// scopes and its community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrator {
    pub client_id: i64,
    pub community_id: i64,
    pub scopes: Vec<Scope>,
}

impl Integrator {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Whoever presented a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(Principal),
    Integrator(Integrator),
}
