//! The `member` nemesis: membership changes through the system's own commands
//! (`Membership::change_membership`, `src/member.rs`). A window either removes one node from the
//! configuration at its start and adds it back (with its data: as a learner, then promoted) at its
//! stop, or hands leadership to another voter at its start. The final heal restores the full
//! membership before the final reads. One server changes at a time, as the systems require.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use faultline_checker::history::FaultPhase;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::json;

use super::{names, Family, Nemesis, TargetSpec};
use crate::cluster::{node_name, NodeId};
use crate::member::{MemberAnswer, MemberChange};

/// How long one step (a change accepted, a configuration reached) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two tries of a change the system asked to retry.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What a member window did, for its stop record.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct MemberOutcome {
    pub action: &'static str,
    pub node: String,
    /// Each step and how it ended ("accepted", or why not).
    pub steps: Vec<(String, String)>,
    /// For a removal: whether the node is a voter again at the stop.
    pub restored: Option<bool>,
}

impl Nemesis<'_> {
    /// Sends `change` until the system accepts or refuses it, or `STEP_TIMEOUT` passes.
    fn change_until_settled(&self, change: MemberChange) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let why = match self.db.membership().map(|m| m.change_membership(self.cluster, change)) {
                None => return "the system has no membership commands".to_string(),
                Some(Ok(MemberAnswer::Accepted)) => return "accepted".to_string(),
                Some(Ok(MemberAnswer::Refused(why))) => return format!("refused: {why}"),
                Some(Ok(MemberAnswer::Retry(why))) => why,
                Some(Err(e)) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                return format!("not accepted within {STEP_TIMEOUT:?}: {why}");
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Waits (bounded) until `node` is, or is not, a voter in the leader's configuration.
    fn wait_for_voter(&self, node: NodeId, voter: bool) -> bool {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(Ok(voters)) = self.db.membership().map(|m| m.voters(self.cluster)) {
                if voters.contains(&node) == voter {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    pub(super) fn start_member(&self) -> Result<()> {
        if self.db.membership().is_none() {
            bail!("the member nemesis needs membership commands, and {} has none", self.db.name());
        }
        let family = Family::Member;
        let transfer = self.rng.lock().unwrap().gen_bool(1.0 / 3.0);
        let leader = self.db.leader(self.cluster);
        let (spec, targets) = self.pick_targets();
        let mut outcome = MemberOutcome::default();
        self.active.lock().unwrap().member_used = true;
        if transfer {
            let others: Vec<NodeId> = self.cluster.node_ids().into_iter().filter(|n| Some(*n) != leader).collect();
            let node = *others.choose(&mut *self.rng.lock().unwrap()).expect("a cluster has nodes");
            outcome.action = "transfer-leader";
            outcome.node = node_name(node);
            self.record_targeted_start(family, TargetSpec::One, &[node], json!({"action": "transfer-leader"}))?;
            let result = self.change_until_settled(MemberChange::TransferLeader(node));
            outcome.steps.push(("transfer_leader".to_string(), result));
        } else {
            // One server at a time: the first target.
            let node = targets[0];
            outcome.action = "remove";
            outcome.node = node_name(node);
            self.record_targeted_start(family, spec, &[node], json!({"action": "remove"}))?;
            let result = self.change_until_settled(MemberChange::Remove(node));
            let removed = result == "accepted" && self.wait_for_voter(node, false);
            outcome.steps.push(("remove_node".to_string(), result));
            outcome.steps.push(("out of the voters".to_string(), removed.to_string()));
            self.active.lock().unwrap().member_removed.push(node);
        }
        self.log.log(format!("member: {outcome:?}"));
        self.active.lock().unwrap().member = Some(outcome);
        Ok(())
    }

    /// Adds a removed node back, with its data: as a learner, then promoted.
    fn add_back(&self, node: NodeId, outcome: &mut MemberOutcome) -> bool {
        if self.wait_for_voter_now(node) {
            return true;
        }
        let learner = self.change_until_settled(MemberChange::AddLearner(node));
        outcome.steps.push(("add_learner".to_string(), learner));
        let promoted = self.change_until_settled(MemberChange::Promote(node));
        outcome.steps.push(("promote".to_string(), promoted));
        self.wait_for_voter(node, true)
    }

    /// Whether `node` is a voter right now (one question, no wait).
    fn wait_for_voter_now(&self, node: NodeId) -> bool {
        matches!(self.db.membership().map(|m| m.voters(self.cluster)), Some(Ok(voters)) if voters.contains(&node))
    }

    pub(super) fn stop_member(&self) -> Result<()> {
        let Some(mut outcome) = self.active.lock().unwrap().member.take() else {
            return Ok(());
        };
        let removed = std::mem::take(&mut self.active.lock().unwrap().member_removed);
        let mut restored = true;
        for node in &removed {
            restored &= self.add_back(*node, &mut outcome);
        }
        if !removed.is_empty() {
            outcome.restored = Some(restored);
        }
        let targets = if removed.is_empty() { vec![outcome.node.clone()] } else { names(removed.iter().copied()) };
        self.log.log(format!("member healed: {outcome:?}"));
        self.history.fault(family_name(), FaultPhase::Stop, targets, None, Some(serde_json::to_value(&outcome)?))?;
        Ok(())
    }

    /// The final heal's promise: every node a voter again before the final reads. A system that
    /// will not take a node back is a finding for the log and the history, not a harness failure.
    pub(super) fn restore_full_membership(&self) -> Result<()> {
        if !self.active.lock().unwrap().member_used {
            return Ok(());
        }
        for node in self.cluster.node_ids() {
            if self.wait_for_voter_now(node) {
                continue;
            }
            let mut outcome = MemberOutcome { action: "restore", node: node_name(node), ..MemberOutcome::default() };
            let restored = self.add_back(node, &mut outcome);
            outcome.restored = Some(restored);
            self.log.log(format!("final heal: {outcome:?}"));
        }
        Ok(())
    }
}

fn family_name() -> &'static str {
    Family::Member.name()
}
