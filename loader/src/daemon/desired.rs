//! The desired state and where it is persisted. A request changes it through `update`,
//! which saves the change or, when it cannot be saved, rolls it back; what the world
//! reports (Docker) goes through `follow`, which applies it even when the disk fails.
use std::{ops::Deref, path::PathBuf};

use crate::{
    api::ApiError,
    state::{State, StateError},
};

pub(super) struct Desired {
    state: State,
    dir: PathBuf,
}

impl Desired {
    pub(super) fn load(dir: PathBuf) -> Result<Self, StateError> {
        Ok(Self {
            state: State::load(&dir)?,
            dir,
        })
    }

    /// Apply `change`, then persist it; on any error the state is as before.
    pub(super) fn update<T>(
        &mut self,
        change: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let before = self.state.clone();
        let out = change(&mut self.state).and_then(|out| {
            if self.state != before {
                self.state.save(&self.dir)?;
            }
            Ok(out)
        });
        if out.is_err() {
            self.state = before;
        }
        out
    }

    /// Apply what the world did, whether or not it can be persisted.
    pub(super) fn follow(&mut self, change: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let before = self.state.clone();
        change(&mut self.state);
        if self.state == before {
            return Ok(());
        }
        self.state.save(&self.dir)
    }
}

impl Deref for Desired {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_persists_or_rolls_back() {
        let dir = std::env::temp_dir().join(format!("bpfnet-desired-{}", std::process::id()));
        let _unused: Result<_, _> = std::fs::remove_dir_all(&dir);
        let mut d = Desired::load(dir.clone()).expect("empty state");
        let spec = "8038:172.17.0.4:8038".parse().expect("valid spec");
        d.update(|s| {
            s.published.push(spec);
            Ok(())
        })
        .expect("saved");
        assert_eq!(State::load(&dir).expect("reload").published, vec![spec]);
        // A change that fails leaves nothing behind.
        let err = d.update(|s| {
            s.published.clear();
            Err::<(), _>(ApiError::Invalid(crate::api::Invalid::NoAddress))
        });
        assert!(err.is_err());
        assert_eq!(d.published, vec![spec]);
        // A change that cannot be saved (the directory is a file now) is rolled back.
        std::fs::remove_dir_all(&dir).expect("remove");
        std::fs::write(&dir, b"").expect("a file where the directory was");
        let err = d.update(|s| {
            s.published.clear();
            Ok(())
        });
        assert!(matches!(err, Err(ApiError::Persist { .. })), "{err:?}");
        assert_eq!(d.published, vec![spec], "rolled back");
        std::fs::remove_file(&dir).expect("cleanup");
    }
}
