//! The `restart-voter` nemesis asks one question: does a node that voted, then crashed, remember
//! its vote? A node that forgets it (`--bug no-vote-persist`) can vote for a second candidate in
//! the same term, and two leaders are elected in one term.
//!
//! With PreVote and the up-to-date check, that takes an order of messages at one voter D that
//! real faults almost never produce (D must grant Y's pre-vote, then vote for X, crash before X's
//! first entry reaches it, and only then hear Y's vote request), so the script makes the order.
//! Partitions fix who can talk to whom, SIGSTOP holds a node's input in its socket buffers (a
//! frozen node answers nothing, then everything at once), and the election timers the nodes report
//! time the steps. Links the critical steps use are never cut and reopened, because a reopened
//! link takes up to ~1.5 s to carry traffic again (TCP_USER_TIMEOUT, redial). Five nodes, roles:
//! D (the voter), X (the old leader, then the first leader) with its voter B, Y with its voter A.
//!
//! 0. Cut D off while clients write, so its log falls behind: everyone then refuses D's
//!    pre-votes, and D grants everyone's. Then cut the clients off every node.
//! 1. Leave only the links X-D (once X has stepped down), Y-D, X-B, Y-A, and freeze A and B. X,
//!    Y and D become pre-candidates of term T; X and Y each collect D's pre-vote grant, one short
//!    of a majority.
//! 2. At the start of a long round of Y's election timer, freeze D and thaw B: X completes its
//!    pre-vote, campaigns in T+1, B votes, and X's vote request waits in D's socket buffer. Cut
//!    X -> D (D -> X still passes) and thaw D: D votes for X, X wins, and X's entries do not
//!    reach D.
//! 3. Crash and restart D: it comes back in term T+1 with (with the bug) no vote.
//! 4. Thaw A: Y completes its pre-vote (it still holds D's grant from this round), campaigns in
//!    T+1 and asks D, which votes a second time. A correct D remembers its vote for X and refuses.
//! 5. Two leaders of term T+1 (X with B, Y with A and D): the clients write to both; the caller
//!    heals at the window's stop, where a leader hears the other and asserts.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::grudge::CLIENTS;
use super::script::{both_ways, grudge_from_flows, wait_for_leader, wait_until, watch, Stage};
use crate::cluster::{node_name, NodeId};

/// How long D is cut off while clients write (it must miss some entries).
const FALL_BEHIND: Duration = Duration::from_millis(400);
/// How long X, the old leader, takes to step down when it hears no majority (CheckQuorum).
const STEP_DOWN: Duration = Duration::from_millis(900);
/// How long the rest of step 1 lasts: every election timer runs out, and the links to D, cut in
/// step 0, carry traffic again.
const SETTLE: Duration = Duration::from_millis(2000);
/// Step 2 waits for a round of Y's election timer with at least this many ticks left (steps 2-4
/// take about 400 ms; a new round would drop D's grant).
const Y_ROUND_TICKS_LEFT: u64 = 48;
/// ... and for X's round to have this many left (X campaigns within about 100 ms).
const X_ROUND_TICKS_LEFT: u64 = 15;
/// The longest a step waits for a role it needs.
const STEP_TIMEOUT: Duration = Duration::from_millis(600);
/// How long the two leaders of one term take writes before the heal.
const TWO_LEADERS: Duration = Duration::from_millis(1000);

/// Every pair both ways: the flows of an undivided cluster.
fn everyone(nodes: &[NodeId]) -> BTreeSet<(NodeId, NodeId)> {
    nodes.iter().flat_map(|a| nodes.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect()
}

/// Lets only `flows` pass between nodes, and with `clients_cut` drops the clients at every node.
fn set_flows(stage: &dyn Stage, flows: &BTreeSet<(NodeId, NodeId)>, clients_cut: bool) -> Result<()> {
    let nodes = stage.cluster().node_ids();
    let mut grudge = grudge_from_flows(&nodes, flows);
    if clients_cut {
        for node in &nodes {
            grudge.entry(*node).or_default().insert(CLIENTS);
        }
    }
    stage.set_cut(Some(grudge))
}

/// Runs the script; leaves the last cut in place for the caller to heal at the window's stop.
/// Every node it froze is thawed before it returns, whatever happened.
pub fn run(stage: &dyn Stage) -> Result<Value> {
    let frozen = std::cell::RefCell::new(BTreeSet::new());
    let result = steps(stage, &frozen);
    for node in frozen.borrow().iter() {
        stage.thaw(*node)?;
    }
    result
}

fn steps(stage: &dyn Stage, frozen: &std::cell::RefCell<BTreeSet<NodeId>>) -> Result<Value> {
    let freeze = |node: NodeId| -> Result<()> {
        frozen.borrow_mut().insert(node);
        stage.freeze(node)
    };
    let thaw = |node: NodeId| -> Result<()> {
        frozen.borrow_mut().remove(&node);
        stage.thaw(node)
    };
    let nodes = stage.cluster().node_ids();
    if nodes.len() != 5 {
        return Ok(json!({"formed": false, "ended_at": "restart-voter needs exactly 5 nodes"}));
    }
    let Some((leader, _)) = wait_for_leader(stage, &nodes, 0, Duration::from_secs(4))? else {
        return Ok(json!({"formed": false, "ended_at": "no leader to start from"}));
    };
    let followers: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != leader).collect();
    let (d, x, b, y, a) = (followers[0], leader, followers[1], followers[2], followers[3]);
    let roles = json!({"d": node_name(d), "x": node_name(x), "b": node_name(b), "y": node_name(y), "a": node_name(a)});
    let ended = |at: &str| Ok(json!({"formed": false, "ended_at": at, "roles": roles}));

    // Step 0.
    stage.note(format!("restart-voter: step 0, {} falls behind, clients cut off", node_name(d)));
    let mut flows = everyone(&nodes);
    flows.retain(|(from, to)| *from != d && *to != d);
    set_flows(stage, &flows, false)?;
    std::thread::sleep(FALL_BEHIND);
    set_flows(stage, &flows, true)?;
    std::thread::sleep(Duration::from_millis(200));

    // Step 1.
    stage.note("restart-voter: step 1, links X-D Y-D X-B Y-A only, A and B frozen".to_string());
    // X must step down before it can reach D, or it would bring D's log up to date; A and B are
    // frozen only once they too have heard no leader for an election timeout, so that thawed
    // they grant at once; and X-D and Y-D open only after X's and Y's election rounds have
    // started over without A's and B's grants (any two grants would be a majority).
    let mut flows = both_ways(&[(x, b), (y, a)]);
    set_flows(stage, &flows, true)?;
    std::thread::sleep(STEP_DOWN);
    freeze(a)?;
    freeze(b)?;
    std::thread::sleep(STEP_DOWN);
    flows.extend(both_ways(&[(x, d), (y, d)]));
    set_flows(stage, &flows, true)?;
    std::thread::sleep(SETTLE);
    let views = watch(stage, &[x, y, d])?;
    let pre_candidates = [x, y, d].iter().all(|n| views.get(n).is_some_and(|v| v.role == "pre-candidate"));
    let terms: BTreeSet<u64> = [x, y, d].iter().filter_map(|n| views.get(n).map(|v| v.term)).collect();
    if !pre_candidates || terms.len() != 1 {
        return ended("step 1: X, Y and D are not pre-candidates of one term");
    }
    let t = *terms.iter().next().expect("one term");

    // Step 2, at the start of a long round of Y's and with time left in X's.
    let in_time = wait_until(stage, &[x, y], Duration::from_secs(3), |views| {
        let left = |n: NodeId| views.get(&n).and_then(|v| v.election_remaining_ticks);
        left(y).is_some_and(|y_left| y_left >= Y_ROUND_TICKS_LEFT)
            && left(x).is_some_and(|x_left| x_left >= X_ROUND_TICKS_LEFT)
    })?;
    if in_time.is_none() {
        return ended("step 2: no long round of Y's election timer");
    }
    // Y's new round's pre-vote to D and D's grant: a round trip.
    std::thread::sleep(Duration::from_millis(10));
    freeze(d)?;
    thaw(b)?;
    let campaigned = wait_until(stage, &[x], STEP_TIMEOUT, |views| {
        views.get(&x).is_some_and(|v| v.role == "candidate" && v.term == t + 1)
    })?;
    if campaigned.is_none() {
        return ended("step 2: X did not campaign");
    }
    // X's vote request to D goes out once X's term and vote are on disk.
    std::thread::sleep(Duration::from_millis(15));
    flows.remove(&(x, d));
    set_flows(stage, &flows, true)?;
    thaw(d)?;
    if wait_for_leader(stage, &[x], t, STEP_TIMEOUT)?.is_none() {
        return ended("step 2: X did not win");
    }

    // Step 3.
    stage.note(format!("restart-voter: step 3, {} leads term {}; crash-restart {}", node_name(x), t + 1, node_name(d)));
    stage.crash_restart(d)?;
    if wait_until(stage, &[d], Duration::from_secs(2), |views| views.contains_key(&d))?.is_none() {
        return ended("step 3: D did not come back");
    }

    // Step 4.
    thaw(a)?;
    let second = wait_for_leader(stage, &[y], t, STEP_TIMEOUT)?;
    let formed = second.is_some_and(|(_, term)| term == t + 1);
    stage.note(format!("restart-voter: step 4, a second leader of term {}: {formed}", t + 1));

    // Step 5: X's side and Y's side apart, D between them, clients everywhere.
    let (x_side, y_side) = ([x, b], [y, a]);
    let mut flows = everyone(&nodes);
    flows.retain(|(from, to)| {
        !((x_side.contains(from) && y_side.contains(to)) || (y_side.contains(from) && x_side.contains(to)))
    });
    set_flows(stage, &flows, false)?;
    if formed {
        std::thread::sleep(TWO_LEADERS);
    }
    let at = if formed { "two leaders of one term" } else { "step 4: the restarted voter did not vote again" };
    Ok(json!({"formed": formed, "roles": roles, "term": t + 1, "ended_at": at}))
}
