use sea_orm::entity::prelude::*;

use crate::enums::{ParcelKind, ParcelStatus, PickupChannel};

/// A parcel or letter held at the front desk or in a locker (邮件/快递).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "parcel")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub community_id: i64,
    /// Empty while the address is unclear (UNIDENTIFIED).
    pub unit_id: Option<i64>,
    pub kind: ParcelKind,
    pub carrier: String,
    pub tracking_number: String,
    pub item_count: i32,
    pub recipient_name: String,
    /// Shelf or locker where it waits.
    pub location: Option<String>,
    pub status: ParcelStatus,
    /// Six digits, set while WAITING; unique among the community's waiting parcels.
    pub pickup_code: Option<String>,
    /// The staff member who received it, or empty when an integrator registered it.
    pub received_by: Option<i64>,
    /// The integrator that registered it, if any.
    pub registered_by_client: Option<i64>,
    pub received_at: DateTimeUtc,
    pub reminder_count: i32,
    pub next_reminder_at: Option<DateTimeUtc>,
    /// Wrong pickup codes in a row; at the limit the parcel is locked for review.
    pub failed_code_attempts: i32,
    pub locked_at: Option<DateTimeUtc>,
    /// Someone a resident allowed to collect it.
    pub authorized_collector: Option<String>,
    pub picked_up_at: Option<DateTimeUtc>,
    pub picked_up_by_name: Option<String>,
    pub picked_up_via: Option<PickupChannel>,
    pub handed_over_by: Option<i64>,
    pub returned_at: Option<DateTimeUtc>,
    pub return_reason: Option<String>,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
