//! Partitions as data. A grudge maps each node to the set of nodes whose packets it drops; the
//! shapes below are small pure functions from a node list (and, where random, an RNG) to a grudge.
//! `rules_for_node` turns a grudge plus packet loss into the iptables rules of one node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{node_name, NodeId, FAULT_CHAIN};

/// node -> nodes it drops packets from.
pub type Grudge = BTreeMap<NodeId, BTreeSet<NodeId>>;

/// A pseudo node in a grudge's dropped sets: the clients' address. A node that drops `CLIENTS`
/// takes no requests (the nemesis asks nodes from another address; see
/// `Cluster::control_address`). Only ever a member of a dropped set, never a key.
pub const CLIENTS: NodeId = 0;

/// The partition shapes faultline knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shape {
    Halves,
    RandomHalves,
    MajoritiesRing,
    Bridge,
    IsolateOne,
    IsolateLeader,
    OneWay,
}

impl Shape {
    pub const ALL: [Shape; 7] = [
        Shape::Halves,
        Shape::RandomHalves,
        Shape::MajoritiesRing,
        Shape::Bridge,
        Shape::IsolateOne,
        Shape::IsolateLeader,
        Shape::OneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::RandomHalves => "random-halves",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::IsolateOne => "isolate-one",
            Shape::IsolateLeader => "isolate-leader",
            Shape::OneWay => "one-way",
        }
    }

    pub fn parse(text: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|shape| shape.name() == text)
    }
}

/// Each node drops every node outside its own component: a clean split.
pub fn complete_grudge(components: &[Vec<NodeId>]) -> Grudge {
    let mut grudge = Grudge::new();
    for (i, component) in components.iter().enumerate() {
        let others: BTreeSet<NodeId> =
            components.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, c)| c.iter().copied()).collect();
        for node in component {
            if !others.is_empty() {
                grudge.insert(*node, others.clone());
            }
        }
    }
    grudge
}

/// The first floor(n/2) nodes against the rest (the second half keeps the majority).
pub fn halves(nodes: &[NodeId]) -> Grudge {
    let (minority, majority) = nodes.split_at(nodes.len() / 2);
    complete_grudge(&[minority.to_vec(), majority.to_vec()])
}

/// Halves of a shuffled node list.
pub fn random_halves(nodes: &[NodeId], rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    halves(&shuffled)
}

/// One node alone, the others together.
pub fn isolate(nodes: &[NodeId], target: NodeId) -> Grudge {
    let rest: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != target).collect();
    complete_grudge(&[vec![target], rest])
}

/// Nodes placed on a ring (in the given order); each sees the nodes within ring distance `d`,
/// where `2d + 1` is the smallest odd number that is at least a majority. Every node sees a
/// majority, but no two nodes see the same majority (for n >= 5).
pub fn majorities_ring(nodes: &[NodeId]) -> Grudge {
    let n = nodes.len();
    let majority = n / 2 + 1;
    let reach = majority / 2; // 2 * reach + 1 >= majority
    let mut grudge = Grudge::new();
    for (i, node) in nodes.iter().enumerate() {
        let dropped: BTreeSet<NodeId> = nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| {
                let distance = (i + n - j) % n;
                distance.min(n - distance) > reach
            })
            .map(|(_, other)| *other)
            .collect();
        if !dropped.is_empty() {
            grudge.insert(*node, dropped);
        }
    }
    grudge
}

/// Two halves joined by one bridge node that sees everyone: `[a b] c [d e]`. The node in the
/// middle of the given order is the bridge.
pub fn bridge(nodes: &[NodeId]) -> Grudge {
    let middle = nodes.len() / 2;
    let left = &nodes[..middle];
    let right = &nodes[middle + 1..];
    let mut grudge = Grudge::new();
    for node in left {
        grudge.insert(*node, right.iter().copied().collect());
    }
    for node in right {
        grudge.insert(*node, left.iter().copied().collect());
    }
    grudge.retain(|_, dropped| !dropped.is_empty());
    grudge
}

/// Packets from `senders` to `receivers` are dropped; the other direction flows.
pub fn one_way(senders: &[NodeId], receivers: &[NodeId]) -> Grudge {
    let mut grudge = Grudge::new();
    for receiver in receivers {
        let dropped: BTreeSet<NodeId> = senders.iter().copied().filter(|s| s != receiver).collect();
        if !dropped.is_empty() {
            grudge.insert(*receiver, dropped);
        }
    }
    grudge
}

/// Builds a grudge of `shape`. `leader` is used by isolate-leader; without a known leader that
/// shape isolates a random node.
pub fn build(shape: Shape, nodes: &[NodeId], leader: Option<NodeId>, rng: &mut impl Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    match shape {
        Shape::Halves => halves(nodes),
        Shape::RandomHalves => random_halves(nodes, rng),
        Shape::MajoritiesRing => majorities_ring(&shuffled),
        Shape::Bridge => bridge(&shuffled),
        Shape::IsolateOne => isolate(nodes, shuffled[0]),
        Shape::IsolateLeader => isolate(nodes, leader.unwrap_or(shuffled[0])),
        Shape::OneWay => {
            let (senders, receivers) = shuffled.split_at(shuffled.len() / 2);
            one_way(senders, receivers)
        }
    }
}

/// Symmetric random packet loss: node -> (peer -> probability of dropping a packet between them).
pub type Loss = BTreeMap<NodeId, BTreeMap<NodeId, f64>>;

/// Loss with probability `p` on every link between `a` and every node of `bs`, both directions.
pub fn loss_between(a: &[NodeId], bs: &[NodeId], probability: f64) -> Loss {
    assert!((0.0..=1.0).contains(&probability));
    let mut loss = Loss::new();
    for x in a {
        for y in bs {
            if x != y {
                loss.entry(*x).or_default().insert(*y, probability);
                loss.entry(*y).or_default().insert(*x, probability);
            }
        }
    }
    loss
}

/// The nodes a grudge touches, for the fault record's targets.
pub fn grudge_nodes(grudge: &Grudge) -> BTreeSet<NodeId> {
    grudge.iter().flat_map(|(node, dropped)| std::iter::once(*node).chain(dropped.iter().copied())).collect()
}

/// The grudge with node names, as the history records it.
pub fn named_grudge(grudge: &Grudge) -> BTreeMap<String, Vec<String>> {
    grudge.iter().map(|(node, dropped)| (node_name(*node), dropped.iter().map(|n| node_name(*n)).collect())).collect()
}

/// The rules of `node`'s FAULTLINE chain (jumped to from both INPUT and OUTPUT) for a grudge and
/// loss. A dropped pair is cut at both ends, incoming and outgoing, so neither host's stack sees
/// anything of the other; `-s peer` only matches incoming and `-d peer` only outgoing packets.
pub fn rules_for_node(node: NodeId, grudge: &Grudge, loss: &Loss, address: impl Fn(NodeId) -> Ipv4Addr) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(dropped) = grudge.get(&node) {
        for peer in dropped {
            rules.push(format!("-A {FAULT_CHAIN} -s {} -j DROP", address(*peer)));
        }
    }
    for (other, dropped) in grudge {
        if dropped.contains(&node) {
            rules.push(format!("-A {FAULT_CHAIN} -d {} -j DROP", address(*other)));
        }
    }
    if let Some(peers) = loss.get(&node) {
        for (peer, probability) in peers {
            for direction in ["-s", "-d"] {
                rules.push(format!(
                    "-A {FAULT_CHAIN} {direction} {} -m statistic --mode random --probability {probability:.4} -j DROP",
                    address(*peer)
                ));
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    /// Nodes that can talk both ways with `node` (including itself).
    fn sees(grudge: &Grudge, nodes: &[NodeId], node: NodeId) -> BTreeSet<NodeId> {
        nodes
            .iter()
            .copied()
            .filter(|other| {
                let a_drops = grudge.get(&node).is_some_and(|d| d.contains(other));
                let b_drops = grudge.get(other).is_some_and(|d| d.contains(&node));
                !a_drops && !b_drops
            })
            .collect()
    }

    #[test]
    fn halves_splits_minority_from_majority_symmetrically() {
        let nodes = [1, 2, 3, 4, 5];
        let grudge = halves(&nodes);
        assert_eq!(grudge[&1], set(&[3, 4, 5]));
        assert_eq!(grudge[&2], set(&[3, 4, 5]));
        assert_eq!(grudge[&3], set(&[1, 2]));
        assert_eq!(grudge[&5], set(&[1, 2]));
        assert_eq!(sees(&grudge, &nodes, 4), set(&[3, 4, 5]));
    }

    #[test]
    fn random_halves_is_a_clean_split_and_seeded() {
        let nodes = [1, 2, 3, 4, 5];
        let a = random_halves(&nodes, &mut StdRng::seed_from_u64(7));
        let b = random_halves(&nodes, &mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        let minority: Vec<NodeId> = nodes.iter().copied().filter(|n| a[n].len() == 3).collect();
        assert_eq!(minority.len(), 2);
        for node in nodes {
            assert_eq!(sees(&a, &nodes, node).len(), if minority.contains(&node) { 2 } else { 3 });
        }
    }

    #[test]
    fn majorities_ring_gives_everyone_a_different_majority() {
        for n in [5usize, 7, 9] {
            let nodes: Vec<NodeId> = (1..=n).collect();
            let grudge = majorities_ring(&nodes);
            let mut views = BTreeSet::new();
            for node in &nodes {
                let view = sees(&grudge, &nodes, *node);
                assert!(view.len() > n / 2, "n={n}: {node} sees {view:?}");
                assert!(view.len() < n, "n={n}: {node} sees everyone");
                views.insert(view);
            }
            assert_eq!(views.len(), n, "n={n}: two nodes see the same majority");
        }
    }

    #[test]
    fn bridge_node_sees_everyone_and_the_sides_do_not_see_each_other() {
        let nodes = [1, 2, 3, 4, 5];
        let grudge = bridge(&nodes);
        assert!(!grudge.contains_key(&3));
        assert_eq!(sees(&grudge, &nodes, 3), set(&nodes));
        assert_eq!(sees(&grudge, &nodes, 1), set(&[1, 2, 3]));
        assert_eq!(sees(&grudge, &nodes, 5), set(&[3, 4, 5]));
    }

    #[test]
    fn isolate_cuts_one_node_from_all_others() {
        let nodes = [1, 2, 3, 4, 5];
        let grudge = isolate(&nodes, 4);
        assert_eq!(grudge[&4], set(&[1, 2, 3, 5]));
        assert_eq!(sees(&grudge, &nodes, 4), set(&[4]));
        assert_eq!(sees(&grudge, &nodes, 1), set(&[1, 2, 3, 5]));
    }

    #[test]
    fn isolate_leader_uses_the_leader_when_known() {
        let nodes = [1, 2, 3, 4, 5];
        let grudge = build(Shape::IsolateLeader, &nodes, Some(2), &mut StdRng::seed_from_u64(1));
        assert_eq!(grudge, isolate(&nodes, 2));
    }

    #[test]
    fn one_way_drops_only_one_direction() {
        let grudge = one_way(&[1, 2], &[3, 4, 5]);
        assert_eq!(grudge[&3], set(&[1, 2]));
        assert!(!grudge.contains_key(&1));
        let address = |n: NodeId| Ipv4Addr::new(10, 77, 1, n as u8);
        let rules_1 = rules_for_node(1, &grudge, &Loss::new(), address);
        // Node 1 stops sending to 3, 4, 5 but accepts from them.
        assert!(rules_1.iter().all(|r| r.contains(" -d ")), "{rules_1:?}");
        assert_eq!(rules_1.len(), 3);
        let rules_3 = rules_for_node(3, &grudge, &Loss::new(), address);
        assert!(rules_3.iter().all(|r| r.contains(" -s ")), "{rules_3:?}");
        assert_eq!(rules_3.len(), 2);
    }

    #[test]
    fn a_symmetric_cut_drops_input_and_output_at_both_ends() {
        let grudge = isolate(&[1, 2, 3], 1);
        let address = |n: NodeId| Ipv4Addr::new(10, 77, 9, n as u8);
        let rules = rules_for_node(1, &grudge, &Loss::new(), address);
        assert_eq!(
            rules,
            vec![
                "-A FAULTLINE -s 10.77.9.2 -j DROP",
                "-A FAULTLINE -s 10.77.9.3 -j DROP",
                "-A FAULTLINE -d 10.77.9.2 -j DROP",
                "-A FAULTLINE -d 10.77.9.3 -j DROP",
            ]
        );
        let rules_2 = rules_for_node(2, &grudge, &Loss::new(), address);
        assert_eq!(rules_2, vec!["-A FAULTLINE -s 10.77.9.1 -j DROP", "-A FAULTLINE -d 10.77.9.1 -j DROP"]);
    }

    #[test]
    fn loss_rules_use_the_statistic_match_both_ways() {
        let loss = loss_between(&[1], &[2, 3], 0.25);
        assert_eq!(loss[&2][&1], 0.25);
        let address = |n: NodeId| Ipv4Addr::new(10, 77, 9, n as u8);
        let rules = rules_for_node(1, &Grudge::new(), &loss, address);
        assert_eq!(rules.len(), 4);
        assert!(rules[0].contains("-m statistic --mode random --probability 0.2500 -j DROP"));
        assert!(rules_for_node(2, &Grudge::new(), &loss, address).len() == 2);
    }

    #[test]
    fn every_shape_builds_a_nonempty_grudge_for_five_nodes() {
        let nodes = [1, 2, 3, 4, 5];
        let mut rng = StdRng::seed_from_u64(3);
        for shape in Shape::ALL {
            let grudge = build(shape, &nodes, None, &mut rng);
            assert!(!grudge.is_empty(), "{shape:?}");
            for (node, dropped) in &grudge {
                assert!(!dropped.contains(node), "{shape:?}: {node} drops itself");
            }
            assert_eq!(Shape::parse(shape.name()), Some(shape));
        }
    }
}
