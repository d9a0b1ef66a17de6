//! Pinned maps checked against the embedded object before aya reuses them: aya opens a
//! pin by its name alone, so a map pinned with another layout would be misread.
//!
//! A difference is refused, never migrated, except a `max_entries` the daemon's flags set
//! (`--ct-entries`): that map is replaced and its entries are lost, which is logged. The
//! maps the daemon refills from its desired state could be replaced too, but a layout
//! difference under an unchanged `_vN` name means another bpfnet's pins, which are not
//! this daemon's to destroy.
use std::{fmt, fs, io, path::Path};

use aya::maps::{MapData, MapInfo, MapType};
use aya_obj::{Object, generated::bpf_map_type, maps::PinningType};
use tracing::warn;

use super::DatapathError;

/// A map's definition as the kernel keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Definition {
    /// `None`: a type aya does not know.
    map_type: Option<MapType>,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

/// One way a pinned map differs from the definition this bpfnet expects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mismatch {
    Type {
        pinned: Option<MapType>,
        expected: Option<MapType>,
    },
    KeySize {
        pinned: u32,
        expected: u32,
    },
    ValueSize {
        pinned: u32,
        expected: u32,
    },
    MaxEntries {
        pinned: u32,
        expected: u32,
    },
    Flags {
        pinned: u32,
        expected: u32,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = |t: &Option<MapType>| t.map_or("unknown".to_owned(), |t| format!("{t:?}"));
        match self {
            Self::Type { pinned, expected } => {
                write!(f, "type {} (expected {})", ty(pinned), ty(expected))
            }
            Self::KeySize { pinned, expected } => {
                write!(f, "key size {pinned} (expected {expected})")
            }
            Self::ValueSize { pinned, expected } => {
                write!(f, "value size {pinned} (expected {expected})")
            }
            Self::MaxEntries { pinned, expected } => {
                write!(f, "max entries {pinned} (expected {expected})")
            }
            Self::Flags { pinned, expected } => {
                write!(f, "flags {pinned:#x} (expected {expected:#x})")
            }
        }
    }
}

/// `mismatches` as one phrase, for an error message.
pub(super) fn list(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Definition {
    fn of_object(map: &aya_obj::Map) -> Self {
        Self {
            map_type: bpf_map_type::try_from(map.map_type())
                .ok()
                .and_then(|t| MapType::try_from(t).ok()),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            flags: map.map_flags(),
        }
    }

    fn of_pin(info: &MapInfo) -> Self {
        Self {
            map_type: info.map_type().ok(),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        }
    }

    /// Every way `pinned` differs from this definition.
    fn mismatches(&self, pinned: &Self) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if pinned.map_type != self.map_type {
            out.push(Mismatch::Type {
                pinned: pinned.map_type,
                expected: self.map_type,
            });
        }
        if pinned.key_size != self.key_size {
            out.push(Mismatch::KeySize {
                pinned: pinned.key_size,
                expected: self.key_size,
            });
        }
        if pinned.value_size != self.value_size {
            out.push(Mismatch::ValueSize {
                pinned: pinned.value_size,
                expected: self.value_size,
            });
        }
        if pinned.max_entries != self.max_entries {
            out.push(Mismatch::MaxEntries {
                pinned: pinned.max_entries,
                expected: self.max_entries,
            });
        }
        if pinned.flags != self.flags {
            out.push(Mismatch::Flags {
                pinned: pinned.flags,
                expected: self.flags,
            });
        }
        out
    }
}

/// What to do with a pin found under a map's name.
#[derive(Debug, PartialEq)]
enum Verdict {
    Reuse,
    /// Only a size the daemon's flags set differs: replace the map.
    Resize {
        pinned: u32,
        expected: u32,
    },
    Refuse(Vec<Mismatch>),
}

fn verdict(expected: &Definition, pinned: &Definition, resizable: bool) -> Verdict {
    match expected.mismatches(pinned).as_slice() {
        [] => Verdict::Reuse,
        &[Mismatch::MaxEntries { pinned, expected }] if resizable => {
            Verdict::Resize { pinned, expected }
        }
        mismatches => Verdict::Refuse(mismatches.to_vec()),
    }
}

/// The maps `object` pins by name, sorted by name, each as aya will create it:
/// `max_entries` holds the sizes the loader overrides.
fn definitions(
    object: &[u8],
    max_entries: &[(&str, u32)],
) -> Result<Vec<(String, Definition)>, DatapathError> {
    let obj = Object::parse(object).map_err(|e| DatapathError::Object {
        source: Box::new(e),
    })?;
    let mut defs: Vec<(String, Definition)> = obj
        .maps
        .iter()
        .filter(|(_, map)| map.pinning() == PinningType::ByName)
        .map(|(name, map)| {
            let mut def = Definition::of_object(map);
            if let Some(&(_, n)) = max_entries.iter().find(|(m, _)| m == name) {
                def.max_entries = n;
            }
            (name.clone(), def)
        })
        .collect();
    defs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(defs)
}

/// The definition of the map pinned at `path`; `None` when nothing is pinned there.
fn pinned(name: &str, path: &Path) -> Result<Option<Definition>, DatapathError> {
    let unreadable = |e| DatapathError::PinUnreadable {
        name: name.into(),
        path: path.into(),
        source: Box::new(e),
    };
    let absent = || fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
    match MapData::from_pin(path) {
        Ok(map) => map
            .info()
            .map(|info| Some(Definition::of_pin(&info)))
            .map_err(unreadable),
        Err(_) if absent() => Ok(None),
        Err(e) => Err(unreadable(e)),
    }
}

/// Compare every map `object` pins with what is pinned under `pin_dir` by that name.
/// A map whose only difference is a size in `max_entries` is unpinned (its entries are
/// lost, which is logged) so the loader creates it afresh; any other difference is an
/// error that says what differs and what to do.
pub(super) fn check(
    pin_dir: &Path,
    object: &[u8],
    max_entries: &[(&str, u32)],
) -> Result<(), DatapathError> {
    for (name, expected) in definitions(object, max_entries)? {
        let path = pin_dir.join(&name);
        let Some(pinned) = pinned(&name, &path)? else {
            continue;
        };
        let resizable = max_entries.iter().any(|(m, _)| *m == name);
        match verdict(&expected, &pinned, resizable) {
            Verdict::Reuse => {}
            Verdict::Resize { pinned, expected } => {
                warn!(
                    map = %name,
                    old = pinned,
                    new = expected,
                    "resizing: the map's entries are dropped"
                );
                fs::remove_file(&path).map_err(|source| DatapathError::Unpin {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?;
            }
            Verdict::Refuse(mismatches) => {
                return Err(DatapathError::PinnedMap {
                    name,
                    path,
                    mismatches,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use common::{Counter, CtKey, CtValue, PublishedKey, names};

    use super::*;
    use crate::datapath::OBJECT;

    fn hash(key_size: u32, value_size: u32, max_entries: u32) -> Definition {
        Definition {
            map_type: Some(MapType::Hash),
            key_size,
            value_size,
            max_entries,
            flags: 0,
        }
    }

    #[test]
    fn the_objects_pinned_maps_are_read_with_their_overrides() {
        let defs = definitions(OBJECT, &[(names::CT, 1024)]).expect("the object parses");
        let def = |name: &str| {
            defs.iter().find(|(n, _)| n == name).map_or_else(
                || panic!("map `{name}` should be pinned by the object"),
                |(_, d)| *d,
            )
        };
        let size = |n: usize| u32::try_from(n).expect("a small type");
        let ct = def(names::CT);
        assert_eq!(
            (ct.map_type, ct.key_size, ct.value_size, ct.max_entries),
            (
                Some(MapType::LruHash),
                size(size_of::<CtKey>()),
                size(size_of::<CtValue>()),
                1024
            ),
            "ct: LRU hash of CtKey → CtValue, sized by the override"
        );
        let published = def(names::PUBLISHED);
        assert_eq!(published.key_size, size(size_of::<PublishedKey>()));
        let stats = def(names::STATS);
        assert_eq!(
            (stats.map_type, stats.value_size),
            (Some(MapType::PerCpuArray), size(size_of::<Counter>()))
        );
    }

    #[test]
    fn a_pin_is_reused_resized_or_refused() {
        let want = hash(8, 16, 1024);
        assert_eq!(verdict(&want, &want, false), Verdict::Reuse);
        assert_eq!(
            verdict(&want, &hash(8, 16, 64), true),
            Verdict::Resize {
                pinned: 64,
                expected: 1024
            },
            "a size set by a flag is resized"
        );
        assert_eq!(
            verdict(&want, &hash(8, 16, 64), false),
            Verdict::Refuse(vec![Mismatch::MaxEntries {
                pinned: 64,
                expected: 1024
            }]),
            "a size no flag sets is refused"
        );
        assert_eq!(
            verdict(&want, &hash(8, 8, 64), true),
            Verdict::Refuse(vec![
                Mismatch::ValueSize {
                    pinned: 8,
                    expected: 16
                },
                Mismatch::MaxEntries {
                    pinned: 64,
                    expected: 1024
                }
            ]),
            "a layout difference is refused even with a resize"
        );
        let lru = Definition {
            map_type: Some(MapType::LruHash),
            flags: 1,
            ..want
        };
        assert_eq!(
            want.mismatches(&lru),
            vec![
                Mismatch::Type {
                    pinned: Some(MapType::LruHash),
                    expected: Some(MapType::Hash)
                },
                Mismatch::Flags {
                    pinned: 1,
                    expected: 0
                }
            ]
        );
    }

    #[test]
    fn the_refusal_says_what_differs_and_what_to_do() {
        let err = DatapathError::PinnedMap {
            name: "ct_v2".into(),
            path: "/sys/fs/bpf/bpfnet/ct_v2".into(),
            mismatches: vec![
                Mismatch::Type {
                    pinned: Some(MapType::Hash),
                    expected: Some(MapType::LruHash),
                },
                Mismatch::ValueSize {
                    pinned: 8,
                    expected: 48,
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "map `ct_v2` pinned at `/sys/fs/bpf/bpfnet/ct_v2` differs from this bpfnet's: \
             type Hash (expected LruHash), value size 8 (expected 48); remove \
             `/sys/fs/bpf/bpfnet/ct_v2` to start that map afresh (its state is lost), or use \
             another --pin-dir"
        );
    }
}
