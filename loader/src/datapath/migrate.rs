//! Flows kept across an upgrade that changed the CT layout: the `ct_v2` and `ct_new_v1`
//! an older bpfnet pinned are read with their layout, copied into `ct_v3` and
//! `ct_new_v2`, then unpinned. It runs before any program is swapped into a link, while
//! the old programs still keep the old maps current, so established connections live on.
use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError};
use common::{CtKey, CtValue, CtValueV2, names};
use tracing::{info, warn};

use super::Maps;

/// What a migration moved and what it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Migrated {
    pub flows: usize,
    pub errors: Vec<String>,
}

/// Copy every entry of the older CT maps pinned under `pin_dir` into the current ones
/// and remove their pins; nothing to do when there are none.
pub(super) fn ct(pin_dir: &Path, maps: &mut Maps) -> Migrated {
    let mut out = Migrated::default();
    for (old, new) in [
        (names::CT_V2, &mut maps.ct),
        (names::CT_NEW_V1, &mut maps.ct_new),
    ] {
        let path = pin_dir.join(old);
        if !path.exists() {
            continue;
        }
        if let Err(e) = copy(&path, new, &mut out) {
            out.errors.push(format!("{old}: {e}"));
            continue;
        }
        if let Err(e) = super::attach::remove_pin(&path) {
            out.errors.push(format!("unpin {}: {e}", path.display()));
        }
    }
    if out.flows > 0 {
        info!(entries = out.flows, "kept the flows of the older CT layout");
    }
    for e in &out.errors {
        warn!(error = %e, "older CT entries not carried over");
    }
    out
}

/// Unpin the SNAT quota counts of the layout keyed by container and destination: the
/// new counts, keyed by container, are recounted from the flows by the sweeper.
pub(super) fn retired_quota(pin_dir: &Path) {
    for old in [names::SNAT_USE_V1, names::SNAT6_USE_V1] {
        let path = pin_dir.join(old);
        if path.exists()
            && let Err(e) = super::attach::remove_pin(&path)
        {
            warn!(error = %e, pin = %path.display(), "cannot unpin a retired quota map");
        }
    }
}

fn copy(
    path: &Path,
    new: &mut HashMap<MapData, CtKey, CtValue>,
    out: &mut Migrated,
) -> Result<(), MapError> {
    let old: HashMap<MapData, CtKey, CtValueV2> =
        HashMap::try_from(Map::LruHashMap(MapData::from_pin(path)?))?;
    for entry in &old {
        match entry.and_then(|(k, v)| new.insert(k, CtValue::from(v), 0)) {
            Ok(()) => out.flows += 1,
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    Ok(())
}
