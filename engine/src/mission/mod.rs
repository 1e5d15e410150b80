//! Mission files: the format's types, loading with spans, and diagnostics.

pub mod diagnostics;
pub mod duration;
pub mod load;
pub mod model;
pub mod suggest;

pub use diagnostics::{ErrorKind, MissionError, MissionErrors};
pub use load::{LoadError, Mission};
pub use model::{MissionFile, OnReject, Runtime, Strategy, WorktreeMode};
