use sea_orm::entity::prelude::*;

/// Who may receive an event, decided when it is written.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_recipient")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_seq: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::event::Entity", from = "Column::EventSeq", to = "super::event::Column::Seq")]
    Event,
}

impl Related<super::event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
