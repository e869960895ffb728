//! The permission table: which role and position may do what, before any data
//! is read. Which rows they may touch is decided by the scoped selects in each
//! area's service.

use entity::enums::{Role, StaffPosition};

use super::Principal;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Search the resident directory (full phone numbers).
    ReadResidents,
    /// Create buildings and units.
    ManageProperty,
    /// Move residents in and out, keep emergency contacts.
    ManageResidency,
    /// Assign butlers to buildings.
    AssignButlers,
    /// Create butler and staff accounts.
    ManageAccounts,
    /// Dispatch repair orders to technicians (butlers: in their buildings).
    DispatchRepairs,
    /// Take repair requests for residents, cancel them, record follow-ups
    /// (butlers: in their buildings).
    HandleRepairs,
    /// Register, hand over, identify and return parcels; read the desk summary.
    HandleParcels,
    /// Create and disable integrators' API clients.
    ManageIntegrations,
}

/// | action          | resident | butler | front desk | technician | supervisor | manager |
/// |-----------------|----------|--------|------------|------------|------------|---------|
/// | ReadResidents   |          | yes    | yes        |            | yes        | yes     |
/// | ManageProperty  |          |        |            |            | yes        | yes     |
/// | ManageResidency |          |        | yes        |            | yes        | yes     |
/// | AssignButlers   |          |        |            |            | yes        | yes     |
/// | ManageAccounts  |          |        |            |            |            | yes     |
/// | DispatchRepairs |          | yes    |            |            | yes        | yes     |
/// | HandleRepairs   |          | yes    | yes        |            | yes        | yes     |
/// | HandleParcels   |          |        | yes        |            | yes        | yes     |
/// | ManageIntegrations |       |        |            |            |            | yes     |
pub fn is_allowed(principal: &Principal, action: Action) -> bool {
    use Action::*;
    use StaffPosition::*;
    match principal.role {
        Role::Resident => false,
        Role::Butler => matches!(action, ReadResidents | DispatchRepairs | HandleRepairs),
        Role::Staff => match (action, principal.position) {
            (_, None) => false,
            (
                ReadResidents | ManageResidency | HandleRepairs | HandleParcels,
                Some(FrontDesk | Supervisor | Manager),
            ) => true,
            (ManageProperty | AssignButlers | DispatchRepairs, Some(Supervisor | Manager)) => true,
            (ManageAccounts | ManageIntegrations, Some(Manager)) => true,
            _ => false,
        },
    }
}

pub fn require(principal: &Principal, action: Action) -> ApiResult<()> {
    if is_allowed(principal, action) { Ok(()) } else { Err(ApiError::Forbidden) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, position: Option<StaffPosition>) -> Principal {
        Principal { user_id: 1, role, position, community_id: Some(1) }
    }

    #[test]
    fn matches_the_documented_table() {
        use Action::*;
        use StaffPosition::*;
        let resident = principal(Role::Resident, None);
        let butler = principal(Role::Butler, None);
        let desk = principal(Role::Staff, Some(FrontDesk));
        let technician = principal(Role::Staff, Some(Technician));
        let supervisor = principal(Role::Staff, Some(Supervisor));
        let manager = principal(Role::Staff, Some(Manager));
        let table = [
            (ReadResidents, [false, true, true, false, true, true]),
            (ManageProperty, [false, false, false, false, true, true]),
            (ManageResidency, [false, false, true, false, true, true]),
            (AssignButlers, [false, false, false, false, true, true]),
            (ManageAccounts, [false, false, false, false, false, true]),
            (DispatchRepairs, [false, true, false, false, true, true]),
            (HandleRepairs, [false, true, true, false, true, true]),
            (HandleParcels, [false, false, true, false, true, true]),
            (ManageIntegrations, [false, false, false, false, false, true]),
        ];
        for (action, expected) in table {
            let actual = [&resident, &butler, &desk, &technician, &supervisor, &manager].map(|p| is_allowed(p, action));
            assert_eq!(actual, expected, "{action:?}");
        }
    }

    #[test]
    fn staff_without_a_position_may_do_nothing() {
        let nobody = principal(Role::Staff, None);
        assert!(!is_allowed(&nobody, Action::ReadResidents));
    }
}
