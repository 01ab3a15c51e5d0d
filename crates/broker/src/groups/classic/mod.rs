//! Client-assigned groups: the membership of Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), in which one member, the leader, computes every
//! member's assignment and the broker passes it on.
//!
//! The broker never reads what the members exchange through it: their protocol metadata and
//! their assignments are opaque bytes. It runs the phases (join, sync, stable), chooses the
//! protocol, fences stale members by generation and static members by instance id, and
//! expires silent members. A group is either client-assigned or server-assigned (see
//! [`GroupKind`](crate::GroupKind)) while it has members; the committed offsets, the group
//! registry, descriptions and lag are shared by both kinds.
//!
//! # Locks
//!
//! Every handler runs under the group's lock (the coordinator's registry, then the group's
//! state, as `docs/architecture.md` orders them), does no I/O and never waits: an operation
//! that must wait for the join phase to end or for the leader's assignment takes a one-shot
//! receiver out of the handler and awaits it after releasing the lock. The coordinator's
//! timer ends phases whose deadline passed.

mod member;
mod operations;
mod protocol;
mod state;
mod types;

pub(crate) use member::{ClassicSpec, Reply};
pub(crate) use state::{ClassicGroup, JoinLimits};
pub use types::{
    ClassicCommit, ClassicGroupDescription, ClassicJoin, ClassicJoined, ClassicMemberDescription,
    ClassicSync, ClassicSynced, JoinedMember, LeavingMember,
};
