//! The program an agent profile runs, found on PATH as a shell would.

use std::path::PathBuf;

use crate::agent;
use crate::mission::Runtime;
use crate::plan::AgentSpec;

/// Finds a program on PATH, as a shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

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
