use entity::{repair_follow_up, repair_order_change, repair_photo};

use crate::graphql::loader::ChildrenOf;

pub type TimelineByOrder = ChildrenOf<repair_order_change::Entity>;
pub type PhotosByOrder = ChildrenOf<repair_photo::Entity>;
pub type FollowUpsByOrder = ChildrenOf<repair_follow_up::Entity>;
