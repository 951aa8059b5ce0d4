//! The consistency models, the anomalies, and which model forbids which (after Adya's PL-2,
//! PL-SI, PL-3 and strict serializability, as Elle names them).

use serde::{Serialize, Serializer};

use super::cycles::{CycleClass, Variant};

/// The consistency models `faultline check --consistency` knows, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    ReadCommitted,
    SnapshotIsolation,
    Serializable,
    StrictSerializable,
}

impl Consistency {
    pub const ALL: [Consistency; 4] = [
        Consistency::ReadCommitted,
        Consistency::SnapshotIsolation,
        Consistency::Serializable,
        Consistency::StrictSerializable,
    ];
    pub const NAMES: &'static [&'static str] =
        &["read-committed", "snapshot-isolation", "serializable", "strict-serializable"];

    pub fn from_name(name: &str) -> Option<Consistency> {
        Consistency::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Consistency::ReadCommitted => "read-committed",
            Consistency::SnapshotIsolation => "snapshot-isolation",
            Consistency::Serializable => "serializable",
            Consistency::StrictSerializable => "strict-serializable",
        }
    }

    /// This model and the weaker ones, weakest first.
    pub fn and_weaker(self) -> impl Iterator<Item = Consistency> {
        Consistency::ALL.into_iter().filter(move |c| *c <= self)
    }

    /// Whether the model rules the anomaly out.
    ///
    /// Every model here forbids G0, G1a, G1b and G1c (they are all at least read committed), and
    /// the non-cycle anomalies that leave no single version order or break a transaction's view of
    /// its own writes. Snapshot isolation adds G-single; serializability adds G2-item; strict
    /// serializability adds every cycle that needs real-time order, and process order too, since
    /// a process's transactions never overlap in time.
    pub fn forbids(self, anomaly: AnomalyKind) -> bool {
        match anomaly {
            AnomalyKind::Cycle(class, Variant::Plain) => match class {
                CycleClass::G0 | CycleClass::G1c => true,
                CycleClass::GSingle => self >= Consistency::SnapshotIsolation,
                CycleClass::G2Item => self >= Consistency::Serializable,
            },
            AnomalyKind::Cycle(_, Variant::Process | Variant::Realtime) => self == Consistency::StrictSerializable,
            AnomalyKind::G1a
            | AnomalyKind::G1b
            | AnomalyKind::Internal
            | AnomalyKind::DuplicateAppends
            | AnomalyKind::IncompatibleOrder
            | AnomalyKind::GarbageRead => true,
        }
    }
}

/// Every anomaly the checker names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    Cycle(CycleClass, Variant),
    /// Aborted read: a committed transaction saw a write of an aborted one.
    G1a,
    /// Intermediate read: a committed transaction saw a version its writer then overwrote.
    G1b,
    /// A transaction's read disagrees with its own earlier reads and writes.
    Internal,
    /// A read shows one appended value twice.
    DuplicateAppends,
    /// Two reads of one key that no single version order explains.
    IncompatibleOrder,
    /// A read saw a value no transaction wrote.
    GarbageRead,
}

impl AnomalyKind {
    pub fn name(self) -> &'static str {
        use CycleClass::*;
        use Variant::*;
        match self {
            AnomalyKind::Cycle(G0, Plain) => "G0",
            AnomalyKind::Cycle(G1c, Plain) => "G1c",
            AnomalyKind::Cycle(GSingle, Plain) => "G-single",
            AnomalyKind::Cycle(G2Item, Plain) => "G2-item",
            AnomalyKind::Cycle(G0, Process) => "G0-process",
            AnomalyKind::Cycle(G1c, Process) => "G1c-process",
            AnomalyKind::Cycle(GSingle, Process) => "G-single-process",
            AnomalyKind::Cycle(G2Item, Process) => "G2-item-process",
            AnomalyKind::Cycle(G0, Realtime) => "G0-realtime",
            AnomalyKind::Cycle(G1c, Realtime) => "G1c-realtime",
            AnomalyKind::Cycle(GSingle, Realtime) => "G-single-realtime",
            AnomalyKind::Cycle(G2Item, Realtime) => "G2-item-realtime",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::Internal => "internal",
            AnomalyKind::DuplicateAppends => "duplicate-appends",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::GarbageRead => "garbage-read",
        }
    }

    /// The models (of the four) that forbid it.
    pub fn forbidden_by(self) -> Vec<Consistency> {
        Consistency::ALL.into_iter().filter(|c| c.forbids(self)).collect()
    }
}

impl Serialize for AnomalyKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_forbids_what_the_weaker_ones_do() {
        let kinds = [
            AnomalyKind::G1a,
            AnomalyKind::Cycle(CycleClass::GSingle, Variant::Plain),
            AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain),
            AnomalyKind::Cycle(CycleClass::G0, Variant::Realtime),
            AnomalyKind::Cycle(CycleClass::G2Item, Variant::Process),
        ];
        for kind in kinds {
            for pair in Consistency::ALL.windows(2) {
                assert!(!pair[0].forbids(kind) || pair[1].forbids(kind), "{kind:?} {pair:?}");
            }
        }
        assert!(!Consistency::SnapshotIsolation.forbids(AnomalyKind::Cycle(CycleClass::G2Item, Variant::Plain)));
        assert!(!Consistency::Serializable.forbids(AnomalyKind::Cycle(CycleClass::G0, Variant::Realtime)));
    }
}
