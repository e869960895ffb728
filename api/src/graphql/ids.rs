//! Opaque, typed ids: `bld_12` names building 12. A typed prefix means an id of
//! one kind passed where another is expected is refused, not looked up.

use async_graphql::ID;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Community,
    Building,
    Unit,
    User,
    Membership,
    EmergencyContact,
    RepairOrder,
    RepairPhoto,
    Parcel,
    ApiClient,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Community => "cmt",
            Kind::Building => "bld",
            Kind::Unit => "unit",
            Kind::User => "usr",
            Kind::Membership => "mbr",
            Kind::EmergencyContact => "ec",
            Kind::RepairOrder => "ro",
            Kind::RepairPhoto => "rp",
            Kind::Parcel => "pcl",
            Kind::ApiClient => "cli",
        }
    }
}

pub fn encode(kind: Kind, id: i64) -> ID {
    ID(format!("{}_{id}", kind.prefix()))
}

/// Decodes an id from input field `field`; a malformed id or one of another
/// kind is BAD_USER_INPUT naming the field.
pub fn decode(kind: Kind, id: &ID, field: &str) -> ApiResult<i64> {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|number| number.parse::<i64>().ok())
        .filter(|number| *number > 0)
        .ok_or_else(|| ApiError::bad_input(field, format!("not a valid {} id", kind.prefix())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_kinds() {
        let id = encode(Kind::Unit, 17);
        assert_eq!(id.as_str(), "unit_17");
        assert_eq!(decode(Kind::Unit, &id, "unitId").unwrap(), 17);
        assert!(decode(Kind::Building, &id, "buildingId").is_err());
        for garbage in ["", "unit_", "unit_x", "unit_-3", "unit_0", "unit17", "unit_99999999999999999999"] {
            assert!(decode(Kind::Unit, &ID(garbage.into()), "unitId").is_err(), "{garbage}");
        }
    }
}
