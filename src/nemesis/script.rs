//! What the scripted nemeses (`figure-8`, `restart-voter`) share: a `Stage` to act on the cluster,
//! and bounded watches of every node's term, role and election timer. A script takes each step as
//! soon as the cluster reaches the state the step needs; every wait has a timeout, and a step that
//! does not come about ends the script early (recorded, never an error).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::grudge::Grudge;
use crate::cluster::{Cluster, NodeId};
use crate::systems::{Db, NodeView};

/// What a script needs from the nemesis.
pub trait Stage {
    fn cluster(&self) -> &Cluster;
    fn db(&self) -> &dyn Db;
    /// Replaces the script's partition (None heals it) and applies the rules.
    fn set_cut(&self, cut: Option<Grudge>) -> Result<()>;
    fn note(&self, line: String);
    /// SIGSTOP / SIGCONT.
    fn freeze(&self, node: NodeId) -> Result<()>;
    fn thaw(&self, node: NodeId) -> Result<()>;
    /// SIGKILL, then start again at once.
    fn crash_restart(&self, node: NodeId) -> Result<()>;
}

/// How often the nodes are asked while a step waits.
pub const WATCH_PERIOD: Duration = Duration::from_millis(3);

/// The view of every node of `nodes` that answers (a frozen or dead node does not, after a
/// timeout: ask only the nodes a step needs, or the watch slows down to that timeout).
pub fn watch(stage: &dyn Stage, nodes: &[NodeId]) -> Result<BTreeMap<NodeId, NodeView>> {
    let Some(raft) = stage.db().raft() else {
        anyhow::bail!("scripted nemeses need a db that reports terms and roles");
    };
    let mut views = BTreeMap::new();
    for &node in nodes {
        if let Ok(view) = raft.raft_status(stage.cluster(), node) {
            views.insert(node, view);
        }
    }
    Ok(views)
}

/// Watches `nodes` until `ready` holds (returns that view) or `timeout` passes (None).
pub fn wait_until(
    stage: &dyn Stage,
    nodes: &[NodeId],
    timeout: Duration,
    ready: impl Fn(&BTreeMap<NodeId, NodeView>) -> bool,
) -> Result<Option<BTreeMap<NodeId, NodeView>>> {
    let deadline = Instant::now() + timeout;
    loop {
        let views = watch(stage, nodes)?;
        if ready(&views) {
            return Ok(Some(views));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(WATCH_PERIOD);
    }
}

/// Waits until a node of `among` leads with a term above `above`; its (node, term).
pub fn wait_for_leader(
    stage: &dyn Stage,
    among: &[NodeId],
    above: u64,
    timeout: Duration,
) -> Result<Option<(NodeId, u64)>> {
    let leader_of = |views: &BTreeMap<NodeId, NodeView>| {
        views
            .iter()
            .filter(|(node, view)| view.is_leader() && view.term > above && among.contains(node))
            .max_by_key(|(_, view)| view.term)
            .map(|(node, view)| (*node, view.term))
    };
    Ok(wait_until(stage, among, timeout, |views| leader_of(views).is_some())?.and_then(|views| leader_of(&views)))
}

/// A partition given by the directed flows that pass: node `n` drops packets from `m` unless
/// `(m, n)` is in `flows`. One direction of a pair can pass while the other is cut. Pure.
pub fn grudge_from_flows(nodes: &[NodeId], flows: &BTreeSet<(NodeId, NodeId)>) -> Grudge {
    let mut grudge = Grudge::new();
    for n in nodes {
        let dropped: BTreeSet<NodeId> =
            nodes.iter().copied().filter(|m| m != n && !flows.contains(&(*m, *n))).collect();
        if !dropped.is_empty() {
            grudge.insert(*n, dropped);
        }
    }
    grudge
}

/// Both directions of each pair.
pub fn both_ways(pairs: &[(NodeId, NodeId)]) -> BTreeSet<(NodeId, NodeId)> {
    pairs.iter().flat_map(|(a, b)| [(*a, *b), (*b, *a)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_passes_one_way_only() {
        let nodes = [1, 2, 3];
        let mut flows = both_ways(&[(1, 2)]);
        flows.insert((3, 1));
        let grudge = grudge_from_flows(&nodes, &flows);
        // 1 hears 2 and 3; 2 hears 1 only; 3 hears nobody.
        assert!(!grudge.contains_key(&1));
        assert_eq!(grudge[&2], BTreeSet::from([3]));
        assert_eq!(grudge[&3], BTreeSet::from([1, 2]));
    }
}
