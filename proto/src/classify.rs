//! The one classification of faultline-node's errors, and the one rule that turns the attempts of
//! an operation into its history outcome.
//!
//! Each error is judged from what the node guarantees when it sends it (the reasons are in
//! docs/node-protocol.md, one row per error):
//! - **definite**: the operation surely did not take effect through this attempt;
//! - **final**: retrying with the same `(client_id, seq)` cannot change the answer (it is the
//!   state machine's own answer, or no retry can learn more).
//!
//! An operation is `fail` only if no attempt was in doubt, or if a final definite answer came (the
//! node's sessions make such an answer the one result of that `(client_id, seq)`); `info` as soon
//! as some attempt may have applied and nothing final settled it. Reads change nothing, so every
//! error of a read is definite.

use serde::{Deserialize, Serialize};

/// The error names a node sends (the `error` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorName {
    NotLeader,
    CasMismatch,
    VersionMismatch,
    StaleSeq,
    LeadershipLost,
    ProposalDropped,
    ReadNotConfirmed,
    Timeout,
    Overloaded,
    ShuttingDown,
    BadRequest,
    ChangeInProgress,
    /// A name this client does not know (a newer node's): classified indefinite (when in doubt,
    /// `info`). No node of this version sends it.
    #[serde(other)]
    Unrecognised,
}

impl ErrorName {
    /// Every name, in the order of docs/node-protocol.md's table.
    pub const ALL: [ErrorName; 13] = [
        ErrorName::NotLeader,
        ErrorName::CasMismatch,
        ErrorName::VersionMismatch,
        ErrorName::StaleSeq,
        ErrorName::LeadershipLost,
        ErrorName::ProposalDropped,
        ErrorName::ReadNotConfirmed,
        ErrorName::Timeout,
        ErrorName::Overloaded,
        ErrorName::ShuttingDown,
        ErrorName::BadRequest,
        ErrorName::ChangeInProgress,
        ErrorName::Unrecognised,
    ];

    /// The name on the wire and in histories (`not-leader`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::NotLeader => "not-leader",
            ErrorName::CasMismatch => "cas-mismatch",
            ErrorName::VersionMismatch => "version-mismatch",
            ErrorName::StaleSeq => "stale-seq",
            ErrorName::LeadershipLost => "leadership-lost",
            ErrorName::ProposalDropped => "proposal-dropped",
            ErrorName::ReadNotConfirmed => "read-not-confirmed",
            ErrorName::Timeout => "timeout",
            ErrorName::Overloaded => "overloaded",
            ErrorName::ShuttingDown => "shutting-down",
            ErrorName::BadRequest => "bad-request",
            ErrorName::ChangeInProgress => "change-in-progress",
            ErrorName::Unrecognised => "unrecognised",
        }
    }
}

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request can change the state: reads (and status, digest) cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Read,
    /// Anything that enters the log: writes, cas, delete, append, admin commands.
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Certainty {
    /// Surely did not take effect (history `fail`).
    Definite,
    /// May have taken effect (history `info`).
    Indefinite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Another attempt with the same `seq` may succeed or learn more.
    Retry,
    /// The answer stands: stop.
    Final,
}

/// What one error answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub certainty: Certainty,
    pub retry: Retry,
}

impl Class {
    pub fn is_definite(self) -> bool {
        self.certainty == Certainty::Definite
    }
}

/// The table: what an error means for a request of `kind`. The node sets the wire's `definite`
/// from this, and every client settles outcomes with it ([`OpAttempts`]).
pub fn classify(error: ErrorName, kind: OpKind) -> Class {
    use Certainty::{Definite, Indefinite};
    use Retry::{Final, Retry as Again};
    let (certainty, retry) = match error {
        // Answered before anything was proposed.
        ErrorName::NotLeader | ErrorName::Overloaded | ErrorName::ChangeInProgress => (Definite, Again),
        // The state machine's answer for this (client_id, seq); sessions make a retry repeat it.
        ErrorName::CasMismatch | ErrorName::VersionMismatch | ErrorName::BadRequest => (Definite, Final),
        // This attempt's entry was overwritten at its index: it can never commit.
        ErrorName::ProposalDropped => (Definite, Again),
        // A read's quorum round failed; reads change nothing.
        ErrorName::ReadNotConfirmed => (Definite, Again),
        // This entry was not applied, but the session has seen a higher seq, so an earlier entry
        // of this same (client_id, seq) may have applied before it, and the session no longer
        // remembers: no retry can tell. Only a client that broke the one-write-at-a-time rule (or
        // reused a client_id) sees it.
        ErrorName::StaleSeq => (Indefinite, Final),
        // The entry was proposed and may still commit under the next leader.
        ErrorName::LeadershipLost => (Indefinite, Again),
        // The node gave up waiting; a proposed entry may still commit.
        ErrorName::Timeout | ErrorName::ShuttingDown => (Indefinite, Again),
        // When in doubt, info.
        ErrorName::Unrecognised => (Indefinite, Again),
    };
    let certainty = if kind == OpKind::Read { Definite } else { certainty };
    Class { certainty, retry }
}

/// How an operation ended when it did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Surely did not happen (history `fail`); the error or reason to record.
    Fail(String),
    /// May have happened (history `info`); why we do not know.
    Info(String),
}

/// The attempts of one operation so far: feed it every error answer and every lost attempt, stop
/// when it says so, and ask [`OpAttempts::give_up`] at the deadline.
#[derive(Clone, Debug)]
pub struct OpAttempts {
    kind: OpKind,
    /// The first reason an attempt may have taken effect.
    in_doubt: Option<String>,
    last_error: String,
}

impl OpAttempts {
    pub fn new(kind: OpKind) -> OpAttempts {
        OpAttempts { kind, in_doubt: None, last_error: "no node answered".into() }
    }

    /// A node answered with `error`. `Some` when the operation is settled.
    pub fn answered(&mut self, error: ErrorName) -> Option<Settled> {
        let class = classify(error, self.kind);
        self.last_error = error.as_str().to_string();
        if !class.is_definite() {
            self.in_doubt.get_or_insert_with(|| error.as_str().to_string());
        }
        match (class.retry, class.certainty) {
            (Retry::Final, Certainty::Definite) => Some(Settled::Fail(error.as_str().to_string())),
            (Retry::Final, Certainty::Indefinite) => Some(Settled::Info(error.as_str().to_string())),
            (Retry::Retry, _) => None,
        }
    }

    /// The request may have reached a node but no answer came (timeout, connection lost,
    /// a malformed answer).
    pub fn lost(&mut self, why: impl Into<String>) {
        let why = why.into();
        if self.kind == OpKind::Write {
            self.in_doubt.get_or_insert_with(|| why.clone());
        }
        self.last_error = why;
    }

    /// The request surely never left (could not connect).
    pub fn not_sent(&mut self, why: impl Into<String>) {
        self.last_error = why.into();
    }

    /// Whether some attempt may have taken effect.
    pub fn in_doubt(&self) -> bool {
        self.in_doubt.is_some()
    }

    /// The outcome at the deadline or when out of attempts.
    pub fn give_up(self) -> Settled {
        match self.in_doubt {
            Some(reason) => Settled::Info(reason),
            None => Settled::Fail(self.last_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_its_wire_spelling() {
        for name in ErrorName::ALL {
            let json = serde_json::to_value(name).unwrap();
            assert_eq!(json, serde_json::Value::String(name.as_str().into()));
            assert_eq!(serde_json::from_value::<ErrorName>(json).unwrap(), name);
        }
    }

    #[test]
    fn stale_seq_is_indefinite_and_final_for_a_write() {
        let class = classify(ErrorName::StaleSeq, OpKind::Write);
        assert_eq!(class, Class { certainty: Certainty::Indefinite, retry: Retry::Final });
        let mut attempts = OpAttempts::new(OpKind::Write);
        assert_eq!(attempts.answered(ErrorName::StaleSeq), Some(Settled::Info("stale-seq".into())));
    }

    #[test]
    fn every_error_of_a_read_is_definite() {
        for name in ErrorName::ALL {
            assert!(classify(name, OpKind::Read).is_definite(), "{name}");
        }
        let mut attempts = OpAttempts::new(OpKind::Read);
        attempts.lost("timeout");
        assert_eq!(attempts.answered(ErrorName::Timeout), None);
        assert_eq!(attempts.give_up(), Settled::Fail("timeout".into()));
    }

    #[test]
    fn a_write_once_in_doubt_is_info_unless_a_final_definite_answer_settles_it() {
        let mut attempts = OpAttempts::new(OpKind::Write);
        assert_eq!(attempts.answered(ErrorName::LeadershipLost), None);
        assert_eq!(attempts.answered(ErrorName::NotLeader), None);
        assert!(attempts.in_doubt());
        assert_eq!(attempts.clone().give_up(), Settled::Info("leadership-lost".into()));
        // The session's answer for this (client_id, seq) is the one result: final.
        assert_eq!(attempts.answered(ErrorName::CasMismatch), Some(Settled::Fail("cas-mismatch".into())));
    }

    #[test]
    fn a_write_that_never_left_is_a_definite_failure() {
        let mut attempts = OpAttempts::new(OpKind::Write);
        attempts.not_sent("connect n1: refused");
        assert_eq!(attempts.answered(ErrorName::ProposalDropped), None);
        assert_eq!(attempts.give_up(), Settled::Fail("proposal-dropped".into()));
    }

    #[test]
    fn an_unknown_error_is_in_doubt() {
        assert!(!classify(ErrorName::Unrecognised, OpKind::Write).is_definite());
    }
}
