//! What a report shows, gathered from a run's own record: its journal (every event, the agents'
//! raw output included), the prompt archive, the mission it recorded (`run.json`, for the graph)
//! and its refs (each step's diff against its base). Nothing is run again, so a failed,
//! cancelled, killed or resumed run reports as well as a passed one.

use std::path::{Path, PathBuf};

use super::diff::{Diff, diff};
use crate::event::{Body, FailReason};
use crate::git::{GitError, Repo};
use crate::history::{self, Approval, HistoryError, RunInfo, StepInfo};
use crate::journal;
use crate::plan::{Action, Flavor, Plan};

/// The most of one raw agent event a report shows.
pub const RAW_LIMIT: usize = 16 * 1024;
/// The most lines, and bytes, of a command's output a report shows (its tail).
pub const TAIL_LINES: usize = 20;
pub const TAIL_BYTES: usize = 4 * 1024;

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReportError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] GitError),
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A whole run, ready to render.
#[derive(Debug, Clone)]
pub struct Report {
    pub run: RunInfo,
    /// Every step of the plan (and any the journal names that the plan does not), in plan order.
    pub steps: Vec<StepReport>,
    /// `(need, step)` indices into `steps`: one per need.
    pub edges: Vec<(usize, usize)>,
    /// Why the graph has no edges, when the run's mission could not be read again.
    pub graph_note: Option<String>,
    /// The mission gate's runs (on the merged result), in order.
    pub final_gates: Vec<Gate>,
    /// Warnings the run gave: (step, message).
    pub warnings: Vec<(Option<String>, String)>,
    /// How many times the run started (more than 1: it was resumed).
    pub segments: usize,
    /// The mission's description.
    pub description: Option<String>,
}

/// One step.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub id: String,
    /// The `[steps.<id>]` table it comes from (a matrix child's parent).
    pub declared: String,
    /// What runs it: `command`, `claude`, `claude → codex`, `claude | codex (race)`.
    pub runner: String,
    /// A command step's command (rendered where the plan can render it before the run).
    pub command: Option<String>,
    pub needs: Vec<String>,
    /// `None` when the journal never mentions the step (the run ended before it was ready).
    pub info: StepInfo,
    pub attempts: Vec<Attempt>,
    /// Changes of agent in a chain: (from, to, why).
    pub switches: Vec<(String, String, FailReason)>,
    /// The run that made a cached result.
    pub cached_from: Option<String>,
    /// Its change against its base: the result, or what its last attempt committed.
    pub diff: Option<Diff>,
}

impl StepReport {
    /// What the step's outcome is called: its outcome, or `running`, `not finished`, `not run`.
    pub fn outcome_name(&self, run: &RunInfo) -> &'static str {
        if self
            .info
            .approval
            .as_ref()
            .is_some_and(Approval::is_waiting)
        {
            return "waiting";
        }
        match self.info.outcome {
            Some(o) if self.info.kept && o.ok() => "kept",
            Some(o) => o.name(),
            None if run.live => "running",
            None if !self.attempts.is_empty() => "unfinished",
            None => "not run",
        }
    }

    /// [`StepReport::outcome_name`] as a CSS class (`not-run`).
    pub fn outcome_class(&self, run: &RunInfo) -> String {
        self.outcome_name(run).replace(' ', "-")
    }

    /// Where its result stands with a person (a step with `approve`), in words.
    pub fn approval(&self) -> Option<String> {
        self.info.approval.as_ref().map(super::words::approval_text)
    }

    /// Why it was skipped or what failed, in words.
    pub fn why(&self) -> Option<String> {
        if let Some(reason) = &self.info.skipped {
            return Some(super::words::skip_reason(reason));
        }
        self.info.error.as_ref().map(|e| e.message.clone())
    }
}

/// One attempt of one agent (or of the command).
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// From 1, per agent.
    pub number: u32,
    /// Which start of the run it belongs to (from 1; more than one for a resumed run).
    pub segment: usize,
    pub agent: Option<String>,
    pub runtime: Option<String>,
    pub worktree: String,
    /// A merge agent's attempt at a conflict between the step's needs.
    pub merge: bool,
    /// The prompt sent, verbatim from the archive (secrets masked).
    pub prompt: Option<String>,
    /// Why there is no prompt to show for an agent attempt.
    pub prompt_note: Option<String>,
    /// The agent's messages and tool calls, in order.
    pub outputs: Vec<AgentLine>,
    /// What the attempt committed: (commit, files changed).
    pub commit: Option<(String, usize)>,
    pub gates: Vec<Gate>,
    /// Why it failed.
    pub failure: Option<(FailReason, String)>,
    /// A command attempt's stdout and stderr, their last lines (from its logs).
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
}

/// One line of an agent's stream, as the journal keeps it.
#[derive(Debug, Clone)]
pub struct AgentLine {
    /// `message`, `tool`, `usage`, `error` or `other`.
    pub kind: String,
    pub summary: String,
    /// The CLI's JSON event, pretty-printed (cut at [`RAW_LIMIT`]).
    pub raw: String,
}

/// A gate's run.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pub command: String,
    /// `None` while it ran (or when the run was killed during it).
    pub passed: Option<bool>,
    pub exit_code: Option<i32>,
    pub output_tail: String,
}

impl Report {
    /// Gathers the report of run `id` (a whole id: see [`history::resolve`]). `env` gives the
    /// environment's variables, so that secrets the mission names are masked in the prompts
    /// shown (the archive keeps them verbatim).
    pub fn load(
        repo: &Repo,
        id: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Report, ReportError> {
        let run = history::load(&repo.git_dir, id)?;
        let dir = journal::runs_dir(&repo.git_dir).join(id);
        let path = dir.join("events.jsonl");
        let events = journal::read(&path).map_err(|source| ReportError::Io { path, source })?;
        let (plan, graph_note) = match recorded_plan(&dir) {
            Ok(plan) => (Some(expanded(repo, &run, plan, &events)), None),
            Err(why) => (None, Some(why)),
        };
        let secrets = plan
            .as_ref()
            .map(|p| crate::secrets::values(p, &env))
            .unwrap_or_default();

        let mut steps: Vec<StepReport> = Vec::new();
        if let Some(plan) = &plan {
            // In the order steps can run (a dynamic step's children come last in the plan).
            for i in crate::plan::dag::topological_order(&plan.steps) {
                let step = &plan.steps[i];
                // An expanded dynamic step is shown as its children.
                if crate::plan::expand::is_expanded(plan, i) {
                    continue;
                }
                steps.push(StepReport {
                    id: step.id.clone(),
                    declared: step.declared.clone(),
                    runner: crate::plan::graph::runner(step),
                    command: match &step.action {
                        Action::Command { run } => Some(
                            plan.preview(Some(step), run, Flavor::Shell)
                                .unwrap_or_else(|| run.source.clone()),
                        ),
                        Action::Agent { .. } => None,
                    },
                    needs: step.needs.clone(),
                    info: run.steps.get(&step.id).cloned().unwrap_or_default(),
                    attempts: Vec::new(),
                    switches: Vec::new(),
                    cached_from: None,
                    diff: None,
                });
            }
        }
        for (sid, info) in &run.steps {
            if !steps.iter().any(|s| &s.id == sid) {
                steps.push(StepReport {
                    id: sid.clone(),
                    declared: sid.clone(),
                    runner: String::new(),
                    command: None,
                    needs: Vec::new(),
                    info: info.clone(),
                    attempts: Vec::new(),
                    switches: Vec::new(),
                    cached_from: None,
                    diff: None,
                });
            }
        }
        let index = |steps: &[StepReport], sid: &str| steps.iter().position(|s| s.id == sid);

        let mut segments = 0;
        let mut final_gates: Vec<Gate> = Vec::new();
        let mut warnings = Vec::new();
        // Gates and commits say their attempt's number but not its agent: they go to the
        // attempt of this segment with that number that is waiting for one (the only one,
        // except in a race, where two agents' attempts can be at the same number at once).
        for event in events {
            let at = event.step().and_then(|s| index(&steps, s));
            match event.body {
                Body::RunStarted { .. } => segments += 1,
                Body::StepStarted {
                    attempt,
                    agent,
                    runtime,
                    worktree,
                    merge,
                    ..
                } => {
                    if let Some(i) = at {
                        steps[i].attempts.push(Attempt {
                            number: attempt,
                            segment: segments,
                            agent,
                            runtime,
                            worktree,
                            merge,
                            ..Attempt::default()
                        });
                    }
                }
                Body::AgentOutput {
                    attempt,
                    agent,
                    kind,
                    summary,
                    raw,
                    ..
                } => {
                    if let Some(a) = at.and_then(|i| {
                        find(&mut steps[i].attempts, segments, attempt, |a| {
                            a.agent.as_deref() == Some(agent.as_str())
                        })
                    }) {
                        let mut raw = serde_json::to_string_pretty(&raw).unwrap_or_default();
                        if raw.len() > RAW_LIMIT {
                            let cut = floor_char(&raw, RAW_LIMIT);
                            raw.truncate(cut);
                            raw.push_str("\n… (cut: the whole event is in the run's journal)");
                        }
                        a.outputs.push(AgentLine { kind, summary, raw });
                    }
                }
                Body::StepCommitted {
                    attempt,
                    commit,
                    files,
                    ..
                } => {
                    if let Some(a) = at.and_then(|i| {
                        find(&mut steps[i].attempts, segments, attempt, |a| {
                            a.commit.is_none()
                        })
                    }) {
                        a.commit = Some((commit, files));
                    }
                }
                Body::GateStarted { step, command, .. } if step.is_none() => {
                    final_gates.push(Gate {
                        command,
                        ..Gate::default()
                    });
                }
                Body::GateStarted {
                    attempt, command, ..
                } => {
                    if let Some(a) = at.and_then(|i| {
                        find(&mut steps[i].attempts, segments, attempt, |a| {
                            a.gates.is_empty() && a.failure.is_none()
                        })
                    }) {
                        a.gates.push(Gate {
                            command,
                            ..Gate::default()
                        });
                    }
                }
                Body::GateFinished {
                    step,
                    attempt,
                    exit_code,
                    passed,
                    output_tail,
                } => {
                    let gate = if step.is_none() {
                        final_gates.last_mut()
                    } else {
                        at.and_then(|i| {
                            find(&mut steps[i].attempts, segments, attempt, |a| {
                                a.gates.last().is_some_and(|g| g.passed.is_none())
                            })
                        })
                        .and_then(|a| a.gates.last_mut())
                    };
                    if let Some(gate) = gate {
                        gate.passed = Some(passed);
                        gate.exit_code = exit_code;
                        gate.output_tail = output_tail;
                    }
                }
                Body::AttemptFailed {
                    attempt,
                    agent,
                    reason,
                    message,
                    ..
                } => {
                    if let Some(a) = at.and_then(|i| {
                        find(&mut steps[i].attempts, segments, attempt, |a| {
                            a.failure.is_none()
                                && (agent.is_none() || a.agent.as_deref() == agent.as_deref())
                        })
                    }) {
                        a.failure = Some((reason, message));
                    }
                }
                Body::AgentSwitched {
                    from, to, reason, ..
                } => {
                    if let Some(i) = at {
                        steps[i].switches.push((from, to, reason));
                    }
                }
                Body::StepFinished { cached_from, .. } => {
                    if let Some(i) = at {
                        steps[i].cached_from = cached_from;
                    }
                }
                Body::Warning { step, message } => warnings.push((step, message)),
                _ => {}
            }
        }

        // Prompts: `<step>.<attempt>.<agent>.txt`. A resume that ran an attempt again wrote
        // over the earlier one's file: only the newest attempt of that name has its prompt.
        // A command attempt's output is in its logs, `run.<attempt>.out` and `.err`.
        let prompts = dir.join("prompts");
        for step in &mut steps {
            let count = step.attempts.len();
            for k in 0..count {
                let agent = step.attempts[k].agent.clone();
                let number = step.attempts[k].number;
                let merge = step.attempts[k].merge;
                let newer = step.attempts[k + 1..]
                    .iter()
                    .any(|b| b.number == number && b.agent == agent && b.merge == merge);
                let Some(agent) = agent else {
                    if !newer {
                        let logs = dir.join("logs").join(&step.id);
                        let a = &mut step.attempts[k];
                        a.stdout_tail = log_tail(&logs.join(format!("run.{number}.out")));
                        a.stderr_tail = log_tail(&logs.join(format!("run.{number}.err")));
                    }
                    continue;
                };
                let a = &mut step.attempts[k];
                if newer {
                    a.prompt_note = Some(
                        "the resumed run sent this attempt again: the archive keeps that prompt"
                            .to_owned(),
                    );
                    continue;
                }
                // A merge agent's prompt is `<step>.<attempt>.merge-<agent>.txt`.
                let sender = if merge {
                    format!("merge-{agent}")
                } else {
                    agent
                };
                let file = prompts.join(format!("{}.{number}.{sender}.txt", step.id));
                match fs_err::read(&file) {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        a.prompt = Some(crate::secrets::mask(&text, &secrets));
                    }
                    Err(_) => {
                        a.prompt_note =
                            Some(format!("no prompt in the archive ({})", file.display()))
                    }
                }
            }
        }

        // Diffs: the result against the step's base; for a step without one, what its last
        // attempt committed.
        for step in &mut steps {
            let commit = step.info.commit.clone().or_else(|| {
                step.attempts
                    .iter()
                    .rev()
                    .find_map(|a| a.commit.as_ref().map(|(c, _)| c.clone()))
            });
            if let (Some(base), Some(commit)) = (step.info.base.clone(), commit) {
                step.diff = diff(repo, &base, &commit).ok();
            }
        }

        let mut edges = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            for need in &step.needs {
                if let Some(j) = index(&steps, need) {
                    edges.push((j, i));
                }
            }
        }
        Ok(Report {
            run,
            steps,
            edges,
            graph_note,
            final_gates,
            warnings,
            segments,
            description: plan.and_then(|p| p.description),
        })
    }

    /// The command that applies the run's result, when it has one.
    pub fn apply_command(&self) -> Option<String> {
        self.run
            .result_branch
            .as_ref()
            .map(|_| format!("medley apply {}", self.run.id))
    }

    /// Steps with this outcome name (see [`StepReport::outcome_name`]).
    pub fn count(&self, outcome: &str) -> usize {
        self.steps
            .iter()
            .filter(|s| s.outcome_name(&self.run) == outcome)
            .count()
    }
}

/// The newest attempt of `segment` numbered `number` that `wanted` accepts, the earliest of
/// them first when several do (two agents of a race).
fn find(
    attempts: &mut [Attempt],
    segment: usize,
    number: u32,
    wanted: impl Fn(&Attempt) -> bool,
) -> Option<&mut Attempt> {
    attempts
        .iter_mut()
        .filter(|a| a.segment == segment && a.number == number)
        .find(|a| wanted(a))
}

/// The last lines of a log file ([`TAIL_LINES`], at most [`TAIL_BYTES`]); `None` when it is
/// missing or empty.
fn log_tail(path: &Path) -> Option<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = fs_err::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL_BYTES as u64);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(TAIL_LINES);
    let mut tail = lines[skip..].join("\n");
    if from > 0 || skip > 0 {
        tail.insert_str(0, "… ");
    }
    (!tail.trim().is_empty()).then_some(tail)
}

/// The plan grown by the dynamic matrices the run expanded, from the files their upstream
/// steps' results hold.
fn expanded(repo: &Repo, run: &RunInfo, plan: Plan, events: &[crate::event::Event]) -> Plan {
    let expansions: Vec<(String, Vec<String>)> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::StepsExpanded { step, children, .. } => Some((step.clone(), children.clone())),
            _ => None,
        })
        .collect();
    if expansions.is_empty() {
        return plan;
    }
    crate::plan::expand::replay(plan, &expansions, |from, file| {
        let commit = run.steps.get(from)?.commit.as_deref()?;
        repo.read_file(git2::Oid::from_str(commit).ok()?, file).ok()
    })
}

/// The plan the run ran: its recorded mission, compiled again with the options it had.
fn recorded_plan(dir: &Path) -> Result<Plan, String> {
    let path = dir.join("run.json");
    let text = fs_err::read_to_string(&path)
        .map_err(|_| "the run did not record its mission, so its needs are not shown".to_owned())?;
    let record: crate::run::RunRecord = serde_json::from_str(&text)
        .map_err(|e| format!("cannot read the run's record of its mission: {e}"))?;
    let mission =
        crate::mission::Mission::parse(Path::new(&record.mission_path), record.mission_source)
            .map_err(|_| "the run's mission no longer parses, so its needs are not shown")?;
    let shape = crate::plan::PlanOptions {
        sets: record.sets.clone(),
        only: record.only.clone(),
        max_parallel: record.max_parallel,
    };
    let plan = crate::plan::compile(&mission, &shape)
        .map_err(|_| "the run's mission no longer compiles, so its needs are not shown")?;
    Ok(plan)
}

/// The largest char boundary at or below `at`.
pub fn floor_char(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
