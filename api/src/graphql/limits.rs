//! Limits no single operation may exceed, beyond the engine's own depth,
//! complexity, recursion and directive limits: the number of aliases, which
//! would otherwise let one request run the same expensive field many times.

use std::sync::Arc;

use async_graphql::{
    ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

pub struct AliasLimit(pub usize);

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AliasLimitExtension(self.0))
    }
}

struct AliasLimitExtension(usize);

#[async_trait::async_trait]
impl Extension for AliasLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let aliases = count_aliases(&document);
        if aliases > self.0 {
            return Err(ServerError::new(format!("too many aliases: {aliases}, at most {}", self.0), None));
        }
        Ok(document)
    }
}

/// Aliases in all operations and fragments of the document.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    let operations = document.operations.iter().map(|(_, operation)| &operation.node.selection_set.node);
    let fragments = document.fragments.values().map(|fragment| &fragment.node.selection_set.node);
    operations.chain(fragments).map(aliases_in).sum()
}

fn aliases_in(selection_set: &SelectionSet) -> usize {
    selection_set
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases_in(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases_in(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aliases_everywhere() {
        let document = async_graphql::parser::parse_query(
            "query { a: me { id } b: me { x: id } ...F } fragment F on Query { c: me { id } ... on Query { d: me { id } } }",
        )
        .unwrap();
        assert_eq!(count_aliases(&document), 5);
    }
}
