//! Compile: a loaded [`Mission`] -> a [`Plan`].
//!
//! Defaults and `--set` are applied, matrices expanded, `needs` resolved, the DAG built and
//! ordered (ties broken by the order steps are written), and every template parsed and tried
//! against the context it will have at run time. Every problem is collected, then reported at
//! once as one [`MissionErrors`].

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use std::time::Duration;

use indexmap::IndexMap;
use minijinja::value::Value;
use petgraph::graph::{DiGraph, NodeIndex};
use toml::Spanned;

use super::template::{
    self, CONTEXT_NAMES, FAILURE_FIELDS, Flavor, STEP_FIELDS, StepKeys, StepsContext, Templates,
};
use super::{Action, AgentSpec, Plan, PlanStep, TemplateRef, duration_text};
use crate::mission::diagnostics::{ErrorKind, MissionError, MissionErrors, Problems};
use crate::mission::model::{AgentChain, Runtime, Step, Strategy};
use crate::mission::suggest::{closest, did_you_mean};
use crate::mission::{Mission, MissionFile};

/// Settings that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// `--set name=value` overrides of `[vars]`, in order.
    pub sets: Vec<(String, String)>,
}

/// A `--set` that does not fit the mission.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum SetError {
    #[error("`--set {name}=...`: the mission declares no var `{name}`")]
    #[diagnostic(help("{}", declared_help(.name, .declared)))]
    Unknown { name: String, declared: Vec<String> },
    #[error("`--set {name}={value}`: `{name}` is {expected} in the mission")]
    #[diagnostic(help("give `{name}` {expected}, e.g. `--set {name}={example}`"))]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
        example: String,
    },
}

fn declared_help(name: &str, declared: &[String]) -> String {
    if declared.is_empty() {
        return "the mission has no `[vars]`: declare the var there to make it settable".to_owned();
    }
    let list = declared
        .iter()
        .map(|d| format!("`{d}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(name, declared.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`? the declared vars are {list}"),
        None => format!("the declared vars are {list}"),
    }
}

/// Why a mission did not compile.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompileError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Mission(Box<MissionErrors>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Set(SetError),
}

const DEFAULT_ATTEMPTS: u32 = 2;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_MAX_PARALLEL: usize = 4;
/// The most steps a plan may have unless the mission sets `max_steps`.
pub const DEFAULT_MAX_STEPS: u64 = 1000;
/// The longest step id, in bytes: ids name directories, log files and refs, whose components
/// may not pass 255 bytes (with room for suffixes such as `.lock`).
pub const MAX_ID_BYTES: usize = 200;

/// Whether `id` is a valid step, mission or profile id: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `My Step!` -> `my-step-`: an id suggestion for an invalid one.
fn to_id(text: &str) -> String {
    let mut id: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    if id.is_empty() || id.starts_with(['-', '_']) {
        id.insert(0, 'x');
    }
    id
}

/// A matrix value as id characters: lower-cased, anything else becomes `-`.
fn value_id(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.is_empty() {
        return "-".to_owned();
    }
    text.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect()
}

/// A declared step with its matrix children (one child, itself, when it has no matrix).
struct Decl<'m> {
    id: &'m str,
    key: Range<usize>,
    step: &'m Spanned<Step>,
    children: Vec<Child>,
    is_matrix: bool,
}

/// One resolved `needs` entry: the declared step it names, the concrete ids, and its span.
type Need = (usize, Vec<String>, Range<usize>);

struct Child {
    id: String,
    matrix: IndexMap<String, serde_json::Value>,
}

/// Compiles a loaded mission into a plan, or reports every problem it has.
pub fn compile(mission: &Mission, options: &CompileOptions) -> Result<Plan, CompileError> {
    let mut c = Compiler {
        mission,
        file: &mission.file,
        problems: Problems(mission.key_errors.clone()),
    };
    let plan = c.run(options);
    if !c.problems.is_empty() {
        return Err(CompileError::Mission(Box::new(MissionErrors::new(
            &mission.display_path(),
            &mission.source,
            c.problems.0,
        ))));
    }
    plan
}

struct Compiler<'m> {
    mission: &'m Mission,
    file: &'m MissionFile,
    problems: Problems,
}

impl<'m> Compiler<'m> {
    fn push(&mut self, error: MissionError) {
        self.problems.push(error);
    }

    /// The mission's `secrets`: names of environment variables.
    fn secrets(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for name in self.file.secrets.iter().flatten() {
            let text = name.get_ref();
            let valid = text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                names.push(text.clone());
            } else {
                self.push(
                    MissionError::new(
                        ErrorKind::Value,
                        format!("`{text}` is not the name of an environment variable"),
                    )
                    .label(name.span(), "not a variable name")
                    .help("list the names of the variables that hold secrets, e.g. `\"OPENAI_API_KEY\"`"),
                );
            }
        }
        names
    }

    fn run(&mut self, options: &CompileOptions) -> Result<Plan, CompileError> {
        let name = self.mission_name();
        let vars = self.vars();
        let agents = self.agents();
        let max_parallel = self.positive(self.file.max_parallel.as_ref(), "max_parallel");
        if let Some(budget) = &self.file.budget_usd
            && !(budget.get_ref().is_finite() && *budget.get_ref() > 0.0)
        {
            self.push(
                MissionError::new(ErrorKind::Value, "`budget_usd` must be more than 0")
                    .label(budget.span(), "not a positive amount")
                    .help("write the most the run may spend, in US dollars, e.g. `5.0`"),
            );
        }
        let secrets = self.secrets();
        let max_steps = self
            .positive(self.file.max_steps.as_ref(), "max_steps")
            .map_or(DEFAULT_MAX_STEPS, u64::from);
        let decls = self.declare_steps(max_steps);
        let needs = self.resolve_needs(&decls);
        let acyclic = self.check_cycles(&decls, &needs);
        let mut steps = self.concrete_steps(&decls, &needs, &agents);

        let mut vars = vars;
        let sets = apply_sets(&mut vars, &options.sets);

        let order = if acyclic {
            topological_order(&steps)
        } else {
            (0..steps.len()).collect()
        };
        let mut templates = Templates::new();
        let gate = self.template(&mut templates, self.file.gate.as_ref(), Flavor::Shell);
        let setup = self.template(&mut templates, self.file.setup.as_ref(), Flavor::Shell);
        let setup_files = self.setup_files();
        let upstream = Upstream::new(&steps, acyclic.then_some(order.as_slice()));
        self.check_step_templates(&mut templates, &decls, &steps, &upstream, &vars, &name);
        self.check_mission_templates(&templates, &gate, &setup, &steps, &vars, &name);

        if !self.problems.is_empty() {
            return Err(CompileError::Mission(Box::new(MissionErrors::new(
                &self.mission.display_path(),
                &self.mission.source,
                std::mem::take(&mut self.problems.0),
            ))));
        }
        sets.map_err(CompileError::Set)?;

        let mut ordered = Vec::with_capacity(steps.len());
        let mut slots: Vec<Option<PlanStep>> = steps.drain(..).map(Some).collect();
        for i in order {
            if let Some(step) = slots[i].take() {
                ordered.push(step);
            }
        }
        let used: HashSet<&str> = ordered
            .iter()
            .flat_map(|s| s.agents().iter().map(String::as_str))
            .collect();
        let agents = agents
            .into_iter()
            .filter(|(n, _)| used.contains(n.as_str()) || self.file.agents.contains_key(n))
            .collect();
        Ok(Plan {
            mission: name,
            path: self.mission.display_path(),
            description: self.file.description.clone(),
            max_parallel: max_parallel.map_or(DEFAULT_MAX_PARALLEL, |n| n as usize),
            budget_usd: self.file.budget_usd.as_ref().map(|b| *b.get_ref()),
            gate,
            setup,
            setup_files,
            fresh_worktrees: self.file.worktree == Some(crate::mission::WorktreeMode::Fresh),
            vars,
            secrets,
            agents,
            steps: ordered,
            partial: false,
            templates,
        })
    }

    fn mission_name(&mut self) -> String {
        let name = self.mission.name();
        if !is_valid_id(&name) {
            let error = MissionError::new(
                ErrorKind::InvalidId,
                format!("invalid mission name `{name}`"),
            );
            self.push(match &self.file.name {
                Some(n) => error.label(n.span(), "not a valid id").help(id_help(&name)),
                None => error
                    .label(0..0, "the name comes from the file name")
                    .help(format!(
                        "add `name = \"{}\"` at the top of the file; {}",
                        to_id(&name),
                        ID_RULE
                    )),
            });
        }
        name
    }

    fn positive(&mut self, value: Option<&Spanned<i64>>, key: &str) -> Option<u32> {
        let value = value?;
        match u32::try_from(*value.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            Err(_) if *value.get_ref() > 0 => {
                self.push(
                    MissionError::new(ErrorKind::Value, format!("`{key}` is too large"))
                        .label(value.span(), format!("more than {}", u32::MAX))
                        .help(format!(
                            "write a whole number from 1 to {}, e.g. `{key} = 2`",
                            u32::MAX
                        )),
                );
                None
            }
            _ => {
                self.push(
                    MissionError::new(ErrorKind::Value, format!("`{key}` must be at least 1"))
                        .label(value.span(), "not a positive whole number")
                        .help(format!("write a whole number from 1 up, e.g. `{key} = 2`")),
                );
                None
            }
        }
    }

    fn vars(&mut self) -> IndexMap<String, serde_json::Value> {
        let mut vars = IndexMap::new();
        for (name, value) in &self.file.vars {
            let ok = match value.get_ref() {
                serde_json::Value::Array(items) => items.iter().all(is_scalar),
                v => is_scalar(v),
            };
            if !ok {
                self.push(
                    MissionError::new(
                        ErrorKind::Value,
                        format!("var `{name}` must be a string, number, boolean or list of them"),
                    )
                    .label(value.span(), "not a plain value")
                    .help(
                        "write the var as a string, a number, `true`/`false`, or a list of those",
                    ),
                );
            }
            vars.insert(name.clone(), value.get_ref().clone());
        }
        vars
    }

    fn agents(&mut self) -> IndexMap<String, AgentSpec> {
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
            let key = self
                .mission
                .agent_keys
                .get(name)
                .cloned()
                .unwrap_or(profile.span());
            if !is_valid_id(name) {
                self.push(
                    MissionError::new(
                        ErrorKind::InvalidId,
                        format!("invalid agent profile name `{name}`"),
                    )
                    .label(key.clone(), "not a valid id")
                    .help(id_help(name)),
                );
            }
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
                                Runtime::ALL.map(|r| format!("`{}`", r.name())).join(", ")
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

    fn declare_steps(&mut self, max_steps: u64) -> Vec<Decl<'m>> {
        let mut decls = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        let mut total: u64 = 0;
        let mut over = false;
        for (id, step) in &self.file.steps {
            let key = self
                .mission
                .step_keys
                .get(id)
                .cloned()
                .unwrap_or(step.span());
            if !is_valid_id(id) {
                self.push(
                    MissionError::new(ErrorKind::InvalidId, format!("invalid step id `{id}`"))
                        .label(key.clone(), "not a valid id")
                        .help(id_help(id)),
                );
            }
            if id.len() > MAX_ID_BYTES {
                self.push(
                    MissionError::new(
                        ErrorKind::InvalidId,
                        format!("step id `{}` is too long", shorten(id)),
                    )
                    .label(
                        key.clone(),
                        format!("{} bytes, more than {MAX_ID_BYTES}", id.len()),
                    )
                    .help("step ids name worktrees, log files and branches: use a shorter id"),
                );
            }
            // Counted before expanding, so a huge matrix is refused without being built.
            let count = step
                .get_ref()
                .matrix
                .as_ref()
                .map_or(1, |m| matrix_size(m.get_ref()));
            total = total.saturating_add(count);
            if total > max_steps && !over {
                over = true;
                let span = step
                    .get_ref()
                    .matrix
                    .as_ref()
                    .map_or(key.clone(), |m| m.span());
                let label = if count > 1 {
                    format!("{count} steps")
                } else {
                    "one step too many".to_owned()
                };
                self.push(
                    MissionError::new(
                        ErrorKind::Matrix,
                        format!(
                            "the plan would have {}{total} steps, more than `max_steps` ({max_steps})",
                            if total == u64::MAX { "at least " } else { "" }
                        ),
                    )
                    .label(span, label)
                    .help(format!(
                        "a matrix makes one step per combination of its axes' values: use fewer values, split the mission, or raise the cap with `max_steps = {}` at the top of the file",
                        total.min(u64::from(u32::MAX))
                    )),
                );
            }
            let (children, is_matrix) = match &step.get_ref().matrix {
                None => (
                    vec![Child {
                        id: id.clone(),
                        matrix: IndexMap::new(),
                    }],
                    false,
                ),
                Some(_) if over => (Vec::new(), true),
                Some(matrix) => (self.expand_matrix(id, matrix), true),
            };
            for child in children.iter().filter(|c| c.id != *id) {
                if child.id.len() > MAX_ID_BYTES {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix child id `{}` is too long", shorten(&child.id)),
                        )
                        .label(
                            child_span(step, &child.matrix),
                            format!("{} bytes, more than {MAX_ID_BYTES}", child.id.len()),
                        )
                        .help("matrix values become part of step ids, which name worktrees, log files and branches: use shorter values (e.g. a short name, with the long text in `vars`)"),
                    );
                    break;
                }
            }
            for child in &children {
                if child.id != *id {
                    if let Some(first) = seen.get(&child.id) {
                        let first = first.clone();
                        self.push(
                            MissionError::new(
                                ErrorKind::Matrix,
                                format!("two matrix children have the same id `{}`", child.id),
                            )
                            .label(child_span(step, &child.matrix), "this child's id")
                            .label(first, "is also this one's")
                            .help("matrix values become id characters (others turn into `-`): make the values differ in letters or digits"),
                        );
                        continue;
                    }
                    seen.insert(child.id.clone(), child_span(step, &child.matrix));
                }
            }
            decls.push(Decl {
                id,
                key,
                step,
                children,
                is_matrix,
            });
        }
        decls
    }

    fn expand_matrix(
        &mut self,
        id: &str,
        matrix: &Spanned<IndexMap<String, Spanned<serde_json::Value>>>,
    ) -> Vec<Child> {
        if matrix.get_ref().is_empty() {
            self.push(
                MissionError::new(ErrorKind::Matrix, format!("the matrix of step `{id}` has no axes"))
                    .label(matrix.span(), "empty matrix")
                    .help("add an axis, e.g. `matrix = { part = [\"lexer\", \"ast\"] }`, or remove `matrix`"),
            );
            return Vec::new();
        }
        let mut combos: Vec<(String, IndexMap<String, serde_json::Value>)> =
            vec![(id.to_owned(), IndexMap::new())];
        for (axis, values) in matrix.get_ref() {
            let items = match values.get_ref() {
                serde_json::Value::Array(items) if items.is_empty() => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` is empty"),
                        )
                        .label(values.span(), "no values")
                        .help(format!(
                            "list at least one value, e.g. `{axis} = [\"a\", \"b\"]`"
                        )),
                    );
                    return Vec::new();
                }
                serde_json::Value::Array(items) if items.iter().all(is_scalar) => items,
                serde_json::Value::Array(_) => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` holds a list or table"),
                        )
                        .label(values.span(), "values must be strings, numbers or booleans")
                        .help("list plain values, e.g. `[\"lexer\", \"ast\"]`"),
                    );
                    return Vec::new();
                }
                _ => {
                    self.push(
                        MissionError::new(
                            ErrorKind::Matrix,
                            format!("matrix axis `{axis}` of step `{id}` is not a list"),
                        )
                        .label(values.span(), "expected a list of values")
                        .help(format!(
                            "write the axis as a list, e.g. `{axis} = [{}]`",
                            values.get_ref()
                        )),
                    );
                    return Vec::new();
                }
            };
            combos = combos
                .into_iter()
                .flat_map(|(cid, m)| {
                    items.iter().map(move |v| {
                        let mut m = m.clone();
                        m.insert(axis.clone(), v.clone());
                        (format!("{cid}.{}", value_id(v)), m)
                    })
                })
                .collect();
        }
        combos
            .into_iter()
            .map(|(id, matrix)| Child { id, matrix })
            .collect()
    }

    /// Each declared step's needs as (declared index, concrete child ids, span) triples.
    fn resolve_needs(&mut self, decls: &[Decl<'m>]) -> Vec<Vec<Need>> {
        let by_id: HashMap<&str, usize> =
            decls.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let mut child_of: HashMap<&str, usize> = HashMap::new();
        for (i, d) in decls.iter().enumerate() {
            if d.is_matrix {
                for c in &d.children {
                    child_of.insert(c.id.as_str(), i);
                }
            }
        }
        let mut all = Vec::new();
        for d in decls {
            let mut resolved = Vec::new();
            for need in d.step.get_ref().needs.iter().flatten() {
                let name = need.get_ref().as_str();
                if let Some(&i) = by_id.get(name) {
                    let ids = decls[i].children.iter().map(|c| c.id.clone()).collect();
                    resolved.push((i, ids, need.span()));
                } else if let Some(&i) = child_of.get(name) {
                    resolved.push((i, vec![name.to_owned()], need.span()));
                } else {
                    let candidates = decls
                        .iter()
                        .map(|d| d.id)
                        .chain(child_of.keys().copied())
                        .filter(|c| *c != d.id);
                    let help = match closest(name, candidates) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!(
                            "the steps are {}",
                            decls
                                .iter()
                                .map(|d| format!("`{}`", d.id))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.push(
                        MissionError::new(
                            ErrorKind::UnknownNeed,
                            format!("unknown step `{name}` in `needs` of step `{}`", d.id),
                        )
                        .label(need.span(), "no step has this id")
                        .help(help),
                    );
                }
            }
            all.push(resolved);
        }
        all
    }

    /// Reports every cycle among declared steps; true when there is none.
    fn check_cycles(&mut self, decls: &[Decl<'m>], needs: &[Vec<Need>]) -> bool {
        let edges: Vec<(usize, usize)> = needs
            .iter()
            .enumerate()
            .flat_map(|(i, ns)| ns.iter().map(move |(j, _, _)| (i, *j)))
            .collect();
        let cycles = find_cycles(decls.len(), &edges);
        for cycle in &cycles {
            let names: Vec<String> = cycle.iter().map(|&i| decls[i].id.to_owned()).collect();
            let mut path: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            path.push(format!("`{}`", names[0]));
            let mut error = MissionError::new(
                ErrorKind::Cycle(names.clone()),
                format!("steps form a cycle: {}", path.join(" needs ")),
            );
            for (k, &i) in cycle.iter().enumerate() {
                let next = cycle[(k + 1) % cycle.len()];
                let span = needs[i]
                    .iter()
                    .find(|(j, _, _)| *j == next)
                    .map_or(decls[i].key.clone(), |(_, _, s)| s.clone());
                let label = format!("{}. `{}` needs `{}`", k + 1, decls[i].id, decls[next].id);
                error = error.label(span, label);
            }
            self.push(error.help(
                "a step cannot need itself, directly or through others: remove one of these needs",
            ));
        }
        cycles.is_empty()
    }

    fn concrete_steps(
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
                        prompt: template_ref("prompt", prompt),
                        agents,
                        strategy: step
                            .strategy
                            .or(defaults.strategy)
                            .unwrap_or(Strategy::Fallback),
                        retry_prompt: step
                            .retry_prompt
                            .as_ref()
                            .or(defaults.retry_prompt.as_ref())
                            .map(|t| template_ref("retry_prompt", t)),
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
                        run: template_ref("run", run),
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
                .map(|g| template_ref("gate", g));
            let inputs = step.inputs.as_ref().or(defaults.inputs.as_ref());
            for glob in inputs.into_iter().flatten() {
                if let Err(e) = crate::cache::input_globs(std::slice::from_ref(glob.get_ref())) {
                    self.push(
                        MissionError::new(
                            ErrorKind::Value,
                            format!("`{}` in `inputs` is not a valid glob", glob.get_ref()),
                        )
                        .label(glob.span(), e.kind().to_string())
                        .help("write a glob relative to the repository root, e.g. `src/**` or `*.md` (`*` stays within a directory, `**` crosses them)"),
                    );
                }
            }
            let inputs: Option<Vec<String>> =
                inputs.map(|i| i.iter().map(|s| s.get_ref().clone()).collect());
            let Some(action) = action else { continue };
            let need_ids: Vec<String> = resolved
                .iter()
                .flat_map(|(_, ids, _)| ids.clone())
                .collect();
            for child in &d.children {
                steps.push(PlanStep {
                    id: child.id.clone(),
                    declared: d.id.to_owned(),
                    matrix: child.matrix.clone(),
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
                });
            }
        }
        steps
    }

    /// `setup_files`: valid globs, and only with a `setup`.
    fn setup_files(&mut self) -> Option<Vec<String>> {
        let files = self.file.setup_files.clone()?;
        for glob in &files {
            if let Err(e) = crate::cache::input_globs(std::slice::from_ref(glob.get_ref())) {
                self.push(
                    MissionError::new(
                        ErrorKind::Value,
                        format!("`{}` in `setup_files` is not a valid glob", glob.get_ref()),
                    )
                    .label(glob.span(), e.kind().to_string())
                    .help("write a path or glob relative to the repository root, e.g. `package-lock.json` or `requirements*.txt`"),
                );
            }
        }
        if self.file.setup.is_none()
            && let Some(first) = files.first()
        {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    "`setup_files` names the files of a `setup`, but there is no `setup`",
                )
                .label(first.span(), "no `setup` uses these")
                .help("add `setup = \"...\"` (e.g. `setup = \"npm ci\"`), or remove `setup_files`"),
            );
        }
        Some(files.iter().map(|f| f.get_ref().clone()).collect())
    }

    fn chain(
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
                        agents
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
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

    fn duration(&mut self, value: Option<&Spanned<String>>) -> Option<Duration> {
        let value = value?;
        match duration_text::parse(value.get_ref()) {
            Some(d) if !d.is_zero() => Some(d),
            Some(_) => {
                self.push(
                    MissionError::new(
                        ErrorKind::Duration,
                        format!("duration `{}` is zero", value.get_ref()),
                    )
                    .label(value.span(), "zero is not allowed")
                    .help("a step needs some time to run: write a duration above zero, e.g. `90s`, `20m` or `1h`"),
                );
                None
            }
            None => {
                self.push(
                    MissionError::new(
                        ErrorKind::Duration,
                        format!("invalid duration `{}`", value.get_ref()),
                    )
                    .label(value.span(), "not a duration")
                    .help("write a whole number and a unit with no space, e.g. `90s`, `20m`, `1h` or `1h30m` (units: `ms`, `s`, `m`, `h`)"),
                );
                None
            }
        }
    }

    /// Parses a template into `templates`; reports syntax errors and refused constructs.
    fn template(
        &mut self,
        templates: &mut Templates,
        value: Option<&Spanned<String>>,
        flavor: Flavor,
    ) -> Option<TemplateRef> {
        let value = value?;
        let name = format!("t{}", value.span().start);
        if templates.contains(&name, flavor) {
            return Some(TemplateRef {
                name,
                source: value.get_ref().clone(),
            });
        }
        let mut ok = true;
        if flavor == Flavor::Shell {
            for problem in template::shell_problems(value.get_ref()) {
                ok = false;
                self.push(
                    MissionError::new(ErrorKind::UnsafeShell, problem.message)
                        .label(self.span_in(value, Some(problem.range)), "refused here")
                        .help(problem.help),
                );
            }
        }
        if let Err(error) = templates.add(&name, flavor, value.get_ref()) {
            ok = false;
            let detail = error.detail().unwrap_or("invalid template").to_owned();
            self.push(
                MissionError::new(ErrorKind::Template, format!("template syntax error: {detail}"))
                    .label(self.span_in(value, error.range()), detail)
                    .help("fix the template: `{{ name }}` prints a value, `{% if ... %}...{% endif %}` is a block (minijinja syntax)"),
            );
        }
        ok.then(|| TemplateRef {
            name,
            source: value.get_ref().clone(),
        })
    }

    /// Reports `steps.my-step` (read by Jinja as `steps.my - step`); true when there is none.
    fn dashed_refs(&mut self, value: &Spanned<String>, ids: &[String]) -> bool {
        let found = template::dashed_step_refs(value.get_ref(), ids);
        for (range, id) in &found {
            self.push(
                MissionError::new(
                    ErrorKind::UndefinedName,
                    format!(
                        "`steps.{id}` reads as a subtraction, `steps.{}`",
                        id.replace('-', " - ")
                    ),
                )
                .label(
                    self.span_in(value, Some(range.clone())),
                    "an id with `-` needs brackets",
                )
                .help(format!("write `steps[\"{id}\"]`")),
            );
        }
        found.is_empty()
    }

    /// A span inside a TOML string value, or the whole value when escapes shift offsets.
    fn span_in(&self, value: &Spanned<String>, range: Option<Range<usize>>) -> Range<usize> {
        let span = value.span();
        let Some(r) = range.filter(|r| r.end <= value.get_ref().len()) else {
            return span;
        };
        if let Some(offset) = content_offset(&self.mission.source, value) {
            return span.start + offset + r.start..span.start + offset + r.end.max(r.start + 1);
        }
        // Escapes shift offsets: find the same text in the file, if it is there only once.
        let text = value.get_ref().get(r).unwrap_or("");
        let raw = self.mission.source.get(span.clone()).unwrap_or("");
        match (raw.find(text), raw.rfind(text)) {
            (Some(a), Some(b)) if a == b && !text.is_empty() => {
                span.start + a..span.start + a + text.len()
            }
            _ => span,
        }
    }

    fn check_step_templates(
        &mut self,
        templates: &mut Templates,
        decls: &[Decl<'m>],
        steps: &[PlanStep],
        upstream: &Upstream,
        vars: &IndexMap<String, serde_json::Value>,
        mission: &str,
    ) {
        let defaults = self.file.defaults.clone().unwrap_or_default();
        let placeholder = Some(template::placeholder_step());
        let no_values = Arc::new(HashMap::new());
        let nothing = Arc::new(FixedBitSet::with_capacity(steps.len()));
        let base = base_context(vars, mission);
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let all_ids: Vec<String> = decls
            .iter()
            .flat_map(|d| {
                std::iter::once(d.id.to_owned()).chain(
                    d.children
                        .iter()
                        .filter(|_| d.is_matrix)
                        .map(|c| c.id.clone()),
                )
            })
            .collect();
        for d in decls {
            let step = d.step.get_ref();
            let mut fields: Vec<(&str, &Spanned<String>, Flavor)> = Vec::new();
            if let Some(p) = &step.prompt {
                fields.push(("prompt", p, Flavor::Text));
            }
            if let Some(r) = &step.run {
                fields.push(("run", r, Flavor::Shell));
            }
            if let Some(g) = step.gate.as_ref().or(defaults.gate.as_ref()) {
                fields.push(("gate", g, Flavor::Shell));
            }
            if step.prompt.is_some()
                && let Some(r) = step
                    .retry_prompt
                    .as_ref()
                    .or(defaults.retry_prompt.as_ref())
            {
                fields.push(("retry_prompt", r, Flavor::Text));
            }
            let parsed: Vec<_> = fields
                .into_iter()
                .filter_map(|(field, value, flavor)| {
                    let template = self.template(templates, Some(value), flavor)?;
                    self.dashed_refs(value, &all_ids)
                        .then_some((field, value, flavor, template))
                })
                .collect();
            let if_ok = match &step.if_ {
                Some(expr) => match templates.eval(expr.get_ref(), &Value::from(())) {
                    Err(e) if e.kind() == minijinja::ErrorKind::SyntaxError => {
                        let detail = e.detail().unwrap_or("invalid expression").to_owned();
                        self.push(
                            MissionError::new(
                                ErrorKind::Template,
                                format!("`if` expression syntax error: {detail}"),
                            )
                            .label(self.span_in(expr, e.range()), detail)
                            .help("write an expression such as `steps.build.outcome == 'passed'`"),
                        );
                        false
                    }
                    _ => true,
                },
                None => false,
            };
            let uses_steps = parsed
                .iter()
                .any(|(_, v, _, _)| v.get_ref().contains("steps"))
                || (if_ok
                    && step
                        .if_
                        .as_ref()
                        .is_some_and(|e| e.get_ref().contains("steps")));
            for child in &d.children {
                let Some(&i) = index.get(child.id.as_str()) else {
                    continue;
                };
                let steps_value = Value::from_object(StepsContext {
                    keys: upstream.keys.clone(),
                    visible: if uses_steps {
                        upstream.of(i)
                    } else {
                        nothing.clone()
                    },
                    values: no_values.clone(),
                    default: placeholder.clone(),
                });
                let matrix = Value::from(minijinja::value::Serde(&child.matrix));
                for (field, value, flavor, t) in &parsed {
                    let mut ctx = base.clone();
                    ctx.push(("matrix", matrix.clone()));
                    ctx.push(("steps", steps_value.clone()));
                    if *field == "retry_prompt" {
                        ctx.push(("failure", template::placeholder_failure()));
                    }
                    let ctx = template::context(ctx);
                    if let Err(e) = templates.render(&t.name, *flavor, &ctx) {
                        self.render_error(
                            &e,
                            value,
                            field,
                            d.id,
                            &ctx,
                            vars,
                            &child.matrix,
                            &all_ids,
                        );
                    }
                }
                if let (Some(expr), true) = (&step.if_, if_ok) {
                    let mut ctx = base.clone();
                    ctx.push(("matrix", matrix.clone()));
                    ctx.push(("steps", steps_value.clone()));
                    let ctx = template::context(ctx);
                    if let Err(e) = templates.eval(expr.get_ref(), &ctx) {
                        self.render_error(
                            &e,
                            expr,
                            "if",
                            d.id,
                            &ctx,
                            vars,
                            &child.matrix,
                            &all_ids,
                        );
                    }
                }
            }
        }
    }

    fn check_mission_templates(
        &mut self,
        templates: &Templates,
        gate: &Option<TemplateRef>,
        setup: &Option<TemplateRef>,
        steps: &[PlanStep],
        vars: &IndexMap<String, serde_json::Value>,
        mission: &str,
    ) {
        let base = base_context(vars, mission);
        let no_matrix = IndexMap::new();
        let all: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        if let (Some(t), Some(value)) = (gate, &self.file.gate) {
            let mut ctx = base.clone();
            let mut everything = FixedBitSet::with_capacity(steps.len());
            everything.insert_range(..);
            ctx.push((
                "steps",
                Value::from_object(StepsContext {
                    keys: Arc::new(step_keys(steps)),
                    visible: Arc::new(everything),
                    values: Arc::new(HashMap::new()),
                    default: Some(template::placeholder_step()),
                }),
            ));
            let ctx = template::context(ctx);
            if let Err(e) = templates.render(&t.name, Flavor::Shell, &ctx) {
                self.render_error(&e, value, "gate", "", &ctx, vars, &no_matrix, &all);
            }
        }
        if let (Some(t), Some(value)) = (setup, &self.file.setup) {
            let ctx = template::context(base);
            if let Err(e) = templates.render(&t.name, Flavor::Shell, &ctx) {
                self.render_error(&e, value, "setup", "", &ctx, vars, &no_matrix, &all);
            }
        }
    }

    /// Explains a template that failed on the context it will have: which name is undefined,
    /// what it probably meant, or that a step is not upstream.
    #[allow(clippy::too_many_arguments)]
    fn render_error(
        &mut self,
        error: &minijinja::Error,
        value: &Spanned<String>,
        field: &str,
        step: &str,
        ctx: &Value,
        vars: &IndexMap<String, serde_json::Value>,
        matrix: &IndexMap<String, serde_json::Value>,
        all_ids: &[String],
    ) {
        let source = value.get_ref();
        // minijinja's detail names the whole undefined path (`steps.plan`); its range may
        // cover only the last part of it, so widen the range to the path where it is written.
        let named = error
            .detail()
            .and_then(|d| d.strip_prefix('`'))
            .and_then(|d| d.split_once('`'))
            .map(|(name, _)| name.to_owned());
        let range = match (error.range(), &named) {
            (Some(r), Some(name)) => {
                let window = r.start.saturating_sub(name.len() + 8)..r.end.min(source.len());
                source
                    .get(window.clone())
                    .and_then(|w| w.find(name.as_str()))
                    .map(|at| window.start + at..window.start + at + name.len())
                    .or(Some(r))
            }
            (r, _) => r,
        };
        let span = self.span_in(value, range.clone());
        let text = named.unwrap_or_else(|| {
            range
                .and_then(|r| source.get(r))
                .unwrap_or("")
                .trim()
                .to_owned()
        });
        let place = if step.is_empty() {
            format!("the mission's `{field}`")
        } else {
            format!("`{field}` of step `{step}`")
        };
        if error.kind() != minijinja::ErrorKind::UndefinedError {
            let detail = error
                .detail()
                .map_or_else(|| error.to_string(), str::to_owned);
            let (detail, help) = match detail.split_once(": use ") {
                Some((what, fix)) => (what.to_owned(), format!("use {fix}")),
                None => (
                    detail,
                    "fix the template so it renders with the values it will have".to_owned(),
                ),
            };
            self.push(
                MissionError::new(
                    ErrorKind::Template,
                    format!("template error in {place}: {detail}"),
                )
                .label(span, "fails here")
                .help(help),
            );
            return;
        }
        let path = name_path(&text);
        let after = error
            .range()
            .map_or("", |r| &source[r.end.min(source.len())..]);
        let (message, label, help, kind) = match path.as_slice() {
            [root, id, rest @ ..] if root == "steps" => {
                let visible = ctx
                    .get_attr("steps")
                    .ok()
                    .and_then(|s| s.get_attr(id).ok())
                    .is_some_and(|v| !v.is_undefined());
                let dashed = after.strip_prefix('-').map(|tail| {
                    let tail: String = tail
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                        .collect();
                    format!("{id}-{tail}")
                });
                if let Some(full) = dashed.filter(|f| all_ids.iter().any(|i| i == f)) {
                    (
                        format!("`steps.{full}` reads as `steps.{id} - ...`"),
                        "a step id with `-` needs brackets".to_owned(),
                        format!("write `steps[\"{full}\"]`"),
                        ErrorKind::UndefinedName,
                    )
                } else if visible {
                    let field = rest.first().cloned().unwrap_or_default();
                    (
                        format!("`steps.{id}` has no field `{field}`"),
                        "undefined".to_owned(),
                        did_you_mean(&field, STEP_FIELDS.iter().copied(), "a step's fields are"),
                        ErrorKind::UndefinedName,
                    )
                } else if all_ids.iter().any(|i| i == id) {
                    let fix = if step.is_empty() {
                        "the mission's templates see every step".to_owned()
                    } else {
                        format!(
                            "add \"{id}\" to `needs` of step `{step}`, so its result is there when `{step}` runs"
                        )
                    };
                    (
                        format!(
                            "step `{id}` is not upstream of {}",
                            if step.is_empty() {
                                "this template".to_owned()
                            } else {
                                format!("step `{step}`")
                            }
                        ),
                        format!("`{step}` does not need `{id}`"),
                        fix,
                        ErrorKind::NotUpstream,
                    )
                } else {
                    (
                        format!("no step `{id}`"),
                        "undefined".to_owned(),
                        did_you_mean(id, all_ids.iter().map(String::as_str), "the steps are"),
                        ErrorKind::UndefinedName,
                    )
                }
            }
            [root, name, ..] if root == "vars" => (
                format!("undefined var `vars.{name}` in {place}"),
                "undefined".to_owned(),
                match closest(name, vars.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `vars.{c}`?"),
                    None => format!("declare it under `[vars]`, e.g. `{name} = \"...\"`"),
                },
                ErrorKind::UndefinedName,
            ),
            [root, name, ..] if root == "matrix" => (
                format!("undefined matrix axis `matrix.{name}` in {place}"),
                "undefined".to_owned(),
                if matrix.is_empty() {
                    "this step has no `matrix`: add one, or remove the reference".to_owned()
                } else {
                    did_you_mean(name, matrix.keys().map(String::as_str), "the axes are")
                },
                ErrorKind::UndefinedName,
            ),
            [root, name, ..] if root == "failure" => (
                format!("`failure` has no field `{name}`"),
                "undefined".to_owned(),
                did_you_mean(name, FAILURE_FIELDS.iter().copied(), "its fields are"),
                ErrorKind::UndefinedName,
            ),
            [root, ..] if root == "failure" => (
                format!("`failure` is not defined in {place}"),
                "undefined here".to_owned(),
                "`failure` describes the last failed attempt: use it in `retry_prompt`".to_owned(),
                ErrorKind::UndefinedName,
            ),
            [root, ..] => {
                let mut names: Vec<&str> = CONTEXT_NAMES.to_vec();
                if field == "retry_prompt" {
                    names.push("failure");
                }
                (
                    format!("undefined name `{text}` in {place}"),
                    "undefined".to_owned(),
                    did_you_mean(root, names.iter().copied(), "a template sees"),
                    ErrorKind::UndefinedName,
                )
            }
            [] => (
                format!("undefined value in {place}"),
                "undefined".to_owned(),
                format!(
                    "a template sees {}",
                    CONTEXT_NAMES
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ErrorKind::UndefinedName,
            ),
        };
        self.push(
            MissionError::new(kind, message)
                .label(span, label)
                .help(help),
        );
    }
}

fn base_context(
    vars: &IndexMap<String, serde_json::Value>,
    mission: &str,
) -> Vec<(&'static str, Value)> {
    vec![
        ("vars", Value::from(minijinja::value::Serde(vars))),
        ("mission", template::map([("name", Value::from(mission))])),
        (
            "run",
            template::map([
                ("id", Value::from("<run id>")),
                ("base", Value::from("<base commit>")),
            ]),
        ),
        ("attempt", Value::from(1)),
        ("file", template::file_function(|_| Ok(String::new()))),
    ]
}

/// `steps["a-b"].diff` -> [steps, a-b, diff]; `vars.x` -> [vars, x].
fn name_path(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    let ident = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let n = ident(rest);
    if n == 0 {
        return parts;
    }
    parts.push(rest[..n].to_owned());
    rest = &rest[n..];
    loop {
        if let Some(r) = rest.strip_prefix('.') {
            let n = ident(r);
            if n == 0 {
                break;
            }
            parts.push(r[..n].to_owned());
            rest = &r[n..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            let Some(q) = r.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                break;
            };
            let Some(end) = r[1..].find(q) else { break };
            parts.push(r[1..1 + end].to_owned());
            let Some(close) = r[1 + end..].find(']') else {
                break;
            };
            rest = &r[1 + end + close + 1..];
        } else {
            break;
        }
    }
    parts
}

fn is_scalar(v: &serde_json::Value) -> bool {
    matches!(
        v,
        serde_json::Value::String(_) | serde_json::Value::Number(_) | serde_json::Value::Bool(_)
    )
}

const ID_RULE: &str =
    "ids use lower-case letters, digits, `_` and `-`, and start with a letter or digit";

fn id_help(id: &str) -> String {
    format!("{ID_RULE}: e.g. `{}`", to_id(id))
}

fn template_ref(field: &str, value: &Spanned<String>) -> TemplateRef {
    let _ = field;
    TemplateRef {
        name: format!("t{}", value.span().start),
        source: value.get_ref().clone(),
    }
}

/// The span of the matrix values that make up a child (its first axis value), for labels.
/// How many children a matrix expands to (axes that are not lists count as one; they are
/// reported when expanded).
fn matrix_size(matrix: &IndexMap<String, Spanned<serde_json::Value>>) -> u64 {
    matrix
        .values()
        .fold(1u64, |n, values| match values.get_ref() {
            serde_json::Value::Array(items) => n.saturating_mul(items.len() as u64),
            _ => n,
        })
}

/// The start of a long id, for messages.
fn shorten(id: &str) -> String {
    match id.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_owned(),
    }
}

fn child_span(step: &Spanned<Step>, values: &IndexMap<String, serde_json::Value>) -> Range<usize> {
    let Some(matrix) = &step.get_ref().matrix else {
        return step.span();
    };
    for (axis, spanned) in matrix.get_ref() {
        if values.contains_key(axis) {
            return spanned.span();
        }
    }
    matrix.span()
}

/// The byte offset of a TOML string's content from the start of its span, when the content is
/// written exactly as it decodes (no escapes), so template offsets map onto the file.
fn content_offset(source: &str, value: &Spanned<String>) -> Option<usize> {
    let raw = source.get(value.span())?;
    let decoded = value.get_ref();
    for delim in ["\"\"\"", "'''", "\"", "'"] {
        if raw.starts_with(delim) && raw.ends_with(delim) && raw.len() >= 2 * delim.len() {
            let mut offset = delim.len();
            let mut content = &raw[delim.len()..raw.len() - delim.len()];
            if delim.len() == 3 {
                if let Some(c) = content.strip_prefix("\r\n") {
                    content = c;
                    offset += 2;
                } else if let Some(c) = content.strip_prefix('\n') {
                    content = c;
                    offset += 1;
                }
            }
            return (content == decoded).then_some(offset);
        }
    }
    None
}

/// The ids a template may write after `steps.`: every concrete step, and every matrix step.
pub fn step_keys(steps: &[PlanStep]) -> StepKeys {
    let mut keys: IndexMap<String, Vec<usize>> = IndexMap::new();
    for (i, step) in steps.iter().enumerate() {
        keys.entry(step.id.clone()).or_default().push(i);
        if step.declared != step.id {
            keys.entry(step.declared.clone()).or_default().push(i);
        }
    }
    StepKeys { keys }
}

/// The steps upstream of each step (its needs, transitively), as bitsets over plan indices.
pub struct Upstream {
    pub keys: Arc<StepKeys>,
    sets: Vec<Arc<FixedBitSet>>,
}

impl Upstream {
    /// With a topological `order`, each set is the union of its needs' sets, in one pass;
    /// without one (a cycle, already reported), a search from each step.
    pub fn new(steps: &[PlanStep], order: Option<&[usize]>) -> Upstream {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let needs = |i: usize| {
            steps[i]
                .needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect::<Vec<_>>()
        };
        let n = steps.len();
        let mut sets: Vec<FixedBitSet> = vec![FixedBitSet::with_capacity(n); n];
        match order {
            Some(order) => {
                for &i in order {
                    let mut set = FixedBitSet::with_capacity(n);
                    for j in needs(i) {
                        set.insert(j);
                        set.union_with(&sets[j]);
                    }
                    sets[i] = set;
                }
            }
            None => {
                for (i, set) in sets.iter_mut().enumerate() {
                    let mut stack = needs(i);
                    while let Some(j) = stack.pop() {
                        if !set.put(j) {
                            stack.extend(needs(j));
                        }
                    }
                }
            }
        }
        Upstream {
            keys: Arc::new(step_keys(steps)),
            sets: sets.into_iter().map(Arc::new).collect(),
        }
    }

    /// The steps upstream of step `i`.
    pub fn of(&self, i: usize) -> Arc<FixedBitSet> {
        self.sets[i].clone()
    }
}

/// Applies `--set name=value`, converting to the declared var's type.
fn apply_sets(
    vars: &mut IndexMap<String, serde_json::Value>,
    sets: &[(String, String)],
) -> Result<(), SetError> {
    for (name, text) in sets {
        let Some(current) = vars.get(name) else {
            return Err(SetError::Unknown {
                name: name.clone(),
                declared: vars.keys().cloned().collect(),
            });
        };
        let bad = |expected: &'static str, example: &str| SetError::BadValue {
            name: name.clone(),
            value: text.clone(),
            expected,
            example: example.to_owned(),
        };
        let value = match current {
            serde_json::Value::Bool(_) => match text.as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => return Err(bad("a boolean", "true")),
            },
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| bad("a whole number", "3"))?,
            serde_json::Value::Number(_) => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| bad("a number", "1.5"))?,
            serde_json::Value::Array(_) => serde_json::Value::Array(
                text.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| serde_json::Value::String(s.trim().to_owned()))
                    .collect(),
            ),
            _ => serde_json::Value::String(text.clone()),
        };
        vars.insert(name.clone(), value);
    }
    Ok(())
}

/// Kahn's algorithm over concrete steps, always taking the earliest-written ready step, so the
/// order is deterministic and follows the file where it can. Assumes no cycle.
pub fn topological_order(steps: &[PlanStep]) -> Vec<usize> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(steps.len(), steps.len());
    for _ in steps {
        graph.add_node(());
    }
    for (i, s) in steps.iter().enumerate() {
        for n in &s.needs {
            if let Some(&j) = index.get(n.as_str()) {
                graph.update_edge(NodeIndex::new(j), NodeIndex::new(i), ());
            }
        }
    }
    let mut indegree: Vec<usize> = (0..steps.len())
        .map(|i| {
            graph
                .neighbors_directed(NodeIndex::new(i), petgraph::Incoming)
                .count()
        })
        .collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(steps.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors_directed(NodeIndex::new(i), petgraph::Outgoing) {
            let d = &mut indegree[next.index()];
            *d -= 1;
            if *d == 0 {
                ready.push(std::cmp::Reverse(next.index()));
            }
        }
    }
    order
}

/// Every elementary cycle's representative, one per strongly connected component: each node
/// of a returned cycle needs the next, and the last needs the first.
pub fn find_cycles(nodes: usize, needs: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(nodes, needs.len());
    for _ in 0..nodes {
        graph.add_node(());
    }
    for &(from, to) in needs {
        graph.update_edge(NodeIndex::new(from), NodeIndex::new(to), ());
    }
    let mut cycles = Vec::new();
    let mut sccs = petgraph::algo::tarjan_scc(&graph);
    sccs.iter_mut().for_each(|c| c.sort());
    sccs.sort_by_key(|c| c[0]);
    for scc in sccs {
        let start = scc[0];
        if scc.len() == 1 {
            if graph.contains_edge(start, start) {
                cycles.push(vec![start.index()]);
            }
            continue;
        }
        // Shortest path from start back to start within the component (BFS, lowest ids first).
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut end = None;
        'bfs: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> =
                graph.neighbors(n).filter(|m| members.contains(m)).collect();
            next.sort();
            for m in next {
                if m == start {
                    end = Some(n);
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                    e.insert(n);
                    queue.push_back(m);
                }
            }
        }
        let Some(mut at) = end else { continue };
        let mut path = vec![at.index()];
        while at != start {
            at = prev[&at];
            path.push(at.index());
        }
        path.reverse();
        cycles.push(path);
    }
    cycles
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use proptest::prelude::{
        Just, ProptestConfig, Strategy as _, prop_assert, prop_assert_eq, proptest,
    };

    use super::{CompileError, CompileOptions, HashMap, Mission, compile};
    use crate::mission::ErrorKind;

    /// A mission whose step `s<i>` needs `s<j>` for each edge (i, j).
    fn mission_text(nodes: usize, edges: &[(usize, usize)]) -> String {
        let mut text = String::new();
        for i in 0..nodes {
            let needs: Vec<String> = edges
                .iter()
                .filter(|(from, _)| *from == i)
                .map(|(_, to)| format!("\"s{to}\""))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            text.push_str(&format!(
                "[steps.s{i}]\nrun = \"true\"\nneeds = [{}]\n\n",
                needs.join(", ")
            ));
        }
        text
    }

    /// An independent check: does the needs graph have a cycle? (DFS with colours.)
    fn has_cycle(nodes: usize, edges: &[(usize, usize)]) -> bool {
        fn visit(n: usize, edges: &[(usize, usize)], colour: &mut [u8]) -> bool {
            colour[n] = 1;
            for &(_, to) in edges.iter().filter(|(from, _)| *from == n) {
                if colour[to] == 1 || (colour[to] == 0 && visit(to, edges, colour)) {
                    return true;
                }
            }
            colour[n] = 2;
            false
        }
        let mut colour = vec![0u8; nodes];
        (0..nodes).any(|n| colour[n] == 0 && visit(n, edges, &mut colour))
    }

    fn graphs() -> impl proptest::strategy::Strategy<Value = (usize, Vec<(usize, usize)>)> {
        (1usize..14).prop_flat_map(|n| (Just(n), proptest::collection::vec((0..n, 0..n), 0..n * 2)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn order_respects_needs_and_cycles_are_real((nodes, edges) in graphs()) {
            let text = mission_text(nodes, &edges);
            let mission = Mission::parse(Path::new("p.toml"), text).expect("a well-formed mission");
            match compile(&mission, &CompileOptions::default()) {
                Ok(plan) => {
                    prop_assert!(!has_cycle(nodes, &edges));
                    prop_assert_eq!(plan.steps.len(), nodes);
                    let position: HashMap<&str, usize> =
                        plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
                    for (i, step) in plan.steps.iter().enumerate() {
                        for need in &step.needs {
                            prop_assert!(position[need.as_str()] < i, "{} before {}", need, step.id);
                        }
                    }
                }
                Err(CompileError::Mission(errors)) => {
                    prop_assert!(has_cycle(nodes, &edges));
                    let needs: HashSet<(String, String)> = edges
                        .iter()
                        .map(|(a, b)| (format!("s{a}"), format!("s{b}")))
                        .collect();
                    let mut cycles = 0;
                    for kind in errors.kinds() {
                        let ErrorKind::Cycle(cycle) = kind else {
                            prop_assert!(false, "unexpected error {:?}", kind);
                            continue;
                        };
                        cycles += 1;
                        for (k, step) in cycle.iter().enumerate() {
                            let next = &cycle[(k + 1) % cycle.len()];
                            prop_assert!(needs.contains(&(step.clone(), next.clone())), "{step} does not need {next}");
                        }
                        let distinct: HashSet<&String> = cycle.iter().collect();
                        prop_assert_eq!(distinct.len(), cycle.len(), "a cycle visits each step once");
                    }
                    prop_assert!(cycles > 0);
                }
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }

    #[test]
    fn order_is_deterministic_and_follows_the_file() {
        let text = "[steps.c]\nrun = \"true\"\nneeds = [\"a\"]\n[steps.b]\nrun = \"true\"\n[steps.a]\nrun = \"true\"\n";
        let mission = Mission::parse(Path::new("o.toml"), text.to_owned()).unwrap();
        let plan = compile(&mission, &CompileOptions::default()).unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
    }
}
