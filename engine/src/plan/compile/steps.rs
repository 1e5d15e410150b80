//! Concrete steps: each declared step's body (`prompt` with an agent chain, or `run`), with
//! `[defaults]` applied (attempts, timeout, gate, inputs, cache, worktree), once per child.

use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use super::declare::Decl;
use super::needs::Need;
use super::templates::template_ref;
use super::{Compiler, DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT};
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::mission::model::Strategy;
use crate::plan::{Action, AgentSpec, PlanStep, duration_text};

impl<'m> Compiler<'m> {
    pub(super) fn concrete_steps(
        &mut self,
        decls: &[Decl<'m>],
        needs: &[Vec<Need>],
        agents: &IndexMap<String, AgentSpec>,
    ) -> Vec<PlanStep> {
        let defaults = self.file.defaults.clone().unwrap_or_default();
        let default_attempts = self.positive(defaults.attempts.as_ref(), "attempts");
        let default_timeout = self.duration(defaults.timeout.as_ref());
        let default_chain = match &defaults.agent {
            Some(chain) => self.chain(chain, agents),
            None => None,
        };
        let mut steps = Vec::new();
        for (d, resolved) in decls.iter().zip(needs) {
            let step = d.step.get_ref();
            let action = match (&step.prompt, &step.run) {
                (Some(prompt), None) => {
                    let chain = match &step.agent {
                        Some(chain) => self.chain(chain, agents),
                        None => match &default_chain {
                            Some(chain) => Some(chain.clone()),
                            None => {
                                self.push(
                                    MissionError::new(
                                        ErrorKind::UnknownAgent,
                                        format!("step `{}` has a prompt but no agent", d.id),
                                    )
                                    .label(d.key.clone(), "which agent runs this prompt?")
                                    .help("add `agent = \"claude\"` (or another profile) to the step, or to `[defaults]`"),
                                );
                                None
                            }
                        },
                    };
                    chain.map(|agents| Action::Agent {
                        prompt: template_ref(prompt),
                        agents,
                        strategy: step
                            .strategy
                            .or(defaults.strategy)
                            .unwrap_or(Strategy::Fallback),
                        retry_prompt: step
                            .retry_prompt
                            .as_ref()
                            .or(defaults.retry_prompt.as_ref())
                            .map(template_ref),
                    })
                }
                (None, Some(run)) => {
                    if let Some(chain) = &step.agent {
                        let span = chain.0.first().map_or(d.key.clone(), |s| s.span());
                        self.push(
                            MissionError::new(
                                ErrorKind::StepBody,
                                format!("step `{}` runs a command, so it has no agent", d.id),
                            )
                            .label(span, "not used by a `run` step")
                            .help("remove `agent`, or replace `run` with a `prompt` for the agent"),
                        );
                    }
                    Some(Action::Command {
                        run: template_ref(run),
                    })
                }
                (Some(prompt), Some(run)) => {
                    self.push(
                        MissionError::new(
                            ErrorKind::StepBody,
                            format!("step `{}` has both `prompt` and `run`", d.id),
                        )
                        .label(prompt.span(), "an agent step's prompt")
                        .label(run.span(), "a command step's command")
                        .help("keep one: `prompt` asks an agent, `run` runs a shell command; split the step in two to do both"),
                    );
                    None
                }
                (None, None) => {
                    self.push(
                        MissionError::new(
                            ErrorKind::StepBody,
                            format!("step `{}` has neither `prompt` nor `run`", d.id),
                        )
                        .label(d.key.clone(), "this step does nothing")
                        .help("add `prompt = \"...\"` for an agent step, or `run = \"...\"` for a command step"),
                    );
                    None
                }
            };
            let attempts = match &step.attempts {
                Some(a) => self.positive(Some(a), "attempts"),
                None => default_attempts,
            }
            .unwrap_or(DEFAULT_ATTEMPTS);
            let timeout = match &step.timeout {
                Some(t) => self.duration(Some(t)),
                None => default_timeout,
            }
            .unwrap_or(DEFAULT_TIMEOUT);
            let gate = step
                .gate
                .as_ref()
                .or(defaults.gate.as_ref())
                .filter(|g| !g.get_ref().trim().is_empty())
                .map(template_ref);
            let inputs = step.inputs.as_ref().or(defaults.inputs.as_ref());
            for glob in inputs.into_iter().flatten() {
                self.check_glob(
                    glob,
                    "inputs",
                    "write a glob relative to the repository root, e.g. `src/**` or `*.md` (`*` stays within a directory, `**` crosses them)",
                );
            }
            let inputs: Option<Vec<String>> =
                inputs.map(|i| i.iter().map(|s| s.get_ref().clone()).collect());
            let (approve, on_reject) = self.approval(d, step, &defaults);
            let need_ids: Vec<String> = resolved.iter().flat_map(|n| n.ids.clone()).collect();
            // A step read from an upstream step's list may make several children.
            let fans_out = resolved.iter().any(|n| decls[n.decl].dynamic.is_some());
            let merge = self.step_merge(d.id, step.merge.as_ref(), &need_ids, fans_out, agents);
            let Some(action) = action else { continue };
            for child in &d.children {
                steps.push(PlanStep {
                    id: child.id.clone(),
                    declared: d.id.to_owned(),
                    matrix: if d.dynamic.is_some() {
                        IndexMap::new()
                    } else {
                        child.matrix.clone()
                    },
                    action: action.clone(),
                    needs: need_ids.clone(),
                    if_: step.if_.as_ref().map(|e| e.get_ref().clone()),
                    gate: gate.clone(),
                    attempts,
                    timeout,
                    inputs: inputs.clone(),
                    cache: step.cache.or(defaults.cache).unwrap_or(true),
                    fresh_worktree: step.worktree.or(defaults.worktree).or(self.file.worktree)
                        == Some(crate::mission::WorktreeMode::Fresh),
                    approve: approve.clone(),
                    on_reject,
                    dynamic: d.dynamic.clone(),
                    merge: merge.clone(),
                });
            }
        }
        steps
    }

    fn duration(&mut self, value: Option<&Spanned<String>>) -> Option<Duration> {
        let value = value?;
        match crate::mission::duration::check(value.get_ref(), value.span()) {
            None => duration_text::parse(value.get_ref()),
            Some(error) => {
                self.push(error);
                None
            }
        }
    }
}
