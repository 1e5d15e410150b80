//! Preflight: before anything starts, every agent step has an agent of its chain installed,
//! and with a budget every agent the plan may call has a cost medley can know.

use indexmap::IndexMap;

use super::agent::{program_of, which};
use crate::mission::Runtime;
use crate::plan::Plan;

/// What stops a run before it starts (exit 2).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PreflightError {
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    NotInstalled { message: String, help: String },
    #[error("`budget_usd` is set, but medley cannot know what {} cost", .agents.join(", "))]
    #[diagnostic(help("their CLIs report no cost: give each profile a price, e.g. `[agents.{}] price = {{ input_per_mtok = 1.25, output_per_mtok = 10.0 }}`", .first))]
    Unpriced { agents: Vec<String>, first: String },
}

/// The version each CLI's adapter was verified against (`shared/samples/`), if it was.
pub fn tested_version(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Claude => Some("2.1.330"),
        Runtime::Codex => Some("0.169.0"),
        Runtime::Gemini => Some("0.61.0"),
        Runtime::Qwen => Some("0.24.4"),
        Runtime::Cursor | Runtime::Kimi | Runtime::Command => None,
    }
}

/// How to install each runtime's CLI.
pub fn install_hint(runtime: Runtime) -> &'static str {
    crate::agent::adapter(runtime).install_hint()
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
}

/// Every CLI runtime: found on PATH or not, its version and path.
pub fn agent_status() -> Vec<AgentStatus> {
    Runtime::ALL
        .into_iter()
        .filter(|r| *r != Runtime::Command)
        .map(|runtime| {
            let adapter = crate::agent::adapter(runtime);
            let path = which(adapter.binary());
            AgentStatus {
                runtime,
                binary: adapter.binary().to_owned(),
                version: path.as_deref().and_then(|p| version(p).ok()),
                path,
                verified: adapter.verified(),
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
    let mtime = fs_err::metadata(binary)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let stamp = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    let key = format!("{}|{stamp}", binary.display());
    let cache = dirs::cache_dir().map(|d| d.join("medley").join("versions.json"));
    let mut known: std::collections::BTreeMap<String, String> = cache
        .as_ref()
        .and_then(|c| fs_err::read_to_string(c).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(v) = known.get(&key) {
        return Ok(v.clone());
    }
    // A probe that failed is not tried again by this process (it may have taken the timeout).
    static FAILED: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    if let Some(why) = FAILED.lock().ok().and_then(|f| f.get(&key).cloned()) {
        return Err(why);
    }
    let probed = probe(binary);
    if let (Err(why), Ok(mut failed)) = (&probed, FAILED.lock()) {
        failed.insert(key.clone(), why.clone());
    }
    let found = probed?;
    known.insert(key, found.clone());
    if let Some(cache) = cache {
        if let Some(dir) = cache.parent() {
            let _ = fs_err::create_dir_all(dir);
        }
        if let Ok(json) = serde_json::to_string_pretty(&known) {
            let _ = fs_err::write(cache, json);
        }
    }
    Ok(found)
}

/// Runs `<binary> --version` and finds the version in what it prints.
fn probe(binary: &std::path::Path) -> Result<String, String> {
    let child = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let pid = child.id();
    // The child is waited for on a thread of its own, and killed if it takes too long.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(VERSION_TIMEOUT) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return Err(format!(
                "it did not answer within {}",
                crate::plan::duration_text::format(VERSION_TIMEOUT)
            ));
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    first_version(&text).ok_or_else(|| {
        if output.status.success() {
            "its output holds no version number".to_owned()
        } else {
            format!("it failed ({})", output.status)
        }
    })
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
