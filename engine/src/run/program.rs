//! The program an agent profile runs, found on PATH as a shell would.

use crate::agent;
use crate::mission::Runtime;
use crate::plan::AgentSpec;

pub use crate::process::which;

/// The program a profile runs: its CLI's binary, or a command profile's `program[0]`.
pub fn program_of(profile: &AgentSpec) -> String {
    match profile.runtime {
        Runtime::Command => profile
            .program
            .as_ref()
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_default(),
        runtime => agent::adapter(runtime).binary().to_owned(),
    }
}

pub(crate) fn adapter_of(profile: &AgentSpec) -> Box<dyn agent::Adapter> {
    match profile.runtime {
        Runtime::Command => Box::new(agent::command::CommandAdapter::new(
            profile.program.clone().unwrap_or_default(),
        )),
        runtime => agent::adapter(runtime),
    }
}
