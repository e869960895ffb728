use async_graphql::{Context, Object, Result};

use super::{service, types::ApiClient};
use crate::graphql::{
    ContextExt,
    pagination::{Page, PageRequest},
};

#[derive(Default)]
pub struct IntegrationQuery;

#[Object]
impl IntegrationQuery {
    /// The community's API clients (manager).
    #[graphql(
        complexity = "if (1..=100).contains(&first) { first as usize * child_complexity } else { child_complexity }"
    )]
    async fn api_clients(&self, ctx: &Context<'_>, first: i32, after: Option<String>) -> Result<Page<ApiClient>> {
        let principal = ctx.principal()?;
        let request = PageRequest::new(first, after.as_deref())?;
        Ok(service::list(ctx.db(), principal, request).await?)
    }
}
