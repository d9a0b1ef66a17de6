//! One way to make a map hold exactly what is wanted: entries not wanted are removed,
//! entries missing or different are written, and every failure is reported, never
//! dropped.
use std::{collections::BTreeMap, fmt::Debug};

use aya::{
    Pod,
    maps::{HashMap, LpmTrie, MapData, MapError, lpm_trie::Key},
};

/// One entry read from a table, or the error that stopped the walk.
pub type Entry<K, V> = Result<(K, V), MapError>;

/// A key-value map the daemon keeps in line with its desired state.
pub trait Table {
    type Key: Ord + Copy + Debug;
    type Value: PartialEq + Copy;
    /// Every entry, or the error that stopped the walk.
    fn entries(&self) -> Vec<Entry<Self::Key, Self::Value>>;
    fn put(&mut self, key: &Self::Key, value: &Self::Value) -> Result<(), MapError>;
    fn del(&mut self, key: &Self::Key) -> Result<(), MapError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the map: {source}")]
    Read { source: MapError },
    #[error("cannot write {key}: {source}")]
    Write { key: String, source: MapError },
    #[error("cannot remove {key}: {source}")]
    Remove { key: String, source: MapError },
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Synced {
    pub written: usize,
    pub removed: usize,
    pub errors: Vec<SyncError>,
}

/// Make `map` hold exactly `want`. An unreadable map is still written in full (a write
/// of an equal value is harmless), so one bad read costs no entry.
pub fn sync<T: Table>(map: &mut T, want: &BTreeMap<T::Key, T::Value>) -> Synced {
    let mut out = Synced::default();
    let mut have = BTreeMap::new();
    let mut complete = true;
    for entry in map.entries() {
        match entry {
            Ok((k, v)) => {
                have.insert(k, v);
            }
            Err(source) => {
                complete = false;
                out.errors.push(SyncError::Read { source });
            }
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(k)) {
        match map.del(k) {
            Ok(()) => out.removed += 1,
            Err(source) => out.errors.push(SyncError::Remove {
                key: format!("{k:?}"),
                source,
            }),
        }
    }
    for (k, v) in want {
        if complete && have.get(k) == Some(v) {
            continue;
        }
        match map.put(k, v) {
            Ok(()) => out.written += 1,
            Err(source) => out.errors.push(SyncError::Write {
                key: format!("{k:?}"),
                source,
            }),
        }
    }
    out
}

impl<K, V> Table for HashMap<MapData, K, V>
where
    K: Pod + Ord + Debug,
    V: Pod + PartialEq,
{
    type Key = K;
    type Value = V;

    /// Read in batches (a map of ten thousand endpoints is three calls, not twenty
    /// thousand); entry by entry, errors included, where the kernel refuses batches.
    fn entries(&self) -> Vec<Entry<K, V>> {
        match super::batch::entries(self) {
            Ok(entries) => entries.into_iter().map(Ok).collect(),
            Err(_) => self.iter().collect(),
        }
    }

    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }

    fn del(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
}

/// An LPM trie keyed by (prefix length, data).
impl<K, V> Table for LpmTrie<MapData, K, V>
where
    K: Pod + Ord + Debug,
    V: Pod + PartialEq,
{
    type Key = (u32, K);
    type Value = V;

    fn entries(&self) -> Vec<Entry<(u32, K), V>> {
        self.iter()
            .map(|r| r.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
            .collect()
    }

    fn put(&mut self, &(len, data): &(u32, K), value: &V) -> Result<(), MapError> {
        self.insert(&Key::new(len, data), value, 0)
    }

    fn del(&mut self, &(len, data): &(u32, K)) -> Result<(), MapError> {
        self.remove(&Key::new(len, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose listed keys fail to write or remove, and whose walk may fail.
    #[derive(Default)]
    struct Flaky {
        map: BTreeMap<u32, u32>,
        bad_keys: Vec<u32>,
        bad_walk: bool,
    }

    fn failure() -> MapError {
        MapError::KeyNotFound
    }

    impl Table for Flaky {
        type Key = u32;
        type Value = u32;

        fn entries(&self) -> Vec<Entry<u32, u32>> {
            let mut out: Vec<_> = self.map.iter().map(|(k, v)| Ok((*k, *v))).collect();
            if self.bad_walk {
                out.truncate(1);
                out.push(Err(failure()));
            }
            out
        }

        fn put(&mut self, key: &u32, value: &u32) -> Result<(), MapError> {
            if self.bad_keys.contains(key) {
                return Err(failure());
            }
            self.map.insert(*key, *value);
            Ok(())
        }

        fn del(&mut self, key: &u32) -> Result<(), MapError> {
            if self.bad_keys.contains(key) {
                return Err(failure());
            }
            self.map.remove(key);
            Ok(())
        }
    }

    #[test]
    fn writes_what_differs_and_removes_what_is_not_wanted() {
        let mut t = Flaky {
            map: BTreeMap::from([(1, 10), (2, 20), (3, 30)]),
            ..Flaky::default()
        };
        let want = BTreeMap::from([(1, 10), (2, 21), (4, 40)]);
        let s = sync(&mut t, &want);
        assert_eq!(t.map, want);
        assert_eq!((s.written, s.removed, s.errors.len()), (2, 1, 0));
        let again = sync(&mut t, &want);
        assert_eq!((again.written, again.removed), (0, 0), "nothing left to do");
    }

    #[test]
    fn every_error_is_reported_and_the_rest_still_done() {
        let mut t = Flaky {
            map: BTreeMap::from([(1, 10), (3, 30), (5, 50)]),
            bad_keys: vec![3, 4],
            ..Flaky::default()
        };
        let want = BTreeMap::from([(2, 20), (4, 40), (6, 60)]);
        let s = sync(&mut t, &want);
        let errors: Vec<String> = s.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("cannot remove 3"), "{errors:?}");
        assert!(errors[1].starts_with("cannot write 4"), "{errors:?}");
        assert_eq!(t.map, BTreeMap::from([(2, 20), (3, 30), (6, 60)]));
    }

    #[test]
    fn a_failed_walk_is_reported_and_every_wanted_entry_written() {
        let mut t = Flaky {
            map: BTreeMap::from([(1, 10), (2, 20)]),
            bad_walk: true,
            ..Flaky::default()
        };
        let want = BTreeMap::from([(1, 10), (2, 20), (3, 30)]);
        let s = sync(&mut t, &want);
        assert!(matches!(s.errors.as_slice(), [SyncError::Read { .. }]));
        assert_eq!(s.written, 3, "an incomplete view writes every wanted entry");
        assert_eq!(t.map, want);
    }
}
