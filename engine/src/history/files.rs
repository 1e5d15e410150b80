//! The files a run wrote for each step: its logs (setup, command, gate, agent stream) and the
//! prompts it sent, in the order they were written.

use std::path::{Path, PathBuf};

use crate::journal;

/// A step's log files, in the order they were written.
pub fn log_files(git_dir: &Path, run: &str, step: &str) -> Vec<PathBuf> {
    let dir = journal::runs_dir(git_dir).join(run).join("logs").join(step);
    let list = |dir: &Path| -> Vec<PathBuf> {
        fs_err::read_dir(dir)
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    // A merge agent's logs are in `merge/`, and came first.
    let merge = dir.join("merge");
    let mut files: Vec<PathBuf> = list(&dir).into_iter().filter(|p| *p != merge).collect();
    files.extend(list(&merge));
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let merged = p.parent() != Some(dir.as_path());
        let attempt: u32 = name
            .split('.')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let kind = match name.split('.').next() {
            Some("setup") => 0,
            Some("run") => 1,
            Some("gate") => 2,
            _ => 3,
        };
        (!merged, attempt, kind, name)
    });
    files
}

/// What a file a step's attempt wrote holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WrittenKind {
    /// A prompt sent to an agent, verbatim (not masked: the archive keeps what was sent).
    Prompt,
    /// Output: setup's, the command's, the gate's, the agent's stream.
    Log,
}

/// A file of a step: a log or a prompt sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub kind: WrittenKind,
    /// The attempt it belongs to (0 when its name says none).
    pub attempt: u32,
    /// For a prompt: the agent profile it was sent to.
    pub agent: Option<String>,
    pub path: PathBuf,
}

/// A step's prompts and logs, each attempt's prompt before that attempt's logs.
pub fn written_files(git_dir: &Path, run: &str, step: &str) -> Vec<Written> {
    let attempt_of = |p: &Path| -> u32 {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut all: Vec<Written> = Vec::new();
    // Prompts are `<step>.<attempt>.<agent>.txt`; a matrix child's id has dots of its own.
    let prompts = journal::runs_dir(git_dir).join(run).join("prompts");
    let prefix = format!("{step}.");
    let mut sent: Vec<Written> = fs_err::read_dir(&prompts)
        .map(|e| e.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            let rest = name.strip_prefix(&prefix)?.strip_suffix(".txt")?;
            let (attempt, agent) = rest.split_once('.')?;
            Some(Written {
                kind: WrittenKind::Prompt,
                attempt: attempt.parse().ok()?,
                agent: Some(agent.to_owned()),
                path,
            })
        })
        .collect();
    sent.sort_by(|a, b| (a.attempt, &a.agent).cmp(&(b.attempt, &b.agent)));
    let logs = log_files(git_dir, run, step);
    let mut logs = logs.into_iter().peekable();
    for prompt in sent {
        while let Some(log) = logs.next_if(|l| attempt_of(l) < prompt.attempt) {
            all.push(Written {
                kind: WrittenKind::Log,
                attempt: attempt_of(&log),
                agent: None,
                path: log,
            });
        }
        all.push(prompt);
    }
    for log in logs {
        all.push(Written {
            kind: WrittenKind::Log,
            attempt: attempt_of(&log),
            agent: None,
            path: log,
        });
    }
    all
}

/// The secret values a run masks (see [`crate::secrets`]), from the mission it recorded when it
/// started, with `env` for the variables it names: for showing its prompts, which the archive
/// keeps unmasked. Empty when the record is gone or no longer compiles.
pub fn run_secrets(git_dir: &Path, run: &str, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let path = journal::runs_dir(git_dir).join(run).join("run.json");
    let Ok(text) = fs_err::read_to_string(&path) else {
        return Vec::new();
    };
    let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let (Some(mission_path), Some(source)) = (
        record["mission_path"].as_str(),
        record["mission_source"].as_str(),
    ) else {
        return Vec::new();
    };
    let sets: Vec<(String, String)> =
        serde_json::from_value(record["sets"].clone()).unwrap_or_default();
    let Ok(mission) = crate::mission::Mission::parse(Path::new(mission_path), source.to_owned())
    else {
        return Vec::new();
    };
    let options = crate::plan::PlanOptions {
        sets,
        ..crate::plan::PlanOptions::default()
    };
    match crate::plan::compile(&mission, &options) {
        Ok(plan) => crate::secrets::values(&plan, env),
        Err(_) => Vec::new(),
    }
}
