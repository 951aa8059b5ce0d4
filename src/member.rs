//! Membership changes as a capability of a system under test (`Membership::change_membership`,
//! `Db::voters`), for the `member` nemesis (`nemesis/member.rs`): the typed changes and answers,
//! and faultline-node's implementation through its admin commands (`docs/node-protocol.md`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use crate::cluster::{Cluster, NodeId};

/// One change, sent to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// Take a node out of the configuration (a voter through a joint configuration).
    Remove(NodeId),
    /// Add a node back as a learner: it receives the log without voting.
    AddLearner(NodeId),
    /// Make a learner a voter.
    Promote(NodeId),
    /// Hand leadership to a node.
    TransferLeader(NodeId),
}

/// What the system said to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAnswer {
    /// Accepted (it may still have to commit).
    Accepted,
    /// Not now (another change under way, no leader, not the leader): try again a little later.
    Retry(String),
    /// Refused for good (it makes no sense in the current configuration).
    Refused(String),
}

/// faultline-node: each change goes to the node that says it leads.
pub mod faultline_node {
    use super::*;

    fn address(cluster: &Cluster, node: NodeId) -> SocketAddr {
        SocketAddr::from((cluster.node_address(node), crate::systems::faultline_node::NODE_PORT))
    }

    /// Sends `change` to the current leader. Called from the client namespace.
    pub fn change(cluster: &Cluster, change: MemberChange, timeout: Duration) -> Result<MemberAnswer> {
        let Some(leader) = crate::systems::faultline_node::client::find_leader(cluster, timeout) else {
            return Ok(MemberAnswer::Retry("no leader".to_string()));
        };
        let (op, node) = match change {
            MemberChange::Remove(node) => ("remove_node", node),
            MemberChange::AddLearner(node) => ("add_learner", node),
            MemberChange::Promote(node) => ("promote", node),
            MemberChange::TransferLeader(node) => ("transfer_leader", node),
        };
        let request = json!({"id": 1, "op": op, "node_id": node});
        let response =
            crate::systems::faultline_node::client::admin_request(address(cluster, leader), &request, timeout)?;
        Ok(match (response["status"].as_str(), response["error"].as_str()) {
            (Some("ok"), _) => MemberAnswer::Accepted,
            (
                _,
                Some(
                    "change-in-progress" | "not-leader" | "timeout" | "overloaded" | "shutting-down"
                    | "leadership-lost",
                ),
            ) => MemberAnswer::Retry(response["error"].as_str().unwrap_or_default().to_string()),
            (_, Some(error)) => MemberAnswer::Refused(format!("{error}: {}", response["message"])),
            _ => bail!("{op} {node}: unexpected answer {response}"),
        })
    }

    /// The voters of the configuration the leader is in (the new side of a joint one).
    pub fn voters(cluster: &Cluster, timeout: Duration) -> Result<BTreeSet<NodeId>> {
        let Some(leader) = crate::systems::faultline_node::client::find_leader(cluster, timeout) else {
            bail!("no leader");
        };
        let status = crate::systems::faultline_node::client::node_status(address(cluster, leader), timeout)?;
        let Some(voters) = status["voters"].as_array() else {
            bail!("status of n{leader} has no voters: {status}");
        };
        Ok(voters.iter().filter_map(|v| v.as_u64()).map(|v| v as NodeId).collect())
    }
}
