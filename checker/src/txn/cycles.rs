//! Finding and naming cycles in the dependency graph (a petgraph `DiGraph`, one node per
//! transaction).
//!
//! Existence is decided with strongly connected components, which is linear: a cycle whose edges
//! are all in a set S and which uses an edge e of S exists exactly when e's ends are in one SCC of
//! the graph restricted to S. So G0 (ww only), G1c (ww and wr, with a wr) and "any cycle" (every
//! kind) need no search. A witness is a breadth-first shortest path back from the edge's target
//! to its source, also linear. Only G-single ("exactly one rw edge") needs a search per rw edge
//! (is there a ww/wr path from its target back to its source?), and that search has a budget:
//! past it, a cycle with rw edges is known to exist but not whether some has exactly one.

use hashbrown::HashMap;
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{EdgeFiltered, EdgeRef};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Instant;

use super::deps::{Edge, EdgeKind};

/// The cycle anomalies, by how many anti-dependency (rw) edges the cycle has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CycleClass {
    /// Write cycle: ww edges only.
    G0,
    /// Circular information flow: ww and wr edges, at least one wr.
    G1c,
    /// Read skew and friends: exactly one rw edge.
    GSingle,
    /// Anti-dependency cycle: two or more rw edges (write skew).
    G2Item,
}

/// Which order edges, beyond data dependencies, the cycle needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Variant {
    Plain,
    /// Uses a process-order edge (and no real-time edge).
    Process,
    /// Uses a real-time edge.
    Realtime,
}

/// A cycle: each step's `to` is the next step's `from`, the last step's `to` the first's `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub class: CycleClass,
    pub variant: Variant,
    pub steps: Vec<Edge>,
}

impl Cycle {
    fn classify(steps: Vec<Edge>) -> Cycle {
        let count = |kind: EdgeKind| steps.iter().filter(|e| e.why.kind() == kind).count();
        let class = match (count(EdgeKind::Rw), count(EdgeKind::Wr)) {
            (0, 0) => CycleClass::G0,
            (0, _) => CycleClass::G1c,
            (1, _) => CycleClass::GSingle,
            _ => CycleClass::G2Item,
        };
        let variant = if count(EdgeKind::Realtime) > 0 {
            Variant::Realtime
        } else if count(EdgeKind::Process) > 0 {
            Variant::Process
        } else {
            Variant::Plain
        };
        Cycle { class, variant, steps }
    }
}

/// Limits on the G-single search.
#[derive(Debug, Clone, Copy)]
pub struct SearchBudget {
    pub deadline: Option<Instant>,
    /// Nodes the G-single searches may visit, in total.
    pub max_visits: u64,
}

/// What the search found.
#[derive(Debug, Default)]
pub struct CycleSearch {
    /// Witnesses: one per strongly connected component and class found in it.
    pub cycles: Vec<Cycle>,
    /// Some component has a cycle with rw edges, but the budget ran out before it was known
    /// whether one has exactly one rw edge (G-single) or all have two or more (G2-item).
    pub g_single_unsettled: bool,
    /// The deadline passed: components after that point were not examined at all.
    pub timed_out: bool,
    /// Nontrivial strongly connected components of the whole graph.
    pub components: usize,
}

const WW: u8 = EdgeKind::Ww.bit();
const WR: u8 = EdgeKind::Wr.bit();
const RW: u8 = EdgeKind::Rw.bit();
const DATA: u8 = WW | WR | RW;
const ALL: u8 = DATA | EdgeKind::Process.bit() | EdgeKind::Realtime.bit();

/// Nodes visited by breadth-first searches, against a maximum.
struct Visits {
    count: u64,
    max: u64,
}

impl Visits {
    fn unlimited() -> Visits {
        Visits { count: 0, max: u64::MAX }
    }
}

/// What a search for a path to a node may skip, from strongly connected components.
#[derive(Clone, Copy, Default)]
struct Prune<'a> {
    /// Component of each node in a graph holding every cycle searched for: a node of another
    /// component than the target's is on no such cycle.
    same: Option<&'a [u32]>,
    /// Component index of each node in the graph of the searched edges, as `kosaraju_scc` orders
    /// them (reverse topological: along any path the index never grows), so a node ranked below
    /// the target cannot lead to it.
    rank: Option<&'a [u32]>,
}

impl Prune<'_> {
    fn cannot_lead(&self, node: usize, to: usize) -> bool {
        self.same.is_some_and(|c| c[node] != c[to]) || self.rank.is_some_and(|r| r[node] < r[to])
    }
}

/// One component's subgraph: local node indices, edge weights index the caller's edge slice.
struct Local<'a> {
    graph: DiGraph<(), u32, u32>,
    edges: &'a [Edge],
}

impl Local<'_> {
    fn kind(&self, edge: u32) -> EdgeKind {
        self.edges[edge as usize].why.kind()
    }

    /// Component id of each local node, in the subgraph of the edges whose kinds are in `mask`.
    fn components(&self, mask: u8) -> Vec<u32> {
        let filtered = EdgeFiltered::from_fn(&self.graph, |e| mask & self.kind(*e.weight()).bit() != 0);
        let mut component = vec![0u32; self.graph.node_count()];
        for (c, scc) in kosaraju_scc(&filtered).into_iter().enumerate() {
            for node in scc {
                component[node.index()] = c as u32;
            }
        }
        component
    }

    /// Local edges (source, target, edge) of one kind.
    fn edges_of(&self, kind: EdgeKind) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
        self.graph
            .edge_references()
            .filter(move |e| self.kind(*e.weight()) == kind)
            .map(|e| (e.source().index(), e.target().index(), *e.weight()))
    }

    /// A shortest path from `from` to `to` over edges of `mask` (edge ids), counting visits.
    fn path(&self, from: usize, to: usize, mask: u8, search: &mut Visits, prune: Prune) -> Option<Vec<u32>> {
        if from == to {
            return Some(Vec::new());
        }
        if prune.cannot_lead(from, to) {
            return None;
        }
        // Keyed by the nodes visited only: a component may be large and searched many times.
        let mut parent: HashMap<usize, (usize, u32)> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            search.count += 1;
            if search.count > search.max {
                return None;
            }
            for edge in self.graph.edges(NodeIndex::new(node)) {
                if mask & self.kind(*edge.weight()).bit() == 0 {
                    continue;
                }
                let next = edge.target().index();
                if next == from || parent.contains_key(&next) || prune.cannot_lead(next, to) {
                    continue;
                }
                parent.insert(next, (node, *edge.weight()));
                if next == to {
                    let mut path = Vec::new();
                    let mut at = to;
                    while let Some(&(previous, e)) = parent.get(&at) {
                        path.push(e);
                        at = previous;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }

    fn cycle_through(&self, seed: (usize, usize, u32), mask: u8, search: &mut Visits, prune: Prune) -> Option<Cycle> {
        let (source, target, edge) = seed;
        let back = self.path(target, source, mask, search, prune)?;
        let steps = std::iter::once(edge).chain(back).map(|e| self.edges[e as usize]).collect();
        Some(Cycle::classify(steps))
    }
}

/// Finds and names cycles among `n_txns` transactions joined by `edges`.
pub fn find_cycles(n_txns: usize, edges: &[Edge], budget: SearchBudget) -> CycleSearch {
    let mut graph: DiGraph<(), u32, u32> = DiGraph::with_capacity(n_txns, edges.len());
    for _ in 0..n_txns {
        graph.add_node(());
    }
    for (i, edge) in edges.iter().enumerate() {
        if edge.from != edge.to {
            graph.add_edge(NodeIndex::new(edge.from as usize), NodeIndex::new(edge.to as usize), i as u32);
        }
    }
    let sccs = kosaraju_scc(&graph);
    let mut search = CycleSearch::default();
    let mut local_index = vec![u32::MAX; n_txns];
    let mut visits = Visits { count: 0, max: budget.max_visits };
    for scc in sccs {
        if scc.len() < 2 {
            continue;
        }
        search.components += 1;
        if budget.deadline.is_some_and(|d| Instant::now() > d) {
            search.timed_out = true;
            continue;
        }
        for (i, node) in scc.iter().enumerate() {
            local_index[node.index()] = i as u32;
        }
        let mut local = DiGraph::<(), u32, u32>::with_capacity(scc.len(), scc.len() * 2);
        for _ in 0..scc.len() {
            local.add_node(());
        }
        for node in &scc {
            for edge in graph.edges(*node) {
                let target = local_index[edge.target().index()];
                if target != u32::MAX {
                    local.add_edge(
                        NodeIndex::new(local_index[node.index()] as usize),
                        NodeIndex::new(target as usize),
                        *edge.weight(),
                    );
                }
            }
        }
        let local = Local { graph: local, edges };
        examine_component(&local, budget, &mut visits, &mut search);
        for node in &scc {
            local_index[node.index()] = u32::MAX;
        }
    }
    search
}

/// One witness per sub-component and class, from the cheapest question to the dearest.
fn examine_component(local: &Local, budget: SearchBudget, visits: &mut Visits, search: &mut CycleSearch) {
    let before = search.cycles.len();
    let mut free = Visits::unlimited();
    // G0, G1c: an edge of the kind inside a component of the restricted graph.
    for (mask, kind) in [(WW, EdgeKind::Ww), (WW | WR, EdgeKind::Wr)] {
        let component = local.components(mask);
        let mut done = vec![false; local.graph.node_count()];
        for seed in local.edges_of(kind).collect::<Vec<_>>() {
            let c = component[seed.0] as usize;
            if component[seed.1] as usize == c && !done[c] {
                done[c] = true;
                search.cycles.extend(local.cycle_through(
                    seed,
                    mask,
                    &mut free,
                    Prune { same: Some(&component), rank: None },
                ));
            }
        }
    }
    // G-single, else G2-item, per component of the data-dependency graph.
    let data = local.components(DATA);
    let ww_wr = local.components(WW | WR);
    let mut rw_by_component: Vec<Vec<(usize, usize, u32)>> = vec![Vec::new(); local.graph.node_count()];
    for seed in local.edges_of(EdgeKind::Rw) {
        if data[seed.0] == data[seed.1] {
            rw_by_component[data[seed.0] as usize].push(seed);
        }
    }
    for seeds in rw_by_component.iter().filter(|s| !s.is_empty()) {
        let mut settled = false;
        let mut exhausted = false;
        for &seed in seeds {
            if ww_wr[seed.0] != ww_wr[seed.1]
                && (visits.count > visits.max || budget.deadline.is_some_and(|d| Instant::now() > d))
            {
                exhausted = true;
                break;
            }
            if let Some(cycle) =
                local.cycle_through(seed, WW | WR, visits, Prune { same: Some(&data), rank: Some(&ww_wr) })
            {
                search.cycles.push(cycle);
                settled = true;
                break;
            }
            if visits.count > visits.max {
                exhausted = true;
                break;
            }
        }
        if !settled {
            // Every cycle here has at least one rw edge; none (as far as searched) exactly one.
            search.cycles.extend(local.cycle_through(
                seeds[0],
                DATA,
                &mut free,
                Prune { same: Some(&data), rank: None },
            ));
            search.g_single_unsettled |= exhausted;
        }
    }
    // Process and real-time variants: a cycle through an order edge, process edges first.
    for kind in [EdgeKind::Process, EdgeKind::Realtime] {
        if let Some(seed) = local.edges_of(kind).find(|seed| data[seed.0] != data[seed.1]) {
            search.cycles.extend(local.cycle_through(seed, ALL, &mut free, Prune::default()));
            break;
        }
    }
    if search.cycles.len() == before {
        // The component is strongly connected, so any edge closes a cycle.
        if let Some(seed) =
            local.graph.edge_references().next().map(|e| (e.source().index(), e.target().index(), *e.weight()))
        {
            search.cycles.extend(local.cycle_through(seed, ALL, &mut free, Prune::default()));
        }
    }
}
