//! The report as one self-contained HTML page: inline CSS, an inline SVG of the DAG, no script,
//! and a Content-Security-Policy that forbids every request, so it renders the same with the
//! network off. Everything that comes from the run (prompts, outputs, diffs, file names) is
//! escaped text.

use std::fmt::Write as _;

use super::diff::{Diff, short};
use super::model::{Attempt, Gate, Report, StepReport};
use super::text::{
    duration, escape, escape_into, escape_text, escape_text_into, plural, run_cost, run_tokens,
    step_cost, step_tokens,
};

/// A `<details>` with more lines than this starts folded.
const FOLD_LINES: usize = 40;
/// A diff with more lines than this starts folded.
const FOLD_DIFF_LINES: usize = 300;
/// Diffs start open until the page shows this many of their lines; the rest start folded, so
/// that a big run's page opens fast (a folded diff is in the page, not laid out).
const OPEN_DIFF_BUDGET: usize = 2000;

/// The page's style, inline (no stylesheet is ever fetched).
const STYLE: &str = include_str!("style.css");

/// The report as one HTML page.
pub fn render(report: &Report) -> String {
    let run = &report.run;
    let mut out = String::with_capacity(64 * 1024);
    let status = run.status();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // No request of any kind: no script, no fetch, no image, no font, no frame.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>medley run {}: {status}</title>",
        escape(&run.mission)
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    header(&mut out, report);
    super::svg::graph(&mut out, report);
    table(&mut out, report);
    out.push_str("<section id=\"steps\">\n<h2>Steps</h2>\n");
    let mut budget = OPEN_DIFF_BUDGET;
    for step in &report.steps {
        step_section(&mut out, report, step, &mut budget);
    }
    out.push_str("</section>\n");
    if !report.final_gates.is_empty() {
        out.push_str("<section id=\"mission-gate\">\n<h2>Mission gate</h2>\n");
        for gate in &report.final_gates {
            gate_block(&mut out, gate);
        }
        out.push_str("</section>\n");
    }
    if !report.warnings.is_empty() {
        out.push_str("<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
        for (step, message) in &report.warnings {
            out.push_str("<li>");
            if let Some(step) = step {
                let _ = write!(out, "<code>{}</code>: ", escape(step));
            }
            escape_into(&mut out, message);
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n</section>\n");
    }
    let _ = writeln!(
        out,
        "<footer>Made by <code>medley report {}</code> from the run's journal, prompt archive \
         and refs. This page loads nothing and runs nothing.</footer>\n</body>\n</html>",
        escape(&run.id)
    );
    out
}

fn header(out: &mut String, report: &Report) {
    let run = &report.run;
    let status = run.status();
    let _ = writeln!(
        out,
        "<header id=\"summary\" data-outcome=\"{status}\">\n<h1>mission <code>{}</code> \
         <span class=\"badge {status}\">{status}</span></h1>",
        escape(&run.mission)
    );
    if let Some(description) = &report.description {
        let _ = writeln!(out, "<p class=\"description\">{}</p>", escape(description));
    }
    out.push_str("<dl class=\"facts\">\n");
    let mut fact = |name: &str, html: String| {
        let _ = writeln!(
            out,
            "<dt>{name}</dt><dd class=\"{}\">{html}</dd>",
            name.replace(' ', "-")
        );
    };
    fact("run", format!("<code>{}</code>", escape(&run.id)));
    fact(
        "mission file",
        format!("<code>{}</code>", escape(&run.mission_path)),
    );
    fact("started", escape(&run.started));
    if let Some(reason) = &run.reason {
        fact("reason", escape(reason));
    }
    fact(
        "wall time",
        format!(
            "{}{}",
            duration(run.duration_ms),
            if report.segments > 1 {
                format!(" over {} starts (resumed)", report.segments)
            } else {
                String::new()
            }
        ),
    );
    fact("base", format!("<code>{}</code>", escape(short(&run.base))));
    fact("tokens", escape(&run_tokens(run)));
    let unpriced: Vec<String> = report
        .steps
        .iter()
        .filter(|s| s.info.agent.is_some() && s.info.cost_usd.is_none() && s.info.outcome.is_some())
        .map(|s| format!("<code>{}</code>", escape(&s.id)))
        .collect();
    fact(
        "cost",
        format!(
            "{}{}",
            escape(&run_cost(run)),
            if unpriced.is_empty() {
                String::new()
            } else {
                format!(" ({})", unpriced.join(", "))
            }
        ),
    );
    match (&run.result_branch, report.apply_command()) {
        (Some(branch), Some(apply)) => fact(
            "result",
            format!(
                "branch <code>{}</code>; apply it to your working tree with <code>{}</code>",
                escape(branch),
                escape(&apply)
            ),
        ),
        _ => fact("result", "no result branch".to_owned()),
    }
    if let Some(approval) = &run.approval {
        fact("approval", escape(&super::words::approval_text(approval)));
    }
    let mut counts = Vec::new();
    for name in [
        "passed",
        "cached",
        "kept",
        "waiting",
        "failed",
        "skipped",
        "cancelled",
        "unfinished",
        "running",
        "not run",
    ] {
        let n = report.count(name);
        if n > 0 {
            counts.push(format!("{n} {name}"));
        }
    }
    fact(
        "steps",
        format!("{}: {}", report.steps.len(), escape(&counts.join(", "))),
    );
    out.push_str("</dl>\n</header>\n");
}

fn table(out: &mut String, report: &Report) {
    out.push_str(
        "<section id=\"table\">\n<h2>Summary</h2>\n<table class=\"steps\">\n<thead><tr><th>step</th>\
         <th>outcome</th><th>time</th><th>attempts</th><th>agent</th><th>tokens</th><th>cost</th>\
         <th>files</th></tr></thead>\n<tbody>\n",
    );
    for step in &report.steps {
        let outcome = step.outcome_name(&report.run);
        let files = step.diff.as_ref().map_or(String::new(), |d| {
            let (plus, minus) = d
                .files
                .iter()
                .fold((0, 0), |(p, m), f| (p + f.added, m + f.removed));
            format!(
                "{} <span class=\"plus\">+{plus}</span> <span class=\"minus\">−{minus}</span>",
                d.files.len() + d.omitted.len()
            )
        });
        let _ = writeln!(
            out,
            "<tr data-step=\"{id}\"><td><a href=\"#step-{id}\"><code>{id}</code></a></td>\
             <td><span class=\"badge {class}\">{outcome}</span></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{files}</td></tr>",
            duration(step.info.duration_ms),
            step.info.attempts,
            escape(
                step.info
                    .agent
                    .as_deref()
                    .unwrap_or(if step.runner == "command" {
                        "command"
                    } else {
                        ""
                    })
            ),
            escape(&step_tokens(step)),
            escape(&step_cost(step)),
            id = escape(&step.id),
            class = step.outcome_class(&report.run),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn step_section(out: &mut String, report: &Report, step: &StepReport, budget: &mut usize) {
    let outcome = step.outcome_name(&report.run);
    let id = escape(&step.id);
    let _ = writeln!(
        out,
        "<article class=\"step {class}\" id=\"step-{id}\" data-step=\"{id}\" \
         data-outcome=\"{outcome}\">\n<h3><a href=\"#step-{id}\">{id}</a> \
         <span class=\"badge {class}\">{outcome}</span></h3>",
        class = step.outcome_class(&report.run)
    );
    let mut meta = Vec::new();
    if !step.runner.is_empty() {
        meta.push(escape(&step.runner));
    }
    if step.info.attempts > 0 {
        meta.push(plural(step.info.attempts as usize, "attempt"));
    }
    if step.info.duration_ms.is_some() {
        meta.push(duration(step.info.duration_ms));
    }
    let tokens = step_tokens(step);
    if !tokens.is_empty() {
        meta.push(format!("tokens {}", escape(&tokens)));
    }
    let cost = step_cost(step);
    if !cost.is_empty() {
        meta.push(format!("cost {}", escape(&cost)));
    }
    if let Some(commit) = &step.info.commit {
        meta.push(format!("result <code>{}</code>", escape(short(commit))));
    }
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", meta.join(" · "));
    if !step.needs.is_empty() {
        let needs: Vec<String> = step
            .needs
            .iter()
            .map(|n| format!("<a href=\"#step-{n}\"><code>{n}</code></a>", n = escape(n)))
            .collect();
        let _ = writeln!(out, "<p class=\"needs\">needs {}</p>", needs.join(", "));
    }
    if let Some(from) = &step.cached_from {
        let cost = step
            .info
            .cached_cost_usd
            .map_or(String::new(), |c| format!(" (it cost ${c:.4} then)"));
        let _ = writeln!(
            out,
            "<p class=\"cached\">from the cache: the result run <code>{}</code> made{cost}; \
             nothing ran</p>",
            escape(from)
        );
    }
    if let Some(approval) = step.approval() {
        let _ = writeln!(out, "<p class=\"approval\">{}</p>", escape(&approval));
    }
    if step.info.kept {
        out.push_str(
            "<p class=\"kept\">kept from before the resume: its result stands, nothing ran \
             again</p>\n",
        );
    }
    if let Some(why) = step.why() {
        let skipped = step.info.skipped.is_some();
        let _ = writeln!(
            out,
            "<div class=\"why{}\"><p>{}</p><pre>{}</pre></div>",
            if skipped { " skipped" } else { "" },
            if skipped {
                "why it was skipped"
            } else {
                "what failed"
            },
            escape(&why)
        );
        if let Some(tail) = &step.info.gate_output
            && !why.contains(tail.trim())
        {
            let _ = writeln!(
                out,
                "<p>the gate's output (tail):</p><pre class=\"gate-output\">{}</pre>",
                escape(tail)
            );
        }
    }
    for (from, to, reason) in &step.switches {
        let _ = writeln!(
            out,
            "<p class=\"switch\">switched from <code>{}</code> to <code>{}</code> ({})</p>",
            escape(from),
            escape(to),
            escape(&format!("{reason:?}").to_lowercase())
        );
    }
    if let Some(command) = &step.command {
        let _ = writeln!(
            out,
            "<h4>command</h4><pre class=\"command\">{}</pre>",
            escape(command)
        );
    }
    let count = step.attempts.len();
    for (k, attempt) in step.attempts.iter().enumerate() {
        // The last attempts (and every one of a short step) start open.
        attempt_block(out, report, attempt, count <= 3 || k + 1 == count);
    }
    if !step.info.output.is_empty() {
        fold(
            out,
            "output",
            "the output it handed on (<code>steps.&lt;id&gt;.output</code>)",
            &step.info.output,
        );
    }
    if let Some(diff) = &step.diff {
        diff_block(out, diff, budget);
    }
    out.push_str("</article>\n");
}

fn attempt_block(out: &mut String, report: &Report, a: &Attempt, open: bool) {
    let who = match (&a.agent, &a.runtime) {
        (Some(agent), Some(runtime)) if agent != runtime => format!("{agent} ({runtime})"),
        (Some(agent), _) => agent.clone(),
        (None, _) => "command".to_owned(),
    };
    let who = if a.merge {
        format!("merge agent {who}")
    } else {
        who
    };
    let end = match (&a.failure, a.gates.last()) {
        (Some((reason, _)), _) => format!("failed ({})", format!("{reason:?}").to_lowercase()),
        (None, Some(g)) if g.passed == Some(true) => "passed".to_owned(),
        (None, None) if a.commit.is_some() => "done".to_owned(),
        _ => "did not finish".to_owned(),
    };
    let segment = if report.segments > 1 {
        format!(" · run start {}", a.segment)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<details class=\"attempt\" data-attempt=\"{}\" data-agent=\"{}\"{}><summary>attempt {} · \
         {} · {}{segment}</summary>",
        a.number,
        escape(a.agent.as_deref().unwrap_or("")),
        if open { " open" } else { "" },
        a.number,
        escape(&who),
        escape(&end),
    );
    if let Some(prompt) = &a.prompt {
        out.push_str("<h4>prompt sent</h4>");
        if prompt.lines().count() > FOLD_LINES {
            let _ = writeln!(
                out,
                "<details class=\"prompt\"><summary>{} lines</summary><pre class=\"prompt\">{}</pre></details>",
                prompt.lines().count(),
                escape_text(prompt)
            );
        } else {
            let _ = writeln!(out, "<pre class=\"prompt\">{}</pre>", escape_text(prompt));
        }
    } else if let Some(note) = &a.prompt_note {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(note));
    }
    if !a.outputs.is_empty() {
        let folded = a.outputs.len() > 60;
        if folded {
            let _ = write!(
                out,
                "<details class=\"agent-output\"><summary>{} agent events</summary>",
                a.outputs.len()
            );
        } else {
            out.push_str("<h4>what the agent did</h4>");
        }
        out.push_str("<ol class=\"agent-output\">\n");
        for line in &a.outputs {
            let _ = writeln!(
                out,
                "<li class=\"kind-{k}\"><details><summary><span class=\"kind\">{k}</span> \
                 <span class=\"summary\">{}</span></summary><pre class=\"raw\">{}</pre></details></li>",
                escape_text(&line.summary),
                escape_text(&line.raw),
                k = escape(&line.kind),
            );
        }
        out.push_str("</ol>\n");
        if folded {
            out.push_str("</details>\n");
        }
    }
    if let Some((commit, files)) = &a.commit {
        let _ = writeln!(
            out,
            "<p class=\"commit\">committed <code>{}</code> ({} changed)</p>",
            escape(short(commit)),
            plural(*files, "file")
        );
    }
    for (name, tail) in [("stdout", &a.stdout_tail), ("stderr", &a.stderr_tail)] {
        if let Some(tail) = tail {
            let _ = writeln!(
                out,
                "<h4>{name} (its last lines)</h4><pre class=\"{name}\">{}</pre>",
                escape_text(tail)
            );
        }
    }
    for gate in &a.gates {
        gate_block(out, gate);
    }
    if let Some((_, message)) = &a.failure {
        let _ = writeln!(
            out,
            "<div class=\"failure\"><p>the attempt failed</p><pre>{}</pre></div>",
            escape(message)
        );
    }
    out.push_str("</details>\n");
}

fn gate_block(out: &mut String, gate: &Gate) {
    let (class, said) = match gate.passed {
        Some(true) => ("passed", "passed".to_owned()),
        Some(false) => (
            "failed",
            match gate.exit_code {
                Some(code) => format!("failed (exit {code})"),
                None => "failed (killed by a signal)".to_owned(),
            },
        ),
        None => ("unfinished", "did not finish".to_owned()),
    };
    let _ = write!(
        out,
        "<div class=\"gate {class}\"><p>gate <code>{}</code>: {said}</p>",
        escape(&gate.command)
    );
    if !gate.output_tail.is_empty() {
        let _ = write!(
            out,
            "<pre class=\"gate-output\">{}</pre>",
            escape_text(&gate.output_tail)
        );
    }
    out.push_str("</div>\n");
}

/// A block of text under a `<details>`, folded when long.
fn fold(out: &mut String, class: &str, summary_html: &str, text: &str) {
    let lines = text.lines().count();
    let _ = writeln!(
        out,
        "<details class=\"{class}\"{}><summary>{summary_html} · {}</summary><pre>{}</pre></details>",
        if lines <= FOLD_LINES { " open" } else { "" },
        plural(lines, "line"),
        escape_text(text)
    );
}

fn diff_block(out: &mut String, diff: &Diff, budget: &mut usize) {
    let lines: usize = diff.files.iter().map(|f| f.text.lines().count()).sum();
    let open = lines <= FOLD_DIFF_LINES && lines <= *budget;
    if open {
        *budget -= lines;
    }
    let (plus, minus) = diff
        .files
        .iter()
        .fold((0, 0), |(p, m), f| (p + f.added, m + f.removed));
    let _ = writeln!(
        out,
        "<details class=\"diff\"{}><summary>diff against its base <code>{}</code>: {} \
         <span class=\"plus\">+{plus}</span> <span class=\"minus\">−{minus}</span></summary>",
        if open { " open" } else { "" },
        escape(short(&diff.base)),
        plural(diff.files.len() + diff.omitted.len(), "file"),
    );
    if diff.files.is_empty() {
        out.push_str("<p class=\"meta\">no change</p>\n");
    }
    for file in &diff.files {
        let n = file.text.lines().count();
        let _ = write!(
            out,
            "<details class=\"file\" data-path=\"{p}\"{}><summary><code>{p}</code> \
             <span class=\"plus\">+{}</span> <span class=\"minus\">−{}</span></summary>\
             <pre class=\"diff-text\">",
            if n <= FOLD_DIFF_LINES { " open" } else { "" },
            file.added,
            file.removed,
            p = escape(&file.path),
        );
        for line in file.text.split_inclusive('\n') {
            let class = if line.starts_with("diff --git ")
                || line.starts_with("+++ ")
                || line.starts_with("--- ")
                || line.starts_with("index ")
                || line.starts_with("new file")
                || line.starts_with("deleted file")
            {
                Some("meta-line")
            } else if line.starts_with('+') {
                Some("add")
            } else if line.starts_with('-') {
                Some("del")
            } else if line.starts_with("@@") {
                Some("hunk")
            } else {
                None
            };
            // A marked line is a block of its own (its newline would add an empty line).
            match class {
                Some(class) => {
                    let _ = write!(out, "<span class=\"{class}\">");
                    escape_text_into(out, line.trim_end_matches('\n'));
                    out.push_str("</span>");
                }
                None => escape_text_into(out, line),
            }
        }
        out.push_str("</pre></details>\n");
    }
    if !diff.omitted.is_empty() {
        let names: Vec<String> = diff
            .omitted
            .iter()
            .take(50)
            .map(|p| format!("<code>{}</code>", escape(p)))
            .collect();
        let _ = writeln!(
            out,
            "<p class=\"omitted\">{} more not shown (the diff is large): {}{}; \
             <code>{}</code> shows them all</p>",
            plural(diff.omitted.len(), "file"),
            names.join(", "),
            if diff.omitted.len() > 50 { ", …" } else { "" },
            escape(&diff.command())
        );
    }
    out.push_str("</details>\n");
}
