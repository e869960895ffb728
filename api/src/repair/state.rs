//! The repair-order state machine, free of storage so it can be tested alone.
//!
//! SUBMITTED → ASSIGNED → IN_PROGRESS → COMPLETED → CLOSED, with reassignment
//! from ASSIGNED or IN_PROGRESS back to ASSIGNED, and CANCELLED from SUBMITTED
//! or ASSIGNED (by the submitter) or any state before COMPLETED (by staff).

use entity::enums::RepairState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Assign,
    Start,
    Complete,
    Confirm,
    AutoClose,
    /// Cancelled by the person who submitted it.
    CancelBySubmitter,
    /// Cancelled by staff or the building's butler.
    CancelByStaff,
}

/// The state after `transition`, or `None` when it is not allowed from `from`.
pub fn next(from: RepairState, transition: Transition) -> Option<RepairState> {
    use RepairState::*;
    use Transition::*;
    match (from, transition) {
        (Submitted | Assigned | InProgress, Assign) => Some(Assigned),
        (Assigned, Start) => Some(InProgress),
        (InProgress, Complete) => Some(Completed),
        (Completed, Confirm | AutoClose) => Some(Closed),
        (Submitted | Assigned, CancelBySubmitter) => Some(Cancelled),
        (Submitted | Assigned | InProgress, CancelByStaff) => Some(Cancelled),
        _ => None,
    }
}

/// States in which the order still waits for someone on site.
pub const AWAITING_RESPONSE: [RepairState; 2] = [RepairState::Submitted, RepairState::Assigned];
/// States in which the work is not done yet.
pub const AWAITING_COMPLETION: [RepairState; 3] =
    [RepairState::Submitted, RepairState::Assigned, RepairState::InProgress];

pub fn name(state: RepairState) -> &'static str {
    match state {
        RepairState::Submitted => "SUBMITTED",
        RepairState::Assigned => "ASSIGNED",
        RepairState::InProgress => "IN_PROGRESS",
        RepairState::Completed => "COMPLETED",
        RepairState::Closed => "CLOSED",
        RepairState::Cancelled => "CANCELLED",
    }
}

#[cfg(test)]
mod tests {
    use RepairState::*;
    use Transition::*;

    use super::*;

    const ALL_STATES: [RepairState; 6] = [Submitted, Assigned, InProgress, Completed, Closed, Cancelled];
    const ALL_TRANSITIONS: [Transition; 7] =
        [Assign, Start, Complete, Confirm, AutoClose, CancelBySubmitter, CancelByStaff];

    #[test]
    fn the_happy_path_runs_to_closed() {
        let mut state = Submitted;
        for transition in [Assign, Start, Complete, Confirm] {
            state = next(state, transition).expect("allowed");
        }
        assert_eq!(state, Closed);
    }

    #[test]
    fn allows_exactly_the_documented_transitions() {
        let allowed = [
            (Submitted, Assign, Assigned),
            (Assigned, Assign, Assigned),
            (InProgress, Assign, Assigned),
            (Assigned, Start, InProgress),
            (InProgress, Complete, Completed),
            (Completed, Confirm, Closed),
            (Completed, AutoClose, Closed),
            (Submitted, CancelBySubmitter, Cancelled),
            (Assigned, CancelBySubmitter, Cancelled),
            (Submitted, CancelByStaff, Cancelled),
            (Assigned, CancelByStaff, Cancelled),
            (InProgress, CancelByStaff, Cancelled),
        ];
        for from in ALL_STATES {
            for transition in ALL_TRANSITIONS {
                let expected = allowed.iter().find(|(f, t, _)| *f == from && *t == transition).map(|(_, _, to)| *to);
                assert_eq!(next(from, transition), expected, "{from:?} --{transition:?}-->");
            }
        }
    }

    #[test]
    fn finished_orders_never_move() {
        for transition in ALL_TRANSITIONS {
            assert_eq!(next(Closed, transition), None);
            assert_eq!(next(Cancelled, transition), None);
        }
    }
}
