//! Disk faults: a power loss of the targets' disks (`lose-unfsynced`) or a power loss that tears
//! the last un-fsynced write (`torn-write`), through the faultfs mounts of `src/disk.rs`.
//!
//! A window: at its start the targets are killed, then their disks lose what was not fsynced; they
//! stay down until its stop, when they are started again on what the disk kept. With target `all`
//! this is a power loss of the whole cluster at once, which is what exposes a system that
//! acknowledges before its replicas are durable.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use faultline_checker::history::FaultPhase;
use rand::Rng;
use serde_json::json;

use super::{names, Family, Nemesis};
use crate::cluster::{node_name, NodeId};
use crate::disk::{LossDetail, PowerLoss};

/// The families that need a faultfs under every node.
pub const DISK_FAMILIES: [Family; 2] = [Family::LoseUnfsynced, Family::TornWrite];

/// Whether any of `families` needs the disk layer.
pub fn needs_disk(families: &[Family]) -> bool {
    families.iter().any(|f| DISK_FAMILIES.contains(f))
}

impl Nemesis<'_> {
    /// Kills the targets, then takes their un-fsynced writes away.
    pub(super) fn start_power_loss(&self, family: Family) -> Result<()> {
        let disk = self.disk.with_context(|| format!("{} needs faultfs mounts, and none were made", family.name()))?;
        let (spec, targets) = self.pick_targets();
        let seed: u64 = self.rng.lock().unwrap().gen();
        let loss = match family {
            Family::TornWrite => PowerLoss::TornWrite { seed },
            _ => PowerLoss::LoseUnfsynced,
        };
        let detail = match loss {
            PowerLoss::TornWrite { seed } => json!({"seed": seed}),
            PowerLoss::LoseUnfsynced => json!({}),
        };
        self.record_targeted_start(family, spec, &targets, detail)?;
        {
            let mut active = self.active.lock().unwrap();
            active.power_lost.entry(family).or_default().0.extend(targets.iter().copied());
        }
        // Every target dies before any disk forgets: a node still running would keep its open
        // files, and with `all` no node may copy back what another lost.
        for node in &targets {
            self.kill(*node)?;
        }
        for node in &targets {
            let lost = disk.lose(*node, loss)?;
            self.log.log(format!("{} of {}: {lost:?}", family.name(), node_name(*node)));
            let mut active = self.active.lock().unwrap();
            active.power_lost.entry(family).or_default().1.insert(node_name(*node), LossDetail::from(lost));
        }
        Ok(())
    }

    /// Starts the targets again on what their disks kept, and records what was lost.
    pub(super) fn stop_power_loss(&self, family: Family) -> Result<()> {
        let Some((down, lost)) = self.active.lock().unwrap().power_lost.remove(&family) else {
            return Ok(());
        };
        for node in &down {
            self.restart(*node)?;
        }
        self.history.fault(
            family.name(),
            FaultPhase::Stop,
            names(down.iter().copied()),
            None,
            Some(json!({"lost": lost})),
        )?;
        self.log.log(format!("{}: restarted {down:?}", family.name()));
        Ok(())
    }

    /// The nodes down for a power loss, for the progress line.
    pub(super) fn powered_off(&self) -> BTreeSet<NodeId> {
        self.active.lock().unwrap().power_lost.values().flat_map(|(down, _)| down.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_disk_families_need_the_disk_layer() {
        assert!(needs_disk(&[Family::Partition, Family::TornWrite]));
        assert!(needs_disk(&[Family::LoseUnfsynced]));
        assert!(!needs_disk(&super::super::default_families(true)));
        assert_eq!(Family::parse("lose-unfsynced"), Some(Family::LoseUnfsynced));
        assert_eq!(Family::parse("torn-write"), Some(Family::TornWrite));
    }
}
