//! The process exit codes of every subcommand, defined once; `main` maps each subcommand's `Exit`
//! to the code. Documented in README.md ("Exit codes") and ARCHITECTURE.md.

use faultline_checker::Verdict;

/// How a subcommand ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: valid (`test`, `check`, `torture`: every cell), or a command without a verdict succeeded.
    Valid,
    /// 1: a history (or a cell) is not linearizable / violates its consistency model.
    Invalid,
    /// 2: the checker could not decide (a budget ran out); never "valid".
    Unknown,
    /// 3: `test` only: valid, but nothing was really tested (no fault fired, almost no op ok).
    Vacuous,
    /// 4: the harness failed or was interrupted (could not spawn, iptables failed, Ctrl-C); never
    /// a finding about the system under test.
    HarnessFailure,
    /// 5: the input could not be read or the options make no sense (`check` of a malformed
    /// history, an unknown model).
    BadInput,
}

impl Exit {
    pub const fn code(self) -> i32 {
        match self {
            Exit::Valid => 0,
            Exit::Invalid => 1,
            Exit::Unknown => 2,
            Exit::Vacuous => 3,
            Exit::HarnessFailure => 4,
            Exit::BadInput => 5,
        }
    }

    /// The outcome a child process's code stands for (torture reads its cells' codes).
    pub fn from_code(code: i32) -> Option<Exit> {
        [Exit::Valid, Exit::Invalid, Exit::Unknown, Exit::Vacuous, Exit::HarnessFailure, Exit::BadInput]
            .into_iter()
            .find(|exit| exit.code() == code)
    }

    pub fn of_verdict(verdict: Verdict) -> Exit {
        match verdict {
            Verdict::Valid => Exit::Valid,
            Verdict::Invalid => Exit::Invalid,
            Verdict::Unknown => Exit::Unknown,
        }
    }

    /// `self` and `other` together: invalid wins, then unknown, then valid (for several files).
    pub fn worse(self, other: Exit) -> Exit {
        let rank = |exit: Exit| match exit {
            Exit::BadInput | Exit::HarnessFailure => 4,
            Exit::Invalid => 3,
            Exit::Unknown => 2,
            Exit::Vacuous => 1,
            Exit::Valid => 0,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_code_and_reads_back() {
        let all = [Exit::Valid, Exit::Invalid, Exit::Unknown, Exit::Vacuous, Exit::HarnessFailure, Exit::BadInput];
        let codes: std::collections::BTreeSet<i32> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len(), "no code means two things");
        for exit in all {
            assert_eq!(Exit::from_code(exit.code()), Some(exit));
        }
        assert_eq!(Exit::from_code(9), None);
    }

    #[test]
    fn invalid_wins_over_unknown_and_valid() {
        assert_eq!(Exit::Valid.worse(Exit::Unknown).worse(Exit::Invalid).worse(Exit::Valid), Exit::Invalid);
    }
}
