//! A value a run replaces a bounded number of times (the plan, as dynamic matrices are
//! expanded): reads see the newest version, and every reference handed out stays valid for the
//! run (a step task may hold an older version; what it knows is the same in the later ones).

use std::ops::Deref;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A value that a run replaces a bounded number of times: reads see the newest; what they
/// borrowed stays valid.
pub(crate) struct Versions<T> {
    slots: Vec<OnceLock<T>>,
    current: AtomicUsize,
    writer: Mutex<()>,
}

impl<T> Versions<T> {
    /// `first`, and room for `more` later versions.
    pub(crate) fn new(first: T, more: usize) -> Versions<T> {
        let slots: Vec<OnceLock<T>> = (0..=more).map(|_| OnceLock::new()).collect();
        let _ = slots[0].set(first);
        Versions {
            slots,
            current: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    /// Which version reads see (from 0).
    pub(crate) fn version(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// Makes the next version from the newest, one writer at a time; `Ok(false)` when there
    /// is no room left.
    pub(crate) fn update<E>(&self, next: impl FnOnce(&T) -> Result<T, E>) -> Result<bool, E> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let at = self.version();
        let Some(slot) = self.slots.get(at + 1) else {
            return Ok(false);
        };
        let value = next(self)?;
        let _ = slot.set(value);
        self.current.store(at + 1, Ordering::Release);
        Ok(true)
    }
}

impl<T> Deref for Versions<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.slots[self.version()]
            .get()
            .expect("a version is set before it is current")
    }
}

#[cfg(test)]
mod tests {
    use super::Versions;

    #[test]
    fn a_new_version_is_read_and_old_references_stay_valid_until_there_is_no_room() {
        let versions = Versions::new(vec![1], 1);
        let old: &Vec<i32> = &versions;
        assert_eq!(
            versions.update(|v| Ok::<_, ()>([v.as_slice(), &[2]].concat())),
            Ok(true)
        );
        assert_eq!(*versions, [1, 2]);
        assert_eq!(versions.version(), 1);
        assert_eq!(*old, [1], "what was borrowed before is still there");
        assert_eq!(versions.update(|_| Ok::<_, ()>(vec![3])), Ok(false));
        assert_eq!(versions.update(|_| Err::<Vec<i32>, _>("no")), Ok(false));
        assert_eq!(*versions, [1, 2]);
    }
}
