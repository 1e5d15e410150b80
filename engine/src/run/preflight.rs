//! Preflight: before anything starts, every agent step has an agent of its chain installed,
//! and with a budget every agent the plan may call has a cost medley can know.

use indexmap::IndexMap;

use super::program::{program_of, which};
use crate::mission::Runtime;
use crate::plan::Plan;

/// What stops a run before it starts (exit 2).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PreflightError {
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    NotInstalled { message: String, help: String },
    #[error("{message}")]
    #[diagnostic(help("fix the installation, or take the agent out of the mission's chains"))]
    CannotStart { message: String },
    #[error("`budget_usd` is set, but medley cannot know what {} cost", .agents.join(", "))]
    #[diagnostic(help("their CLIs report no cost: give each profile a price, e.g. `[agents.{}] price = {{ input_per_mtok = 1.25, output_per_mtok = 10.0 }}`", .first))]
    Unpriced { agents: Vec<String>, first: String },
}

/// The version each CLI's adapter was verified against (`shared/samples/`), if it was.
pub fn tested_version(runtime: Runtime) -> Option<&'static str> {
    crate::agent::adapter(runtime).description().tested_version
}

/// How to install each runtime's CLI.
pub fn install_hint(runtime: Runtime) -> &'static str {
    crate::agent::adapter(runtime).install_hint()
}

/// A plan whose agents were checked: what [`super::run`] takes, so a run checks them once.
#[derive(Debug)]
pub struct Checked {
    plan: Plan,
    /// Agents missing later in a chain (their steps run with the others).
    pub warnings: Vec<String>,
}

impl Checked {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn into_plan(self) -> Plan {
        self.plan
    }
}

/// Checks the plan's agents (it may run their `--version`).
pub fn check(plan: Plan) -> Result<Checked, PreflightError> {
    let warnings = preflight(&plan)?;
    Ok(Checked { plan, warnings })
}

/// Checks the plan's agents; returns warnings (agents missing later in a chain, skipped).
pub fn preflight(plan: &Plan) -> Result<Vec<String>, PreflightError> {
    let mut warnings = Vec::new();
    let mut missing: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut hints: IndexMap<String, String> = IndexMap::new();
    for step in &plan.steps {
        let chain = step.agents();
        if chain.is_empty() {
            continue;
        }
        let mut any = false;
        let mut absent = Vec::new();
        for name in chain {
            let Some(profile) = plan.agents.get(name) else {
                continue;
            };
            let program = program_of(profile);
            if which(&program).is_some() {
                any = true;
            } else {
                hints.insert(program.clone(), install_hint(profile.runtime).to_owned());
                absent.push((name.clone(), program));
            }
        }
        if any {
            for (name, program) in absent {
                warnings.push(format!(
                    "step `{}`: agent `{name}` is not installed (`{program}` is not on PATH), so the chain skips it",
                    step.id
                ));
            }
        } else {
            missing.insert(
                step.id.clone(),
                absent.into_iter().map(|(_, p)| p).collect(),
            );
        }
    }
    // A merge agent runs only on a conflict: one that is not installed is a warning.
    let merges = plan
        .steps
        .iter()
        .filter_map(|s| Some((format!("step `{}`", s.id), s.merge.as_ref()?)))
        .chain(
            plan.merge
                .as_ref()
                .map(|m| ("the final merge".to_owned(), m)),
        );
    for (place, merge) in merges {
        for name in &merge.agents {
            let Some(profile) = plan.agents.get(name) else {
                continue;
            };
            let program = program_of(profile);
            if which(&program).is_none() {
                warnings.push(format!(
                    "{place}: merge agent `{name}` is not installed (`{program}` is not on PATH), so it cannot resolve a conflict there"
                ));
            }
        }
    }
    // An installed CLI that cannot run prompts at all (the legacy kimi stub, a Node too old).
    let mut broken: Vec<String> = Vec::new();
    let mut probed: Vec<String> = Vec::new();
    for profile in plan
        .steps
        .iter()
        .flat_map(|s| s.agents())
        .filter_map(|a| plan.agents.get(a))
    {
        let program = program_of(profile);
        if probed.contains(&program) {
            continue;
        }
        probed.push(program.clone());
        if let Some(path) = which(&program)
            && let Some(problem) = cannot_start(profile.runtime, &path)
        {
            broken.push(problem);
        }
    }
    if !broken.is_empty() {
        return Err(PreflightError::CannotStart {
            message: broken.join("; "),
        });
    }
    // A CLI of another version than the adapter was verified against may print other events.
    let mut checked: Vec<Runtime> = Vec::new();
    for profile in plan
        .steps
        .iter()
        .flat_map(|s| s.agents())
        .filter_map(|a| plan.agents.get(a))
    {
        let runtime = profile.runtime;
        if checked.contains(&runtime) {
            continue;
        }
        checked.push(runtime);
        let (Some(tested), Some(path)) = (tested_version(runtime), which(&program_of(profile)))
        else {
            continue;
        };
        match version(&path) {
            Ok(found) if found != tested => warnings.push(format!(
                "`{}` is version {found}; medley's {} adapter was verified against {tested}, so check its results",
                program_of(profile),
                runtime.name()
            )),
            Ok(_) => {}
            Err(why) => warnings.push(format!(
                "cannot learn the version of `{}` (`--version`): {why}; medley's {} adapter was verified against {tested}, so check its results",
                program_of(profile),
                runtime.name()
            )),
        }
    }
    warnings.dedup();
    if !missing.is_empty() {
        let steps: Vec<String> = missing
            .iter()
            .map(|(step, programs)| {
                let list: Vec<String> = programs.iter().map(|p| format!("`{p}`")).collect();
                format!("`{step}` needs {}", list.join(" or "))
            })
            .collect();
        let help: Vec<String> = hints.iter().map(|(p, h)| format!("`{p}`: {h}")).collect();
        return Err(PreflightError::NotInstalled {
            message: format!("no agent of the chain is installed: {}", steps.join("; ")),
            help: format!("install one (it must be on PATH): {}", help.join("; ")),
        });
    }
    if plan.budget_usd.is_some() {
        let used: Vec<&String> = plan.steps.iter().flat_map(|s| s.agents()).collect();
        let mut unpriced: Vec<String> = Vec::new();
        for name in used {
            let Some(profile) = plan.agents.get(name) else {
                continue;
            };
            // Of the CLIs, only Claude Code reports what a call cost.
            if profile.runtime != Runtime::Claude
                && profile.price.is_none()
                && !unpriced.contains(name)
            {
                unpriced.push(name.clone());
            }
        }
        if let Some(first) = unpriced.first().cloned() {
            return Err(PreflightError::Unpriced {
                agents: unpriced.iter().map(|a| format!("`{a}`")).collect(),
                first,
            });
        }
    }
    Ok(warnings)
}

/// One runtime, as `medley agents` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    pub runtime: Runtime,
    pub binary: String,
    pub path: Option<std::path::PathBuf>,
    pub version: Option<String>,
    /// Whether the adapter was checked against the real CLI's captured output.
    pub verified: bool,
    /// Why the installed CLI cannot run prompts (see [`cannot_start`]).
    pub problem: Option<String>,
}

/// Every CLI runtime: found on PATH or not, its version and path.
pub fn agent_status() -> Vec<AgentStatus> {
    Runtime::ALL
        .into_iter()
        .filter(|r| *r != Runtime::Command)
        .map(|runtime| {
            let adapter = crate::agent::adapter(runtime);
            let path = which(adapter.binary());
            let problem = path.as_deref().and_then(|p| cannot_start(runtime, p));
            AgentStatus {
                runtime,
                binary: adapter.binary().to_owned(),
                version: if problem.is_some() {
                    None
                } else {
                    path.as_deref().and_then(|p| version(p).ok())
                },
                path,
                verified: adapter.verified(),
                problem,
            }
        })
        .collect()
}

/// How long a `--version` may take.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `<binary> --version`, first `x.y.z` of its output; looked up once per binary path and mtime
/// (cached in the user's cache dir: node CLIs take about a second to start). Blocking: call
/// it off the async runtime. The error says why no version could be learnt.
pub fn version(binary: &std::path::Path) -> Result<String, String> {
    let key = stamp(binary)?;
    if let Some(v) = cached(&key) {
        return Ok(v);
    }
    // A probe that failed is not tried again by this process (it may have taken the timeout).
    static FAILED: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    if let Some(why) = FAILED.lock().ok().and_then(|f| f.get(&key).cloned()) {
        return Err(why);
    }
    let probed = probe_version(binary);
    if let (Err(why), Ok(mut failed)) = (&probed, FAILED.lock()) {
        failed.insert(key.clone(), why.clone());
    }
    let found = probed?;
    remember(key, &found);
    Ok(found)
}

/// A binary's path and modification time: what its cached facts are keyed by.
fn stamp(binary: &std::path::Path) -> Result<String, String> {
    let mtime = fs_err::metadata(binary)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let nanos = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    Ok(format!("{}|{nanos}", binary.display()))
}

/// The cache of facts about CLI binaries (`<cache>/medley/versions.json`).
fn cache_file() -> Option<std::path::PathBuf> {
    dirs::cache_dir().map(|d| d.join("medley").join("versions.json"))
}

fn cache_entries() -> std::collections::BTreeMap<String, String> {
    cache_file()
        .and_then(|c| fs_err::read_to_string(c).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn cached(key: &str) -> Option<String> {
    cache_entries().remove(key)
}

fn remember(key: String, value: &str) {
    let Some(cache) = cache_file() else { return };
    let mut known = cache_entries();
    known.insert(key, value.to_owned());
    if let Some(dir) = cache.parent() {
        let _ = fs_err::create_dir_all(dir);
    }
    if let Ok(json) = serde_json::to_string_pretty(&known) {
        let _ = fs_err::write(cache, json);
    }
}

/// Runs `<binary> --version` (see [`probe`]) and finds the version in what it prints.
fn probe_version(binary: &std::path::Path) -> Result<String, String> {
    let (succeeded, stdout, _) = probe(binary, &["--version"]).ok_or_else(|| {
        format!(
            "it could not be started, or did not answer within {}",
            crate::plan::duration_text::format(VERSION_TIMEOUT)
        )
    })?;
    first_version(&stdout).ok_or_else(|| {
        if succeeded {
            "its output holds no version number".to_owned()
        } else {
            "it failed".to_owned()
        }
    })
}

/// Why an installed CLI cannot run prompts: for kimi, the legacy Python stub or a Node too old
/// for Kimi Code, told by running `kimi --version` (and `node --version`). `None` for the
/// others, and when it can.
pub fn cannot_start(runtime: Runtime, path: &std::path::Path) -> Option<String> {
    if runtime != Runtime::Kimi {
        return None;
    }
    // A binary that could start is not asked again until it changes (Kimi Code takes a while
    // to start); a problem is looked at again every time, since fixing it is the user's next
    // step.
    let key = stamp(path).ok().map(|s| format!("starts|{s}"));
    if key.as_deref().and_then(cached).is_some() {
        return None;
    }
    let (succeeded, stdout, stderr) = probe(path, &["--version"])?;
    let node = || {
        which("node")
            .and_then(|node| probe(&node, &["--version"]))
            .map(|(_, out, _)| out)
    };
    let node = if succeeded { None } else { node() };
    let problem =
        crate::agent::kimi::startup_problem(path, succeeded, &stdout, &stderr, node.as_deref());
    if problem.is_none()
        && let Some(key) = key
    {
        remember(key, "yes");
    }
    problem
}

/// Runs `binary ARGS` with stdin from `/dev/null` for at most [`VERSION_TIMEOUT`]: whether it exited 0, its
/// stdout and stderr. `None` when it cannot be started or does not finish in time.
fn probe(binary: &std::path::Path, args: &[&str]) -> Option<(bool, String, String)> {
    let child = crate::git::env::scrub(&mut std::process::Command::new(binary))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(VERSION_TIMEOUT) {
        Ok(Ok(out)) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
        Ok(Err(_)) => None,
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            None
        }
    }
}

/// The first `\d+\.\d+\.\d+` in `text`.
fn first_version(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for start in 0..bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_digit()) {
            continue;
        }
        let mut parts = 0;
        let mut end = start;
        loop {
            let digits = bytes[end..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 {
                break;
            }
            end += digits;
            parts += 1;
            if parts == 3 || bytes.get(end) != Some(&b'.') {
                break;
            }
            end += 1;
        }
        if parts == 3 {
            return Some(text[start..end].to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_first_version() {
        assert_eq!(
            super::first_version("2.1.330 (Claude Code)").as_deref(),
            Some("2.1.330")
        );
        assert_eq!(
            super::first_version("codex-cli 0.169.0\n").as_deref(),
            Some("0.169.0")
        );
        assert_eq!(
            super::first_version("v1.2 then 3.4.5").as_deref(),
            Some("3.4.5")
        );
        assert_eq!(super::first_version("none"), None);
    }
}
