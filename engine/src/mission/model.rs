//! The mission file's types (format v1): what serde reads and schemars describes.
//!
//! Fields the later checks point at keep their source span (`toml::Spanned`). The types are
//! plain: no `untagged`, no `flatten`, so serde's messages stay precise.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A mission file: a named DAG of steps, each run by an agent or a command and gated by a test.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "medley mission (format v1)")]
pub struct MissionFile {
    /// The mission's id (default: the file stem): `[a-z0-9][a-z0-9_-]*`.
    #[schemars(with = "Option<String>", regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))]
    pub name: Option<Spanned<String>>,
    /// What the mission does, in a sentence.
    pub description: Option<String>,
    /// Steps running at once (default 4).
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_parallel: Option<Spanned<i64>>,
    /// The most steps the plan may have, matrix children counted (default 1000). Checked
    /// before matrices are expanded.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_steps: Option<Spanned<i64>>,
    /// A final gate, run on the merged result of every step (a shell command template).
    #[schemars(with = "Option<String>")]
    pub gate: Option<Spanned<String>>,
    /// A shell command template run first in every worktree a step gets (e.g. `npm ci`).
    #[schemars(with = "Option<String>")]
    pub setup: Option<Spanned<String>>,
    /// Globs of the files `setup` depends on (e.g. `package-lock.json`): then it runs in a
    /// pooled worktree only when the worktree is new or they changed since setup last passed
    /// there.
    #[schemars(with = "Option<Vec<String>>")]
    pub setup_files: Option<Vec<Spanned<String>>>,
    /// `pool` (default): steps get warm worktrees from the repository's pool; `fresh`: a
    /// brand-new worktree each.
    pub worktree: Option<WorktreeMode>,
    /// A message for the person who approves the mission's final result: the merged result
    /// (after the final gate) waits for `medley approve @result` before its branch is made.
    #[schemars(with = "Option<String>")]
    pub approve: Option<Spanned<String>>,
    /// A spending cap for the whole run, in US dollars.
    #[schemars(with = "Option<f64>", range(min = 0.0))]
    pub budget_usd: Option<Spanned<f64>>,
    /// Environment variables whose values are secret: masked as `***` in the journal, the
    /// logs and every output (values of 6 characters or more; the prompt archive is verbatim).
    #[schemars(with = "Option<Vec<String>>")]
    pub secrets: Option<Vec<Spanned<String>>>,
    /// Template variables, overridable with `--set name=value`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, VarValue>")]
    pub vars: IndexMap<String, Spanned<serde_json::Value>>,
    /// Values every step gets unless it sets its own.
    pub defaults: Option<Defaults>,
    /// Agent profiles: a runtime plus its settings. Every runtime name is also a built-in profile.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, AgentProfile>")]
    pub agents: IndexMap<String, Spanned<AgentProfile>>,
    /// The steps, by id (`[a-z0-9][a-z0-9_-]*`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Step>")]
    pub steps: IndexMap<String, Spanned<Step>>,
    /// How the final merge of the leaves' results resolves a conflict: an agent edits out the
    /// conflict markers (without it, a conflict fails the run).
    #[schemars(with = "Option<Merge>")]
    pub merge: Option<Spanned<Merge>>,
}

/// A merge agent: on a conflict between the results being merged, medley checks the merge out
/// with conflict markers and asks this agent (or chain) to resolve it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    /// The agent profile, or a fallback chain of profiles tried in order.
    #[schemars(with = "AgentChainSchema")]
    pub agent: AgentChain,
    /// What the agent is told before medley's account of the conflict (a template; default:
    /// a prompt asking it to resolve the conflict keeping both sides' intent).
    #[schemars(with = "Option<String>")]
    pub prompt: Option<Spanned<String>>,
    /// A shell command template that must exit 0 for the resolution to be accepted.
    #[schemars(with = "Option<String>")]
    pub gate: Option<Spanned<String>>,
}

/// A variable's value: a string, number, boolean or list of those.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum VarValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    List(Vec<Scalar>),
}

/// A string, number or boolean.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

/// Step keys that take a default from `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The agent profile, or a fallback chain of profiles tried in order.
    #[schemars(with = "Option<AgentChainSchema>")]
    pub agent: Option<AgentChain>,
    /// The gate: a shell command template that must exit 0 for the step to pass (`""`: none).
    #[schemars(with = "Option<String>")]
    pub gate: Option<Spanned<String>>,
    /// Tries per agent (default 2); a failure's output feeds the next try.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub attempts: Option<Spanned<i64>>,
    /// Time allowed per attempt, e.g. `90s`, `20m`, `1h` (default `30m`).
    #[schemars(with = "Option<String>", regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<Spanned<String>>,
    /// Globs of the paths the step's cache key sees (default: the whole tree).
    #[schemars(with = "Option<Vec<String>>")]
    pub inputs: Option<Vec<Spanned<String>>>,
    /// Whether an earlier passed result may be reused (default true).
    pub cache: Option<bool>,
    /// How a chain of agents is used: one after another, or all at once.
    pub strategy: Option<Strategy>,
    /// The prompt template for a retry after a failure (context: `failure.*`).
    #[schemars(with = "Option<String>")]
    pub retry_prompt: Option<Spanned<String>>,
    /// `fresh`: every step gets a brand-new worktree instead of a warm one from the pool.
    pub worktree: Option<WorktreeMode>,
    /// A message for a person: once the step has passed, its result waits for their decision
    /// (`medley approve STEP` or `medley reject STEP --why TEXT`) before any dependent starts.
    #[schemars(with = "Option<String>")]
    pub approve: Option<Spanned<String>>,
    /// What a rejection does: `fail` (default: the step fails, its dependents are skipped) or
    /// `retry` (the agent runs again on its result, the reason as `failure.output`).
    #[schemars(with = "Option<OnReject>")]
    pub on_reject: Option<Spanned<OnReject>>,
}

/// What a person's rejection of a step's result does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnReject {
    /// The step fails; its dependents are skipped (reason: rejected, with the text).
    #[default]
    Fail,
    /// The agent runs again on top of its rejected result, hearing the reason (its
    /// `retry_prompt`, with `failure.kind` = `rejected` and `failure.output` = the reason).
    Retry,
}

/// Where a step's worktree comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorktreeMode {
    /// A slot of the repository's pool, reset to the step's base; ignored files (build
    /// caches) kept.
    #[default]
    Pool,
    /// A brand-new `git worktree add`, for a build that trusts nothing left over.
    Fresh,
}

/// One step: exactly one of `prompt` (an agent step) or `run` (a command step).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The prompt template given to the agent (an agent step).
    #[schemars(with = "Option<String>")]
    pub prompt: Option<Spanned<String>>,
    /// A shell command template run with `sh -c` (a command step).
    #[schemars(with = "Option<String>")]
    pub run: Option<Spanned<String>>,
    /// Steps (or matrix children, `step.value`) whose results this step starts from.
    #[schemars(with = "Option<Vec<String>>")]
    pub needs: Option<Vec<Spanned<String>>>,
    /// Run the step only if this expression is true (context: `steps.<id>`, `vars`, ...).
    #[serde(rename = "if")]
    #[schemars(with = "Option<String>")]
    pub if_: Option<Spanned<String>>,
    /// Fan-out: one child step per combination of the axes' values; or one axis read when an
    /// upstream step passes, `{ from = "plan", file = "tasks.json" }`.
    #[schemars(with = "Option<IndexMap<String, MatrixAxisSchema>>")]
    pub matrix: Option<Spanned<IndexMap<String, Spanned<serde_json::Value>>>>,
    /// For a matrix read from an upstream step: the most children its list may make
    /// (default 50); a longer list fails the step.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_children: Option<Spanned<i64>>,
    /// The agent profile, or a fallback chain of profiles tried in order.
    #[schemars(with = "Option<AgentChainSchema>")]
    pub agent: Option<AgentChain>,
    /// The gate: a shell command template that must exit 0 for the step to pass (`""`: none).
    #[schemars(with = "Option<String>")]
    pub gate: Option<Spanned<String>>,
    /// Tries per agent (default 2); a failure's output feeds the next try.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub attempts: Option<Spanned<i64>>,
    /// Time allowed per attempt, e.g. `90s`, `20m`, `1h` (default `30m`).
    #[schemars(with = "Option<String>", regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<Spanned<String>>,
    /// Globs of the paths the step's cache key sees (default: the whole tree).
    #[schemars(with = "Option<Vec<String>>")]
    pub inputs: Option<Vec<Spanned<String>>>,
    /// Whether an earlier passed result may be reused (default true).
    pub cache: Option<bool>,
    /// How a chain of agents is used: one after another, or all at once.
    pub strategy: Option<Strategy>,
    /// The prompt template for a retry after a failure (context: `failure.*`).
    #[schemars(with = "Option<String>")]
    pub retry_prompt: Option<Spanned<String>>,
    /// `fresh`: this step gets a brand-new worktree instead of a warm one from the pool.
    pub worktree: Option<WorktreeMode>,
    /// A message for a person: once the step has passed, its result waits for their decision
    /// (`medley approve STEP` or `medley reject STEP --why TEXT`) before any dependent starts.
    #[schemars(with = "Option<String>")]
    pub approve: Option<Spanned<String>>,
    /// What a rejection does: `fail` (default: the step fails, its dependents are skipped) or
    /// `retry` (the agent runs again on its result, the reason as `failure.output`).
    #[schemars(with = "Option<OnReject>")]
    pub on_reject: Option<Spanned<OnReject>>,
    /// How a conflict between the results of its needs is resolved: an agent edits out the
    /// conflict markers (without it, a conflict fails the step).
    #[schemars(with = "Option<Merge>")]
    pub merge: Option<Spanned<Merge>>,
}

/// A matrix axis: a non-empty list of values.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct MatrixAxis(#[schemars(length(min = 1))] Vec<Scalar>);

/// A matrix axis: its values, or where to read them when an upstream step passes.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum MatrixAxisSchema {
    Values(MatrixAxis),
    FromStep(DynamicAxisSchema),
}

/// A matrix axis read from an upstream step's result: a JSON array of strings (or numbers),
/// or of objects with an `id` (their fields are `matrix.<axis>.<field>`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct DynamicAxisSchema {
    /// The step (one this step needs) whose result holds the file.
    from: String,
    /// The file's path in that step's result commit.
    #[schemars(length(min = 1))]
    file: String,
}

/// An agent profile: a runtime plus its settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentProfile {
    /// The CLI this profile runs (default: the profile's name, when that is a runtime).
    #[schemars(with = "Option<Runtime>")]
    pub runtime: Option<Spanned<String>>,
    /// The model to ask the CLI for.
    pub model: Option<String>,
    /// Extra CLI arguments, placed after medley's own so they win.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables for this agent.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Prices for a CLI that reports only tokens, in US dollars per million tokens.
    pub price: Option<Price>,
    /// For `runtime = "command"`: the program and its arguments; the prompt goes to its stdin.
    #[schemars(with = "Option<Vec<String>>")]
    pub program: Option<Spanned<Vec<String>>>,
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per million input tokens.
    #[schemars(range(min = 0.0))]
    pub input_per_mtok: f64,
    /// Dollars per million output tokens.
    #[schemars(range(min = 0.0))]
    pub output_per_mtok: f64,
}

/// How a step uses a chain of agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One agent after another, each with its own attempts.
    #[default]
    Fallback,
    /// Every agent at once; the first to pass wins.
    Race,
}

/// The agent CLIs medley can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Claude,
    Codex,
    Gemini,
    Cursor,
    Kimi,
    Qwen,
    Command,
}

impl Runtime {
    pub const ALL: [Runtime; 7] = [
        Runtime::Claude,
        Runtime::Codex,
        Runtime::Gemini,
        Runtime::Cursor,
        Runtime::Kimi,
        Runtime::Qwen,
        Runtime::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Claude => "claude",
            Runtime::Codex => "codex",
            Runtime::Gemini => "gemini",
            Runtime::Cursor => "cursor",
            Runtime::Kimi => "kimi",
            Runtime::Qwen => "qwen",
            Runtime::Command => "command",
        }
    }

    pub fn from_name(name: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One agent profile name, or a list of them tried in order.
#[derive(Debug, Clone, Default)]
pub struct AgentChain(pub Vec<Spanned<String>>);

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum AgentChainSchema {
    One(String),
    Chain(#[schemars(length(min = 1))] Vec<String>),
}

impl<'de> Deserialize<'de> for AgentChain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Both forms keep their spans: a bare string is read as a one-element chain.
        let one_or_many: Spanned<OneOrMany> = Spanned::deserialize(deserializer)?;
        let span = one_or_many.span();
        Ok(AgentChain(match one_or_many.into_inner() {
            OneOrMany::One(name) => vec![Spanned::new(span, name)],
            OneOrMany::Many(names) => names,
        }))
    }
}

enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an agent profile name or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(OneOrMany::Many(names))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The keys valid at each place of a mission file, for "did you mean" on unknown keys.
pub mod keys {
    pub const MISSION: &[&str] = &[
        "name",
        "description",
        "max_parallel",
        "max_steps",
        "gate",
        "setup",
        "setup_files",
        "worktree",
        "approve",
        "budget_usd",
        "secrets",
        "vars",
        "defaults",
        "agents",
        "steps",
        "merge",
    ];
    pub const DEFAULTS: &[&str] = &[
        "agent",
        "gate",
        "attempts",
        "timeout",
        "inputs",
        "cache",
        "strategy",
        "retry_prompt",
        "worktree",
        "approve",
        "on_reject",
    ];
    pub const STEP: &[&str] = &[
        "prompt",
        "run",
        "needs",
        "if",
        "matrix",
        "max_children",
        "agent",
        "gate",
        "attempts",
        "timeout",
        "inputs",
        "cache",
        "strategy",
        "retry_prompt",
        "worktree",
        "approve",
        "on_reject",
        "merge",
    ];
    pub const MERGE: &[&str] = &["agent", "prompt", "gate"];
    pub const AGENT: &[&str] = &["runtime", "model", "args", "env", "price", "program"];
    pub const PRICE: &[&str] = &["input_per_mtok", "output_per_mtok"];
}
