//! Limits no single operation may exceed, beyond the engine's own depth,
//! complexity, recursion and directive limits: the number of aliases, which
//! would otherwise let one request run the same expensive field many times.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

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
