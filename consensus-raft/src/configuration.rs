//! Cluster membership, joint-consensus capable (Raft paper §6, thesis §4.3).
//!
//! A [`Membership`] is either a simple configuration `C` (one voter set) or a
//! joint configuration `C_old,new` (two voter sets). While joint, every
//! decision that needs a majority (an election, a commit, a ReadIndex
//! confirmation) needs a majority of **both** sets. Learners receive the log
//! but never vote and never count toward a quorum.
//!
//! A configuration takes effect on a server as soon as its entry is in the
//! server's log, committed or not (§6: "a server always uses the latest
//! configuration in its log").

use consensus_actors::types::{LogIndex, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A configuration of the cluster: who votes (one set, or two while joint)
/// and who only learns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The voters of `C` (or of `C_old` while joint).
    pub voters: BTreeSet<NodeId>,
    /// The voters of `C_new` while the configuration is joint.
    pub voters_new: Option<BTreeSet<NodeId>>,
    /// Non-voting members that receive the log (nodes catching up before
    /// they are promoted).
    pub learners: BTreeSet<NodeId>,
}

/// Why a configuration change cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// A joint configuration cannot start another change.
    #[error("the configuration is already joint; finish the current change first")]
    AlreadyJoint,
    /// Only a joint configuration can be left.
    #[error("the configuration is not joint")]
    NotJoint,
    /// A configuration without voters could never elect a leader.
    #[error("a configuration needs at least one voter")]
    NoVoters,
    /// The node is already a voter.
    #[error("{0} is already a voter")]
    AlreadyVoter(NodeId),
    /// The node is not a member.
    #[error("{0} is not a member of the configuration")]
    NotMember(NodeId),
}

fn majority_of(set: &BTreeSet<NodeId>, granted: &BTreeSet<NodeId>) -> bool {
    !set.is_empty() && set.iter().filter(|n| granted.contains(n)).count() > set.len() / 2
}

/// The highest index that a majority of `set` has matched, given each
/// member's match index (0 for unknown members). Empty sets match nothing.
fn majority_index(set: &BTreeSet<NodeId>, match_index: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    if set.is_empty() {
        return LogIndex::ZERO;
    }
    // With n voters sorted descending, the entry at position n/2 is held by
    // n/2 + 1 voters: a majority. Small clusters sort on the stack (this runs
    // on every acknowledgement the leader gets).
    const ON_STACK: usize = 16;
    let n = set.len();
    let majority = |m: &mut [LogIndex]| {
        m.sort_unstable_by(|a, b| b.cmp(a));
        m[n / 2]
    };
    if n <= ON_STACK {
        let mut buf = [LogIndex::ZERO; ON_STACK];
        for (slot, &id) in buf.iter_mut().zip(set) {
            *slot = match_index(id);
        }
        majority(&mut buf[..n])
    } else {
        let mut m: Vec<LogIndex> = set.iter().map(|&id| match_index(id)).collect();
        majority(&mut m)
    }
}

impl Membership {
    /// The simple configuration with exactly `voters` and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self {
            voters: voters.into_iter().collect(),
            voters_new: None,
            learners: BTreeSet::new(),
        }
    }

    /// The configuration a node joining an existing cluster starts with: it
    /// knows no voter, so it never starts an election until the leader's log
    /// tells it the configuration.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether this is a joint configuration `C_old,new`.
    pub fn is_joint(&self) -> bool {
        self.voters_new.is_some()
    }

    /// Whether `id` votes in this configuration (in either set while joint).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_new.as_ref().is_some_and(|v| v.contains(&id))
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every voter of either set, in id order.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        if let Some(new) = &self.voters_new {
            all.extend(new.iter().copied());
        }
        all
    }

    /// Every member: voters of both sets and learners, in id order.
    pub fn all_members(&self) -> BTreeSet<NodeId> {
        let mut all = self.all_voters();
        all.extend(self.learners.iter().copied());
        all
    }

    /// Whether `granted` holds a majority of the voters, and, while joint, a
    /// majority of the new voters as well (§6: "agreement (for elections and
    /// entry commitment) requires separate majorities from both the old and
    /// new configurations").
    pub fn is_quorum(&self, granted: &BTreeSet<NodeId>) -> bool {
        majority_of(&self.voters, granted)
            && self
                .voters_new
                .as_ref()
                .is_none_or(|new| majority_of(new, granted))
    }

    /// The highest index replicated on a majority (on both majorities while
    /// joint), given each voter's match index.
    pub fn committed_index(&self, match_index: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        let old = majority_index(&self.voters, &match_index);
        match &self.voters_new {
            Some(new) => old.min(majority_index(new, &match_index)),
            None => old,
        }
    }

    /// Whether `id` alone makes up a voter set (`C`, or `C_old` or `C_new`
    /// while joint): only then can `id`'s own log growing, with every
    /// other match index unchanged, raise
    /// [`committed_index`](Self::committed_index). In a set of two or more
    /// a majority needs another member, and no member matches beyond the
    /// leader's log.
    pub fn is_sole_voter(&self, id: NodeId) -> bool {
        let alone = |set: &BTreeSet<NodeId>| set.len() == 1 && set.contains(&id);
        alone(&self.voters) || self.voters_new.as_ref().is_some_and(alone)
    }

    /// The joint configuration `C_old,new` that moves from this (simple)
    /// configuration to `new_voters`. Nodes of `new_voters` stop being
    /// learners.
    pub fn to_joint(&self, new_voters: BTreeSet<NodeId>) -> Result<Membership, MembershipError> {
        if self.is_joint() {
            return Err(MembershipError::AlreadyJoint);
        }
        if new_voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        let learners = self
            .learners
            .iter()
            .copied()
            .filter(|l| !new_voters.contains(l))
            .collect();
        Ok(Membership {
            voters: self.voters.clone(),
            voters_new: Some(new_voters),
            learners,
        })
    }

    /// The simple configuration `C_new` that ends this joint configuration.
    pub fn leave_joint(&self) -> Result<Membership, MembershipError> {
        let new = self.voters_new.clone().ok_or(MembershipError::NotJoint)?;
        Ok(Membership {
            voters: new,
            voters_new: None,
            learners: self.learners.clone(),
        })
    }

    /// This configuration with `id` added as a learner.
    pub fn with_learner(&self, id: NodeId) -> Result<Membership, MembershipError> {
        if self.is_voter(id) {
            return Err(MembershipError::AlreadyVoter(id));
        }
        let mut m = self.clone();
        m.learners.insert(id);
        Ok(m)
    }

    /// This configuration without the learner `id`.
    pub fn without_learner(&self, id: NodeId) -> Result<Membership, MembershipError> {
        if !self.is_learner(id) {
            return Err(MembershipError::NotMember(id));
        }
        let mut m = self.clone();
        m.learners.remove(&id);
        Ok(m)
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |s: &BTreeSet<NodeId>| {
            s.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "{{{}}}", list(&self.voters))?;
        if let Some(new) = &self.voters_new {
            write!(f, "+{{{}}}", list(new))?;
        }
        if !self.learners.is_empty() {
            write!(f, " learners {{{}}}", list(&self.learners))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn simple_majority_needs_more_than_half() {
        let m = Membership::new(ids(&[1, 2, 3, 4, 5]));
        assert!(!m.is_quorum(&ids(&[1, 2])));
        assert!(m.is_quorum(&ids(&[1, 2, 3])));
        assert!(!m.is_quorum(&ids(&[1, 6, 7, 8])), "non-voters do not count");
        let even = Membership::new(ids(&[1, 2, 3, 4]));
        assert!(!even.is_quorum(&ids(&[1, 2])));
        assert!(even.is_quorum(&ids(&[1, 2, 3])));
        assert!(!Membership::empty().is_quorum(&ids(&[1])));
    }

    /// §6: "Agreement (for elections and entry commitment) requires separate
    /// majorities from both the old and new configurations."
    #[test]
    fn joint_quorum_needs_both_majorities() {
        let m = Membership::new(ids(&[1, 2, 3]))
            .to_joint(ids(&[3, 4, 5]))
            .unwrap();
        assert!(m.is_joint());
        assert!(!m.is_quorum(&ids(&[1, 2])), "old majority only");
        assert!(!m.is_quorum(&ids(&[4, 5])), "new majority only");
        assert!(m.is_quorum(&ids(&[1, 3, 4])));
        assert!(m.is_quorum(&ids(&[2, 3, 5])));
        assert!(m.is_quorum(&ids(&[1, 2, 4, 5])));
    }

    #[test]
    fn committed_index_is_the_majority_match() {
        let m = Membership::new(ids(&[1, 2, 3]));
        let idx = |n: NodeId| LogIndex([0, 10, 7, 3][n.0 as usize]);
        assert_eq!(m.committed_index(idx), LogIndex(7));
        let five = Membership::new(ids(&[1, 2, 3, 4, 5]));
        let idx5 = |n: NodeId| LogIndex([0, 9, 1, 8, 2, 7][n.0 as usize]);
        assert_eq!(five.committed_index(idx5), LogIndex(7));
        // Beyond the on-stack size (16): node i matches index i, so 17
        // voters commit up to 9 (held by nodes 9..=17, a majority of 9).
        let big = Membership::new((1..=17).map(NodeId));
        assert_eq!(big.committed_index(|n| LogIndex(n.0)), LogIndex(9));
        let sixteen = Membership::new((1..=16).map(NodeId));
        assert_eq!(sixteen.committed_index(|n| LogIndex(n.0)), LogIndex(8));
    }

    #[test]
    fn a_sole_voter_is_alone_in_one_voter_set() {
        let one = Membership::new(ids(&[1]));
        assert!(one.is_sole_voter(NodeId(1)));
        assert!(!one.is_sole_voter(NodeId(2)));
        assert!(!Membership::new(ids(&[1, 2])).is_sole_voter(NodeId(1)));
        let joint = Membership::new(ids(&[1, 2, 3]))
            .to_joint(ids(&[1]))
            .unwrap();
        assert!(joint.is_sole_voter(NodeId(1)));
        assert!(!joint.is_sole_voter(NodeId(2)));
        assert!(!Membership::empty().is_sole_voter(NodeId(1)));
    }

    #[test]
    fn joint_committed_index_is_the_minimum_of_both() {
        let m = Membership::new(ids(&[1, 2, 3]))
            .to_joint(ids(&[4, 5, 6]))
            .unwrap();
        let idx = |n: NodeId| LogIndex([0, 10, 10, 10, 2, 3, 1][n.0 as usize]);
        assert_eq!(m.committed_index(idx), LogIndex(2));
    }

    #[test]
    fn change_sequence_learner_joint_new() {
        let c = Membership::new(ids(&[1, 2, 3]));
        let with_learner = c.with_learner(NodeId(4)).unwrap();
        assert!(with_learner.is_learner(NodeId(4)));
        assert!(!with_learner.is_voter(NodeId(4)));
        assert_eq!(with_learner.all_members(), ids(&[1, 2, 3, 4]));
        let joint = with_learner.to_joint(ids(&[1, 2, 3, 4])).unwrap();
        assert!(joint.is_voter(NodeId(4)) && !joint.is_learner(NodeId(4)));
        assert_eq!(
            joint.to_joint(ids(&[1])),
            Err(MembershipError::AlreadyJoint)
        );
        let new = joint.leave_joint().unwrap();
        assert_eq!(new, Membership::new(ids(&[1, 2, 3, 4])));
        assert_eq!(new.leave_joint(), Err(MembershipError::NotJoint));
        assert_eq!(
            new.with_learner(NodeId(2)),
            Err(MembershipError::AlreadyVoter(NodeId(2)))
        );
        assert_eq!(c.to_joint(BTreeSet::new()), Err(MembershipError::NoVoters));
    }

    #[test]
    fn display_shows_both_sets() {
        let m = Membership::new(ids(&[1, 2]))
            .with_learner(NodeId(9))
            .unwrap()
            .to_joint(ids(&[2, 3]))
            .unwrap();
        assert_eq!(m.to_string(), "{n1,n2}+{n2,n3} learners {n9}");
    }
}
