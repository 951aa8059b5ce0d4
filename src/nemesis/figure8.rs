//! The `figure-8` nemesis: Raft paper Figure 8 as a sequence of partitions, each step started as
//! soon as the cluster reaches the state the figure needs (the nemesis watches every node's term
//! and role). It asks one question: does a leader commit an entry of an earlier term by counting
//! replicas? A correct leader appends an entry of its own term first (a no-op), so the figure
//! cannot complete; a leader with `--bug commit-old-term` commits the old entry, which the next
//! leader then overwrites on a replica that already applied it: the replicas diverge.
//!
//! The steps, for any cluster of 3 or more nodes ("the rest" is every node but L and M; on 5 nodes
//! it is three nodes, a majority, so while L and M are cut it is split into minorities too, or it
//! would elect a leader of its own and the figure could not form):
//! 1. Isolate the leader L (term t): its clients' writes stay in L's log only.
//! 2. As soon as another node M leads (term t1 > t), isolate M too: its clients' writes stay in
//!    M's log only (it must be cut before it replicates anything, hence the fast watch). The rest
//!    is cut into minorities (`minorities`), so nobody leads until step 3.
//! 3. Join L with just enough of the rest for a majority (M and the others stay cut), and cut the
//!    clients off L: each of those needs L's vote to lead and L's log is longest, so L is elected
//!    again (term t2) and replicates its old entries to them; without clients it has no entries of
//!    its own term to send with them (a correct L still has its no-op).
//! 4. Shortly after L leads, cut L and join M with those same nodes: M's last log term t1 is newer
//!    than theirs (unless L gave them an entry of term t2), so M is elected and overwrites what L
//!    replicated in step 3 - which, with the bug, they had already applied.
//!
//! The order of the steps is fixed; the moments are the cluster's (see `script.rs`).

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::grudge::{complete_grudge, CLIENTS};
use super::script::{wait_for_leader, Stage};
use crate::cluster::{node_name, NodeId};

/// The longest one step waits for the leader it needs.
const STEP_TIMEOUT: Duration = Duration::from_secs(4);
/// How long M stays cut, taking writes it cannot replicate, before step 3.
const ISOLATED_WRITES: Duration = Duration::from_millis(600);
/// How long L leads in step 3 before it is cut: time to replicate its old entries to the rest,
/// count them and tell the rest the commit index (a few round trips and fsyncs).
const REELECTED_LEADS: Duration = Duration::from_millis(100);

/// `rest` cut into groups that are each a minority of a cluster of `cluster_size` nodes (one group
/// when it already is one). Pure.
pub fn minorities(rest: &[NodeId], cluster_size: usize) -> Vec<Vec<NodeId>> {
    let largest_minority = ((cluster_size.max(1) - 1) / 2).max(1);
    rest.chunks(largest_minority).map(<[NodeId]>::to_vec).collect()
}

/// Runs steps 1-4 and leaves the last cut in place (the caller heals it at the window's stop).
/// Returns what happened, for the fault's stop record.
pub fn run(stage: &dyn Stage) -> Result<Value> {
    let nodes = stage.cluster().node_ids();
    let Some((l, t)) = wait_for_leader(stage, &nodes, 0, STEP_TIMEOUT)? else {
        return Ok(json!({"formed": false, "ended_at": "no leader to start from"}));
    };
    let others: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != l).collect();
    stage.note(format!("figure-8: step 1, isolate leader {} (term {t})", node_name(l)));
    stage.set_cut(Some(complete_grudge(&[vec![l], others.clone()])))?;

    let Some((m, t1)) = wait_for_leader(stage, &others, t, STEP_TIMEOUT)? else {
        return Ok(json!({"formed": false, "ended_at": "step 2: no new leader", "l": node_name(l)}));
    };
    let rest: Vec<NodeId> = others.iter().copied().filter(|n| *n != m).collect();
    stage.note(format!("figure-8: step 2, isolate the new leader {} (term {t1}) too", node_name(m)));
    let mut groups = vec![vec![l], vec![m]];
    groups.extend(minorities(&rest, nodes.len()));
    stage.set_cut(Some(complete_grudge(&groups)))?;
    std::thread::sleep(ISOLATED_WRITES);

    // Only L and just enough of the rest for a majority: each of those needs L's vote to lead,
    // and L, whose log is longest, gives it to none of them. The others stay cut.
    let majority = nodes.len() / 2 + 1;
    let (chosen, leftover) = rest.split_at((majority - 1).min(rest.len()));
    let mut with_l = chosen.to_vec();
    with_l.push(l);
    stage.note(format!("figure-8: step 3, join {} with {:?}, cut the clients off it", node_name(l), chosen));
    let mut groups = vec![with_l.clone(), vec![m]];
    groups.extend(minorities(leftover, nodes.len()));
    let mut cut = complete_grudge(&groups);
    cut.entry(l).or_default().insert(CLIENTS);
    stage.set_cut(Some(cut))?;
    let Some((l2, t2)) = wait_for_leader(stage, &with_l, t1, STEP_TIMEOUT)? else {
        return Ok(json!({"formed": false, "ended_at": "step 3: no leader", "l": node_name(l), "m": node_name(m)}));
    };
    if l2 != l {
        return Ok(json!({"formed": false, "ended_at": format!("step 3: {} led, not {}", node_name(l2), node_name(l)),
                         "l": node_name(l), "m": node_name(m)}));
    }

    // Clients cannot reach L, so waiting adds no entry of term t2 (before the clients were cut
    // off, 25 ms more here halved the figures that formed: clients found L and added entries).
    std::thread::sleep(REELECTED_LEADS);
    let mut with_m = chosen.to_vec();
    with_m.push(m);
    stage.note(format!(
        "figure-8: step 4, {} leads (term {t2}): cut it, join {} with {:?}",
        node_name(l),
        node_name(m),
        chosen
    ));
    let mut groups = vec![vec![l], with_m.clone()];
    groups.extend(minorities(leftover, nodes.len()));
    stage.set_cut(Some(complete_grudge(&groups)))?;
    let Some((m2, t3)) = wait_for_leader(stage, &with_m, t2, STEP_TIMEOUT)? else {
        return Ok(json!({"formed": false, "ended_at": "step 4: no leader", "l": node_name(l), "m": node_name(m)}));
    };
    let formed = m2 == m;
    stage.note(format!("figure-8: {} leads at term {t3}; formed: {formed}", node_name(m2)));
    Ok(json!({"formed": formed, "l": node_name(l), "m": node_name(m), "terms": [t, t1, t2, t3],
              "last_leader": node_name(m2)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_is_cut_into_minorities_so_nobody_leads_while_l_and_m_are_cut() {
        assert_eq!(minorities(&[3], 3), vec![vec![3]]);
        assert_eq!(minorities(&[3, 4, 5], 5), vec![vec![3, 4], vec![5]]);
        for size in 3..=9 {
            let rest: Vec<NodeId> = (3..=size as NodeId).collect();
            let groups = minorities(&rest, size);
            assert_eq!(groups.concat(), rest, "every node of the rest is in one group");
            assert!(groups.iter().all(|g| g.len() * 2 < size), "{size} nodes: {groups:?}");
        }
    }
}
