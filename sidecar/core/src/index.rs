//! The overlap index: a trie of path components. A path scope is filed at its own node, a glob at the node
//! of its leading literal components, and `.` at the root. A query walks only the nodes on its own path and
//! the subtree below it, so its cost grows with the depth of the path and the claims near it, not with the
//! number of live claims. It is keyed by the sidecar's claim ids, and at the hub by (sidecar, claim id).

use std::collections::HashMap;

use crate::book::ClaimId;
use crate::scope::Scope;

#[derive(Debug)]
struct Node<K> {
    children: HashMap<String, Node<K>>,
    entries: Vec<(K, Scope)>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node { children: HashMap::new(), entries: Vec::new() }
    }
}

impl<K: Clone + PartialEq> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.entries.is_empty()
    }

    fn for_each_below(&self, found: &mut impl FnMut(K, &Scope)) {
        for (claim, scope) in &self.entries {
            found(claim.clone(), scope);
        }
        for child in self.children.values() {
            child.for_each_below(found);
        }
    }
}

/// Finds the held scopes that overlap a query scope.
#[derive(Debug)]
pub struct OverlapIndex<K = ClaimId> {
    root: Node<K>,
}

impl<K> Default for OverlapIndex<K> {
    fn default() -> Self {
        OverlapIndex { root: Node::default() }
    }
}

impl<K: Clone + PartialEq> OverlapIndex<K> {
    /// Files `scope` under `claim`.
    pub fn insert(&mut self, claim: K, scope: &Scope) {
        let mut node = &mut self.root;
        for component in scope.index_key() {
            node = node.children.entry(component.clone()).or_default();
        }
        node.entries.push((claim, scope.clone()));
    }

    /// Takes `scope` of `claim` out again.
    pub fn remove(&mut self, claim: K, scope: &Scope) {
        fn remove_below<K: Clone + PartialEq>(node: &mut Node<K>, key: &[String], claim: K, scope: &Scope) {
            match key.split_first() {
                None => node.entries.retain(|(c, s)| !(*c == claim && s == scope)),
                Some((first, rest)) => {
                    if let Some(child) = node.children.get_mut(first) {
                        remove_below(child, rest, claim, scope);
                        if child.is_empty() {
                            node.children.remove(first);
                        }
                    }
                }
            }
        }
        remove_below(&mut self.root, scope.index_key(), claim, scope);
    }

    /// Calls `found` with every filed scope that overlaps `query` (once per scope, so a claim with several
    /// overlapping scopes is reported several times).
    pub fn for_each_overlap(&self, query: &Scope, mut found: impl FnMut(K, &Scope)) {
        let key = query.index_key();
        let mut node = &self.root;
        for component in key {
            for (claim, held) in &node.entries {
                if held.overlaps(query) {
                    found(claim.clone(), held);
                }
            }
            match node.children.get(component) {
                Some(child) => node = child,
                None => return,
            }
        }
        let mut check = |claim: K, held: &Scope| {
            if held.overlaps(query) {
                found(claim, held);
            }
        };
        node.for_each_below(&mut check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlapping(index: &OverlapIndex, query: &str) -> Vec<u64> {
        let mut ids = Vec::new();
        index.for_each_overlap(&Scope::parse(query).expect("valid"), |c, _| ids.push(c.0));
        ids.sort_unstable();
        ids
    }

    #[test]
    fn finds_ancestors_descendants_and_globs() {
        let mut index = OverlapIndex::default();
        let scopes = ["src/a.rs", "src", "docs/**/*.md", ".", "src/b/c.rs", "**/*.toml"];
        for (i, s) in scopes.iter().enumerate() {
            index.insert(ClaimId(i as u64), &Scope::parse(s).expect("valid"));
        }
        // `**/*.toml` may match below any path (a path could be a directory), so it always meets.
        assert_eq!(overlapping(&index, "src/a.rs"), vec![0, 1, 3, 5]);
        assert_eq!(overlapping(&index, "src/b"), vec![1, 3, 4, 5]);
        assert_eq!(overlapping(&index, "docs/x/y.md"), vec![2, 3, 5]);
        assert_eq!(overlapping(&index, "Cargo.toml"), vec![3, 5]);
        assert_eq!(overlapping(&index, "src/**/*.rs"), vec![0, 1, 3, 4, 5]);

        index.remove(ClaimId(3), &Scope::parse(".").expect("valid"));
        index.remove(ClaimId(1), &Scope::parse("src").expect("valid"));
        assert_eq!(overlapping(&index, "src/a.rs"), vec![0, 5]);
        assert_eq!(overlapping(&index, "lib"), vec![5]);
    }
}
