//! The plan's DAG: which steps are upstream of which ([`Upstream`], [`step_keys`]), the order
//! steps run in ([`topological_order`]), and the cycles `needs` may form ([`find_cycles`]).
//! Messages about them are written by `compile::needs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use super::PlanStep;
use super::template::StepKeys;

/// The ids a template may write after `steps.`: every concrete step, and every matrix step.
/// A dynamic matrix step stands for itself until it is expanded, then for its children.
pub fn step_keys(steps: &[PlanStep]) -> StepKeys {
    let mut keys: IndexMap<String, Vec<usize>> = IndexMap::new();
    let expanded: HashSet<&str> = steps
        .iter()
        .filter(|s| s.dynamic.is_none() && s.declared != s.id)
        .map(|s| s.declared.as_str())
        .collect();
    for (i, step) in steps.iter().enumerate() {
        if step.dynamic.is_some() && expanded.contains(step.id.as_str()) {
            continue;
        }
        keys.entry(step.id.clone()).or_default().push(i);
        if step.declared != step.id {
            keys.entry(step.declared.clone()).or_default().push(i);
        }
    }
    StepKeys { keys }
}

/// The steps upstream of each step (its needs, transitively), as bitsets over plan indices.
pub struct Upstream {
    pub keys: Arc<StepKeys>,
    sets: Vec<Arc<FixedBitSet>>,
}

impl Upstream {
    /// With a topological `order`, each set is the union of its needs' sets, in one pass;
    /// without one (a cycle, already reported), a search from each step.
    pub fn new(steps: &[PlanStep], order: Option<&[usize]>) -> Upstream {
        let index = index_by_id(steps);
        let needs = |i: usize| {
            steps[i]
                .needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect::<Vec<_>>()
        };
        let n = steps.len();
        let mut sets: Vec<FixedBitSet> = vec![FixedBitSet::with_capacity(n); n];
        match order {
            Some(order) => {
                for &i in order {
                    let mut set = FixedBitSet::with_capacity(n);
                    for j in needs(i) {
                        set.insert(j);
                        set.union_with(&sets[j]);
                    }
                    sets[i] = set;
                }
            }
            None => {
                for (i, set) in sets.iter_mut().enumerate() {
                    let mut stack = needs(i);
                    while let Some(j) = stack.pop() {
                        if !set.put(j) {
                            stack.extend(needs(j));
                        }
                    }
                }
            }
        }
        Upstream {
            keys: Arc::new(step_keys(steps)),
            sets: sets.into_iter().map(Arc::new).collect(),
        }
    }

    /// The steps upstream of step `i`.
    pub fn of(&self, i: usize) -> Arc<FixedBitSet> {
        self.sets[i].clone()
    }
}

/// Kahn's algorithm over concrete steps, always taking the earliest-written ready step, so the
/// order is deterministic and follows the file where it can. Assumes no cycle.
pub fn topological_order(steps: &[PlanStep]) -> Vec<usize> {
    let index = &index_by_id(steps);
    let edges = steps.iter().enumerate().flat_map(|(i, s)| {
        s.needs
            .iter()
            .filter_map(move |n| index.get(n.as_str()).map(|&j| (j, i)))
    });
    let graph = digraph(steps.len(), steps.len(), edges);
    let mut indegree: Vec<usize> = (0..steps.len())
        .map(|i| {
            graph
                .neighbors_directed(NodeIndex::new(i), petgraph::Incoming)
                .count()
        })
        .collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors_directed(NodeIndex::new(i), petgraph::Outgoing) {
            let d = &mut indegree[next.index()];
            *d -= 1;
            if *d == 0 {
                ready.push(std::cmp::Reverse(next.index()));
            }
        }
    }
    order
}

/// Every elementary cycle's representative, one per strongly connected component: each node
/// of a returned cycle needs the next, and the last needs the first.
pub fn find_cycles(nodes: usize, needs: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let graph = digraph(nodes, needs.len(), needs.iter().copied());
    let mut cycles = Vec::new();
    let mut sccs = petgraph::algo::tarjan_scc(&graph);
    sccs.iter_mut().for_each(|c| c.sort());
    sccs.sort_by_key(|c| c[0]);
    for scc in sccs {
        let start = scc[0];
        if scc.len() == 1 {
            if graph.contains_edge(start, start) {
                cycles.push(vec![start.index()]);
            }
            continue;
        }
        // Shortest path from start back to start within the component (BFS, lowest ids first).
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut end = None;
        'bfs: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> =
                graph.neighbors(n).filter(|m| members.contains(m)).collect();
            next.sort();
            for m in next {
                if m == start {
                    end = Some(n);
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                    e.insert(n);
                    queue.push_back(m);
                }
            }
        }
        let Some(mut at) = end else { continue };
        let mut path = vec![at.index()];
        while at != start {
            at = prev[&at];
            path.push(at.index());
        }
        path.reverse();
        cycles.push(path);
    }
    cycles
}

/// Each step's plan index, by id.
pub(super) fn index_by_id(steps: &[PlanStep]) -> HashMap<&str, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect()
}

/// A graph of `nodes` nodes (numbered from 0) and each `(from, to)` edge once.
fn digraph(
    nodes: usize,
    edge_capacity: usize,
    edges: impl IntoIterator<Item = (usize, usize)>,
) -> DiGraph<(), ()> {
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(nodes, edge_capacity);
    for _ in 0..nodes {
        graph.add_node(());
    }
    for (from, to) in edges {
        graph.update_edge(NodeIndex::new(from), NodeIndex::new(to), ());
    }
    graph
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use proptest::prelude::{
        Just, ProptestConfig, Strategy as _, prop_assert, prop_assert_eq, proptest,
    };

    use super::HashMap;
    use crate::mission::{ErrorKind, Mission};
    use crate::plan::compile::{CompileError, PlanOptions, compile};

    /// A mission whose step `s<i>` needs `s<j>` for each edge (i, j).
    fn mission_text(nodes: usize, edges: &[(usize, usize)]) -> String {
        let mut text = String::new();
        for i in 0..nodes {
            let needs: Vec<String> = edges
                .iter()
                .filter(|(from, _)| *from == i)
                .map(|(_, to)| format!("\"s{to}\""))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            text.push_str(&format!(
                "[steps.s{i}]\nrun = \"true\"\nneeds = [{}]\n\n",
                needs.join(", ")
            ));
        }
        text
    }

    /// An independent check: does the needs graph have a cycle? (DFS with colours.)
    fn has_cycle(nodes: usize, edges: &[(usize, usize)]) -> bool {
        fn visit(n: usize, edges: &[(usize, usize)], colour: &mut [u8]) -> bool {
            colour[n] = 1;
            for &(_, to) in edges.iter().filter(|(from, _)| *from == n) {
                if colour[to] == 1 || (colour[to] == 0 && visit(to, edges, colour)) {
                    return true;
                }
            }
            colour[n] = 2;
            false
        }
        let mut colour = vec![0u8; nodes];
        (0..nodes).any(|n| colour[n] == 0 && visit(n, edges, &mut colour))
    }

    fn graphs() -> impl proptest::strategy::Strategy<Value = (usize, Vec<(usize, usize)>)> {
        (1usize..14).prop_flat_map(|n| (Just(n), proptest::collection::vec((0..n, 0..n), 0..n * 2)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn order_respects_needs_and_cycles_are_real((nodes, edges) in graphs()) {
            let text = mission_text(nodes, &edges);
            let mission = Mission::parse(Path::new("p.toml"), text).expect("a well-formed mission");
            match compile(&mission, &PlanOptions::default()) {
                Ok(plan) => {
                    prop_assert!(!has_cycle(nodes, &edges));
                    prop_assert_eq!(plan.steps.len(), nodes);
                    let position: HashMap<&str, usize> =
                        plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
                    for (i, step) in plan.steps.iter().enumerate() {
                        for need in &step.needs {
                            prop_assert!(position[need.as_str()] < i, "{} before {}", need, step.id);
                        }
                    }
                }
                Err(CompileError::Mission(errors)) => {
                    prop_assert!(has_cycle(nodes, &edges));
                    let needs: HashSet<(String, String)> = edges
                        .iter()
                        .map(|(a, b)| (format!("s{a}"), format!("s{b}")))
                        .collect();
                    let mut cycles = 0;
                    for kind in errors.kinds() {
                        let ErrorKind::Cycle(cycle) = kind else {
                            prop_assert!(false, "unexpected error {:?}", kind);
                            continue;
                        };
                        cycles += 1;
                        for (k, step) in cycle.iter().enumerate() {
                            let next = &cycle[(k + 1) % cycle.len()];
                            prop_assert!(needs.contains(&(step.clone(), next.clone())), "{step} does not need {next}");
                        }
                        let distinct: HashSet<&String> = cycle.iter().collect();
                        prop_assert_eq!(distinct.len(), cycle.len(), "a cycle visits each step once");
                    }
                    prop_assert!(cycles > 0);
                }
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }

    #[test]
    fn order_is_deterministic_and_follows_the_file() {
        let text = "[steps.c]\nrun = \"true\"\nneeds = [\"a\"]\n[steps.b]\nrun = \"true\"\n[steps.a]\nrun = \"true\"\n";
        let mission = Mission::parse(Path::new("o.toml"), text.to_owned()).unwrap();
        let plan = compile(&mission, &PlanOptions::default()).unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
    }
}
