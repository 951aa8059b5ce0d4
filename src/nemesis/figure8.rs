//! The `figure-8` nemesis: Raft paper Figure 8 as a sequence of partitions, each step started as
//! soon as the cluster reaches the state the figure needs (the nemesis watches every node's term
//! and role). It asks one question: does a leader commit an entry of an earlier term by counting
//! replicas? A correct leader appends an entry of its own term first (a no-op), so the figure
//! cannot complete; a leader with `--bug commit-old-term` commits the old entry, which the next
//! leader then overwrites on a replica that already applied it: the replicas diverge.
//!
//! The steps, for a 3-node cluster (with more nodes the rest elect leaders of their own and the
//! figure does not form):
//! 1. Isolate the leader L (term t): its clients' writes stay in L's log only.
//! 2. As soon as another node M leads (term t1 > t), isolate M too: its clients' writes stay in
//!    M's log only (it must be cut before it replicates anything, hence the fast watch).
//! 3. Join L with the rest (M stays cut), and cut the clients off L: L, whose log is longest, is
//!    elected again (term t2) and replicates its old entries to the rest; without clients it has no
//!    entries of its own term to send with them (a correct L still has its no-op).
//! 4. Shortly after L leads, cut L and join M with the rest: M's last log term t1 is newer than the
//!    rest's (unless L gave them an entry of term t2), so M is elected and overwrites what L
//!    replicated in step 3 - which, with the bug, the rest had already applied.
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
    stage.set_cut(Some(complete_grudge(&[vec![l], vec![m], rest.clone()])))?;
    std::thread::sleep(ISOLATED_WRITES);

    let mut with_l = rest.clone();
    with_l.push(l);
    stage.note(format!("figure-8: step 3, join {} with {:?}, cut the clients off it", node_name(l), rest));
    let mut cut = complete_grudge(&[with_l.clone(), vec![m]]);
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
    let mut with_m = rest.clone();
    with_m.push(m);
    stage.note(format!(
        "figure-8: step 4, {} leads (term {t2}): cut it, join {} with {:?}",
        node_name(l),
        node_name(m),
        rest
    ));
    stage.set_cut(Some(complete_grudge(&[vec![l], with_m.clone()])))?;
    let Some((m2, t3)) = wait_for_leader(stage, &with_m, t2, STEP_TIMEOUT)? else {
        return Ok(json!({"formed": false, "ended_at": "step 4: no leader", "l": node_name(l), "m": node_name(m)}));
    };
    let formed = m2 == m;
    stage.note(format!("figure-8: {} leads at term {t3}; formed: {formed}", node_name(m2)));
    Ok(json!({"formed": formed, "l": node_name(l), "m": node_name(m), "terms": [t, t1, t2, t3],
              "last_leader": node_name(m2)}))
}
