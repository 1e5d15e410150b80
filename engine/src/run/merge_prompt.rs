//! The prompt a merge agent gets: the `merge.prompt` (rendered in its step's context, or the
//! final gate's) or a default one, then medley's account of the conflict: the conflicting
//! files, the steps on each side, and for each step what it was asked to do, its final
//! message and its changes against the common base.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use git2::Oid;

use super::blocking;
use super::context::render;
use super::state::{Scope, Shared};
use crate::git::Sides;
use crate::plan::{Action, Flavor, MergeSpec};

/// The most of one step's diff the prompt quotes.
const DIFF_BYTES: usize = 20_000;

/// What the agent is asked when the `merge` has no `prompt`.
const DEFAULT: &str = "The results of parallel steps conflict. Resolve the conflict in this \
working tree: edit each conflicting file so that it keeps what both sides meant to do, and \
remove every conflict marker (`<<<<<<<`, `=======`, `>>>>>>>`). Change nothing else.";

/// The merge agent's prompt for the conflict of `sides` in `files`.
pub(crate) async fn build(
    shared: &Arc<Shared>,
    scope: Scope,
    spec: &MergeSpec,
    files: &[String],
    sides: &Sides,
) -> Result<String, String> {
    let head = match &spec.prompt {
        Some(t) => render(shared, scope, t, Flavor::Text, 1, shared.base, None)
            .await
            .map_err(|e| format!("cannot render `merge.prompt`: {e}"))?,
        None => DEFAULT.to_owned(),
    };
    let asked = first_prompts(shared, sides).await;
    let shared = shared.clone();
    let (files, sides) = (files.to_vec(), sides.clone());
    let gate = spec.gate.as_ref().map(|g| g.source.clone());
    blocking(move || account(&shared, head, gate, &files, &sides, &asked)).await
}

/// The first prompt of each agent step on either side: the one it was sent in this run, or,
/// for a step that did not run in this run (its result cached or kept), its prompt rendered as
/// its first attempt's would be, on its base. So the merge prompt is the same whether the
/// steps ran or were reused, and a cached resolution of it can be found again.
async fn first_prompts(shared: &Arc<Shared>, sides: &Sides) -> HashMap<String, String> {
    let mut asked = HashMap::new();
    let mut steps = sides.first_side();
    steps.push(sides.theirs_step.clone());
    for id in steps {
        let Some(i) = shared.plan.steps.iter().position(|s| s.id == id) else {
            continue;
        };
        let Action::Agent { prompt, .. } = &shared.plan.steps[i].action else {
            continue;
        };
        if let Some(sent) = archived_prompt(shared, &id) {
            asked.insert(id, sent);
            continue;
        }
        let base = shared
            .records
            .lock()
            .ok()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|r| r.base);
        if let Some(base) = base
            && let Ok(text) =
                render(shared, Scope::Step(i), prompt, Flavor::Text, 1, base, None).await
        {
            asked.insert(id, text);
        }
    }
    asked
}

fn account(
    shared: &Shared,
    head: String,
    gate: Option<String>,
    files: &[String],
    sides: &Sides,
    asked: &HashMap<String, String>,
) -> String {
    let mut text = head;
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        text,
        "\n\n# The conflict\n\nmedley merged the results of {} with the result of `{}`, and they \
         change the same lines of these files, which now hold git's conflict markers \
         (`<<<<<<< {}` for the first side, `>>>>>>> {}` for the second):\n\n",
        quoted(&sides.first_side()),
        sides.theirs_step,
        sides.ours_label(),
        sides.theirs_step,
    );
    for file in files {
        let _ = writeln!(text, "- `{file}`");
    }
    text.push_str(
        "\nThe resolution is accepted when no conflicting file has a conflict block left",
    );
    if let Some(gate) = &gate {
        let _ = write!(text, " and `{gate}` passes");
    }
    text.push_str(".\n");
    let sides_list = [
        ("first", sides.first_side()),
        ("second", vec![sides.theirs_step.clone()]),
    ];
    for (which, steps) in sides_list {
        let _ = write!(text, "\n# The {which} side: {}\n", quoted(&steps));
        for step in &steps {
            describe(shared, &mut text, step, sides, asked.get(step));
        }
    }
    text
}

/// What step `id` was asked (`asked`: its first prompt, else its template), what it said, and
/// its diff against the common base.
fn describe(shared: &Shared, text: &mut String, id: &str, sides: &Sides, asked: Option<&String>) {
    let _ = write!(text, "\n## Step `{id}`\n\n");
    let index = shared.plan.steps.iter().position(|s| s.id == id);
    let record = index.and_then(|i| {
        shared
            .records
            .lock()
            .ok()
            .and_then(|r| r.get(i).cloned().flatten())
    });
    match index.map(|i| &shared.plan.steps[i].action) {
        Some(Action::Agent { prompt, .. }) => {
            let asked = asked.cloned().unwrap_or_else(|| prompt.source.clone());
            let _ = write!(text, "It was asked:\n\n{}\n\n", fenced(&asked, ""));
        }
        Some(Action::Command { run }) => {
            let _ = write!(text, "It ran:\n\n{}\n\n", fenced(&run.source, "sh"));
        }
        None => {}
    }
    if let Some(record) = &record
        && !record.output.trim().is_empty()
    {
        let _ = write!(
            text,
            "Its final message:\n\n{}\n\n",
            fenced(&record.output, "")
        );
    }
    let commit: Option<Oid> = sides
        .merged
        .iter()
        .find(|(s, _)| s == id)
        .map(|(_, c)| *c)
        .or_else(|| record.and_then(|r| r.commit));
    if let Some(commit) = commit
        && let Ok(diff) = shared.repo.diff_text(sides.ancestor, commit)
    {
        let mut diff = diff;
        if diff.len() > DIFF_BYTES {
            let mut cut = DIFF_BYTES;
            while !diff.is_char_boundary(cut) {
                cut -= 1;
            }
            diff.truncate(cut);
            diff.push_str("\n… (cut)\n");
        }
        let _ = write!(
            text,
            "Its changes against the common base:\n\n{}\n",
            fenced(&diff, "diff")
        );
    }
}

/// The first prompt step `id` was sent in this run (`prompts/<id>.<attempt>.<agent>.txt`, the
/// lowest attempt), if it ran in this run.
fn archived_prompt(shared: &Shared, id: &str) -> Option<String> {
    let prefix = format!("{id}.");
    let mut found: Vec<(u32, std::path::PathBuf)> =
        fs_err::read_dir(shared.run_dir.join("prompts"))
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let rest = name.strip_prefix(&prefix)?.strip_suffix(".txt")?;
                let (attempt, agent) = rest.split_once('.')?;
                (!agent.contains('.') && !agent.starts_with("merge-"))
                    .then(|| Some((attempt.parse().ok()?, e.path())))
                    .flatten()
            })
            .collect();
    found.sort();
    fs_err::read_to_string(&found.first()?.1).ok()
}

/// `body` in a Markdown fence longer than any run of backticks in it.
fn fenced(body: &str, lang: &str) -> String {
    let fence = crate::markdown::fence(body);
    format!("{fence}{lang}\n{}\n{fence}", body.trim_end())
}
