//! Demo data for trying the API: one community with two buildings, a dozen
//! units, residents (one of them in two units) and one account per staff role.
//! Loaded once; running it again changes nothing.

use chrono::{NaiveDate, Utc};
use entity::{
    building, butler_assignment, community,
    enums::{Role, StaffPosition, UnitRelation},
    unit, unit_membership, user,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};

use crate::{auth::password, error::ApiResult};

pub const DEMO_PASSWORD: &str = "demo-pass-2026";
pub const DEMO_COMMUNITY: &str = "翠湖花园";

/// A seeded account.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    /// What the account is for, e.g. "owner (units 1-101, 2-201)".
    pub label: String,
    /// A short key tests use to pick an account.
    pub key: &'static str,
    pub phone: String,
    pub user_id: i64,
}

/// Everything one seeded community holds.
#[derive(Debug, Clone)]
pub struct SeededCommunity {
    pub community: community::Model,
    pub buildings: Vec<building::Model>,
    pub units: Vec<unit::Model>,
    pub accounts: Vec<DemoAccount>,
}

impl SeededCommunity {
    pub fn account(&self, key: &str) -> &DemoAccount {
        self.accounts.iter().find(|a| a.key == key).unwrap_or_else(|| panic!("no demo account {key}"))
    }

    /// A unit by its door number, e.g. "1-101".
    pub fn unit(&self, number: &str) -> &unit::Model {
        self.units.iter().find(|u| u.number == number).unwrap_or_else(|| panic!("no demo unit {number}"))
    }
}

/// Seeds the demo community unless it is already there; returns its accounts.
pub async fn seed(db: &DatabaseConnection) -> ApiResult<Vec<DemoAccount>> {
    let existing = community::Entity::find().filter(community::Column::Name.eq(DEMO_COMMUNITY)).one(db).await?;
    if existing.is_some() {
        tracing::info!("demo data already loaded");
        return demo_accounts(db, "138").await;
    }
    Ok(seed_community(db, DEMO_COMMUNITY, "138").await?.accounts)
}

async fn demo_accounts(db: &DatabaseConnection, phone_prefix: &str) -> ApiResult<Vec<DemoAccount>> {
    let mut accounts = Vec::new();
    for (index, (key, label, ..)) in PEOPLE.iter().enumerate() {
        let phone = phone_of(phone_prefix, index);
        if let Some(found) = user::Entity::find().filter(user::Column::Phone.eq(phone.as_str())).one(db).await? {
            accounts.push(DemoAccount { label: label.to_string(), key, phone, user_id: found.id });
        }
    }
    Ok(accounts)
}

fn phone_of(prefix: &str, index: usize) -> String {
    format!("{prefix}{:08}", 1001 + index)
}

type Person = (&'static str, &'static str, &'static str, Role, Option<StaffPosition>);

const PEOPLE: [Person; 9] = [
    ("owner", "owner (units 1-101, 2-201)", "王建国", Role::Resident, None),
    ("family", "family member (unit 1-101)", "王小明", Role::Resident, None),
    ("tenant", "tenant (unit 1-102)", "李娜", Role::Resident, None),
    ("owner2", "owner (unit 2-202)", "张伟", Role::Resident, None),
    ("butler", "butler (building 1号楼)", "陈管家", Role::Butler, None),
    ("front_desk", "front desk", "刘前台", Role::Staff, Some(StaffPosition::FrontDesk)),
    ("technician", "technician", "赵师傅", Role::Staff, Some(StaffPosition::Technician)),
    ("supervisor", "supervisor", "孙主管", Role::Staff, Some(StaffPosition::Supervisor)),
    ("manager", "manager", "周经理", Role::Staff, Some(StaffPosition::Manager)),
];

/// Seeds one community named `name`, its people's phones starting with
/// `phone_prefix` (three digits, e.g. "138").
pub async fn seed_community(db: &DatabaseConnection, name: &str, phone_prefix: &str) -> ApiResult<SeededCommunity> {
    let password_hash = password::hash(DEMO_PASSWORD).await?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let community = community::ActiveModel { name: Set(name.to_owned()), created_at: Set(now), ..Default::default() }
        .insert(&txn)
        .await?;

    let mut buildings = Vec::new();
    let mut units = Vec::new();
    for building_number in 1..=2 {
        let building = building::ActiveModel {
            community_id: Set(community.id),
            name: Set(format!("{building_number}号楼")),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        for floor in 1..=3 {
            for door in 1..=2 {
                let unit = unit::ActiveModel {
                    building_id: Set(building.id),
                    community_id: Set(building.community_id),
                    number: Set(format!("{building_number}-{floor}0{door}")),
                    floor: Set(Some(floor)),
                    contacts_version: Set(0),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                units.push(unit);
            }
        }
        buildings.push(building);
    }

    let mut accounts = Vec::new();
    for (index, (key, label, person_name, role, position)) in PEOPLE.iter().enumerate() {
        let phone = phone_of(phone_prefix, index);
        let community_id = (*role != Role::Resident).then_some(community.id);
        let account = user::ActiveModel {
            phone: Set(phone.clone()),
            name: Set(person_name.to_string()),
            password_hash: Set(Some(password_hash.clone())),
            role: Set(*role),
            position: Set(*position),
            community_id: Set(community_id),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        accounts.push(DemoAccount { label: label.to_string(), key, phone, user_id: account.id });
    }

    let id_of = |key: &str| accounts.iter().find(|a| a.key == key).map(|a| a.user_id).unwrap_or_default();
    let unit_id = |number: &str| units.iter().find(|u| u.number == number).map(|u| u.id).unwrap_or_default();
    let moved_in_on = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap_or_default();
    let memberships = [
        ("owner", "1-101", UnitRelation::Owner),
        ("owner", "2-201", UnitRelation::Owner),
        ("family", "1-101", UnitRelation::Family),
        ("tenant", "1-102", UnitRelation::Tenant),
        ("owner2", "2-202", UnitRelation::Owner),
    ];
    for (key, number, relation) in memberships {
        unit_membership::ActiveModel {
            user_id: Set(id_of(key)),
            unit_id: Set(unit_id(number)),
            relation: Set(relation),
            moved_in_on: Set(moved_in_on),
            moved_out_on: Set(None),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    butler_assignment::ActiveModel {
        butler_id: Set(id_of("butler")),
        building_id: Set(buildings[0].id),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(SeededCommunity { community, buildings, units, accounts })
}
