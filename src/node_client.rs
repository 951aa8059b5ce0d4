//! The client for faultline-node, speaking the protocol of docs/node-protocol.md.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::{Cluster, NodeId};
use crate::db::{Client, Completion, Invocation};

pub struct NodeClient {
    _op_timeout: Duration,
}

impl NodeClient {
    pub fn new(_cluster: &Cluster, op_timeout: Duration) -> NodeClient {
        NodeClient {
            _op_timeout: op_timeout,
        }
    }
}

impl Client for NodeClient {
    fn open(&mut self, _node: NodeId) -> Result<()> {
        bail!("the faultline-node client protocol is not implemented yet")
    }

    fn invoke(&mut self, _invocation: &Invocation) -> Completion {
        Completion::Fail("not implemented".to_string())
    }

    fn close(&mut self) {}
}

pub fn find_leader(_cluster: &Cluster, _timeout: Duration) -> Option<NodeId> {
    None
}
