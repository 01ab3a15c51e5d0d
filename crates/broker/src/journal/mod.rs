//! Journals: append-only logs of state changes under one directory, compacted in the
//! background into a snapshot of the live state. The committed offsets of every consumer
//! group are one (`groups/offsets-<N>.log`), the state of every share
//! group another (`share/share-<N>.log`), the exchanges, queue definitions and bindings a
//! third (`routing/routing-<N>.log`).
//!
//! A journal's directory holds at most one compacted file `<name>-<N>.snapshot` (the live
//! state as of the end of segment `N`) and the segments after it, `<name>-<M>.log` with
//! `M > N`, the last of which takes the appends. Every file starts with the journal's
//! header (magic and version) followed by frames ([`frame`]), each holding records of the
//! journal's kind. Loading replays the snapshot, then the segments in order.

pub(crate) mod compaction;
pub(crate) mod frame;
pub(crate) mod log;
pub(crate) mod queue;
pub(crate) mod writer;

use std::path::Path;

use crate::BrokerError;

/// Takes the records of one frame of a snapshot.
pub(crate) type FrameSink<'a, R> = dyn FnMut(&[R]) -> Result<(), BrokerError> + 'a;

/// What a journal holds: the live state its records replay into, and their encoding.
pub(crate) trait Journaled: Clone + Default + Send + 'static {
    /// One change of the state.
    type Record: Clone + Send + 'static;

    /// What the files are named after: `<NAME>-<seq>.log`.
    const NAME: &'static str;

    /// Magic and version at the start of every file.
    const FILE_HEADER: [u8; 6];

    /// Appends `record`'s bytes to a frame body; the error says which field does not fit.
    fn encode(record: &Self::Record, out: &mut Vec<u8>) -> Result<(), String>;

    /// The records of an intact frame's body, in order; the error says what is malformed.
    fn decode(body: &[u8]) -> Result<Vec<Self::Record>, String>;

    /// Applies one record.
    fn apply(&mut self, record: &Self::Record);

    /// Bytes a compacted file holding this state takes, its header included.
    fn compacted_len(&self) -> u64;

    /// Writes the records of a compacted file, one frame at a time: `frame` is called with
    /// the records of each frame in turn.
    fn snapshot(&self, frame: &mut FrameSink<'_, Self::Record>) -> Result<(), BrokerError>;

    /// The error for a file of the journal that fails its checks.
    fn corrupt(path: &Path, reason: String) -> BrokerError;
}
