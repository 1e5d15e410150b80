//! Agent profiles: the built-in one per runtime, the mission's `[agents.<name>]` (runtime,
//! `program`, `price`), and a step's `agent` chain resolved against them.

use indexmap::IndexMap;

use super::{Compiler, code_list};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::{AgentChain, Runtime};
use crate::mission::suggest::{closest, did_you_mean};
use crate::plan::AgentSpec;
use crate::plan::ids::to_id;

impl<'m> Compiler<'m> {
    pub(super) fn agents(&mut self) -> IndexMap<String, AgentSpec> {
        let mut agents: IndexMap<String, AgentSpec> = Runtime::ALL
            .into_iter()
            .filter(|r| *r != Runtime::Command)
            .map(|r| {
                let spec = AgentSpec {
                    name: r.name().to_owned(),
                    runtime: r,
                    model: None,
                    args: Vec::new(),
                    env: IndexMap::new(),
                    price: None,
                    program: None,
                };
                (r.name().to_owned(), spec)
            })
            .collect();
        for (name, profile) in &self.file.agents {
            let key = self.declared_id(
                &self.mission.agent_keys,
                name,
                profile.span(),
                "agent profile name",
            );
            let p = profile.get_ref();
            let runtime = match &p.runtime {
                Some(r) => match Runtime::from_name(r.get_ref()) {
                    Some(runtime) => Some(runtime),
                    None => {
                        let names = Runtime::ALL.map(Runtime::name);
                        self.push(
                            MissionError::new(
                                ErrorKind::UnknownRuntime,
                                format!("unknown runtime `{}`", r.get_ref()),
                            )
                            .label(r.span(), "not a runtime medley knows")
                            .help(did_you_mean(
                                r.get_ref(),
                                names,
                                "the runtimes are",
                            )),
                        );
                        None
                    }
                },
                None => match Runtime::from_name(name) {
                    Some(runtime) => Some(runtime),
                    None => {
                        self.push(
                            MissionError::new(
                                ErrorKind::UnknownRuntime,
                                format!("agent profile `{name}` has no `runtime`"),
                            )
                            .label(key.clone(), "which CLI does this profile run?")
                            .help(format!(
                                "add `runtime = \"...\"` with one of: {}",
                                code_list(Runtime::ALL.map(Runtime::name))
                            )),
                        );
                        None
                    }
                },
            };
            match (&p.program, runtime) {
                (None, Some(Runtime::Command)) => self.push(
                    MissionError::new(
                        ErrorKind::Agent,
                        format!("agent profile `{name}` runs a command but names no `program`"),
                    )
                    .label(key.clone(), "this profile has `runtime = \"command\"`")
                    .help(
                        "add `program = [\"my-agent\", \"--flag\"]`: the prompt goes to its stdin",
                    ),
                ),
                (Some(program), Some(Runtime::Command)) if program.get_ref().is_empty() => self
                    .push(
                    MissionError::new(ErrorKind::Agent, "`program` is empty")
                        .label(program.span(), "no program to run")
                        .help(
                            "name the program and its arguments, e.g. `[\"my-agent\", \"--json\"]`",
                        ),
                ),
                (Some(program), Some(r)) if r != Runtime::Command => self.push(
                    MissionError::new(
                        ErrorKind::Agent,
                        format!(
                            "`program` is only for `runtime = \"command\"`, not `{}`",
                            r.name()
                        ),
                    )
                    .label(program.span(), "not used by this runtime")
                    .help(format!(
                        "remove `program`; to pass flags to {}, use `args`",
                        r.name()
                    )),
                ),
                _ => {}
            }
            if let Some(price) = &p.price {
                for (key_name, v) in [
                    ("input_per_mtok", price.input_per_mtok),
                    ("output_per_mtok", price.output_per_mtok),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        self.push(
                            MissionError::new(
                                ErrorKind::Value,
                                format!("`{key_name}` must not be negative"),
                            )
                            .label(profile.span(), "in this profile's `price`")
                            .help("write US dollars per million tokens, e.g. `1.25`"),
                        );
                    }
                }
            }
            if let Some(runtime) = runtime {
                agents.insert(
                    name.clone(),
                    AgentSpec {
                        name: name.clone(),
                        runtime,
                        model: p.model.clone(),
                        args: p.args.clone(),
                        env: p.env.clone(),
                        price: p.price,
                        program: p.program.as_ref().map(|p| p.get_ref().clone()),
                    },
                );
            }
        }
        agents
    }

    pub(super) fn chain(
        &mut self,
        chain: &AgentChain,
        agents: &IndexMap<String, AgentSpec>,
    ) -> Option<Vec<String>> {
        let mut names = Vec::new();
        if chain.0.is_empty() {
            self.push(
                MissionError::new(ErrorKind::UnknownAgent, "`agent` lists no agent")
                    .label(0..0, "empty agent list")
                    .help(
                        "name at least one agent profile, e.g. `agent = [\"claude\", \"codex\"]`",
                    ),
            );
            return None;
        }
        for name in &chain.0 {
            let n = name.get_ref();
            if agents.contains_key(n) {
                names.push(n.clone());
            } else if self.file.agents.contains_key(n) {
                // The profile itself is invalid; its own error says why.
                names.push(n.clone());
            } else {
                let help = match closest(n, agents.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "define it as `[agents.{}]` with a `runtime`, or use one of: {}",
                        to_id(n),
                        code_list(agents.keys().map(String::as_str))
                    ),
                };
                self.push(
                    MissionError::new(
                        ErrorKind::UnknownAgent,
                        format!("unknown agent profile `{n}`"),
                    )
                    .label(name.span(), "no profile or runtime has this name")
                    .help(help),
                );
            }
        }
        (names.len() == chain.0.len()).then_some(names)
    }
}
