//! Every group's committed offsets in one journal under `data_dir/groups` (the model of
//! Kafka's `__consumer_offsets`; the files and their compaction are `crate::journal`'s), and
//! the migration of the per-group files of earlier versions into it.

use std::path::Path;

use crate::groups::offsets_file;
use crate::groups::offsets_state::{LiveState, OffsetChange};
use crate::journal::log::{CompactionPolicy, JournalLog};
use crate::{BrokerError, metadata};

/// The offsets journal of a broker.
pub(crate) type OffsetsLog = JournalLog<LiveState>;

/// Opens the offsets journal in `dir` (creating both if missing), replays it, migrates the
/// per-group files of earlier versions into it, and removes what a crash left behind.
/// Returns the log and the committed offsets it holds. Blocking.
pub(crate) fn open(
    dir: &Path,
    policy: CompactionPolicy,
) -> Result<(OffsetsLog, LiveState), BrokerError> {
    let (mut log, mut state) = OffsetsLog::open(dir, policy)?;
    migrate(&mut log, &mut state)?;
    Ok((log, state))
}

/// Moves the per-group files of earlier versions into the log: each group's whole state
/// replaces what the log holds for it, then the files are removed.
fn migrate(log: &mut OffsetsLog, state: &mut LiveState) -> Result<(), BrokerError> {
    let dir = log.dir().to_owned();
    let legacy = offsets_file::read_all(&dir)?;
    if legacy.files.is_empty() {
        return Ok(());
    }
    let changes: Vec<(String, OffsetChange)> = legacy
        .groups
        .iter()
        .flat_map(|(group, offsets)| {
            let all = offsets.iter().map(|(tp, c)| (tp.clone(), *c)).collect();
            [
                (group.clone(), OffsetChange::Clear),
                (group.clone(), OffsetChange::Set(all)),
            ]
        })
        .collect();
    if !changes.is_empty() {
        log.append(&changes)?;
        for (group, change) in &changes {
            state.apply_change(group, change);
        }
    }
    for path in &legacy.files {
        metadata::remove_path(path)?;
    }
    metadata::sync_dir(&dir)?;
    tracing::info!(groups = legacy.groups.len(), dir = %dir.display(), "migrated the per-group offsets files into the offsets log");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use super::*;
    use crate::groups::offsets_state::Offsets;
    use crate::journal::Journaled;
    use crate::journal::log::segment_name;

    #[test]
    fn the_per_group_files_of_earlier_versions_are_migrated_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/offsets-files");
        for name in ["billing.offsets", "audit.offsets"] {
            fs::copy(fixtures.join(name), dir.path().join(name)).expect("copy fixture");
        }
        fs::write(dir.path().join("billing.offsets.tmp"), b"half").expect("write");
        let policy = CompactionPolicy {
            min_bytes: 4096,
            ratio: 2,
        };
        let load = || {
            let (_, state) = open(dir.path(), policy).expect("open the offsets log");
            BTreeMap::<String, Offsets>::from(state)
        };
        let state = load();
        let orders = |group: &str| -> Vec<(u32, u64)> {
            state[group]
                .iter()
                .filter(|(tp, _)| tp.topic == "orders")
                .map(|(tp, c)| (tp.partition, c.offset))
                .collect()
        };
        assert_eq!(orders("audit"), [(2, 5)]);
        assert_eq!(orders("billing"), [(0, 17), (1, 0), (2, 4)]);
        assert_eq!(state["billing"].len(), 4);
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [segment_name(LiveState::NAME, 0)]);
        assert_eq!(load(), state);
    }
}
