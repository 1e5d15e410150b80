//! The report as GitHub-flavoured Markdown, for `$GITHUB_STEP_SUMMARY` and PR comments: the
//! totals, a table of steps, the failures with their output tails, and the graph as mermaid.

use std::fmt::Write as _;

use super::model::{Report, StepReport};
use super::text::{duration, plural, run_cost, run_tokens, step_cost};

/// The most lines of one failure's output shown (its tail).
const TAIL_LINES: usize = 30;

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let run = &report.run;
    let mut out = String::new();
    let status = run.status();
    let _ = writeln!(
        out,
        "## {} medley run `{}`: {status}\n",
        mark(status),
        run.mission
    );
    if let Some(description) = &report.description {
        let _ = writeln!(out, "{}\n", cell(description));
    }
    let _ = writeln!(
        out,
        "Run `{}` · {}{} · tokens {} · cost {}",
        run.id,
        duration(run.duration_ms),
        if report.segments > 1 {
            format!(" over {} starts (resumed)", report.segments)
        } else {
            String::new()
        },
        run_tokens(run),
        run_cost(run),
    );
    if let Some(reason) = &run.reason {
        let _ = writeln!(out, "\nWhy: {}", cell(reason));
    }
    match (&run.result_branch, report.apply_command()) {
        (Some(branch), Some(apply)) => {
            let _ = writeln!(out, "\nResult: branch `{branch}`; apply it with `{apply}`.");
        }
        _ => out.push_str("\nNo result branch.\n"),
    }
    out.push_str("\n| step | outcome | time | attempts | agent | cost |\n");
    out.push_str("|---|---|---:|---:|---|---:|\n");
    for step in &report.steps {
        let outcome = step.outcome_name(run);
        let _ = writeln!(
            out,
            "| `{}` | {} {outcome} | {} | {} | {} | {} |",
            step.id,
            mark(outcome),
            duration(step.info.duration_ms),
            step.info.attempts,
            cell(step.info.agent.as_deref().unwrap_or(&step.runner)),
            step_cost(step),
        );
    }
    let failed: Vec<&StepReport> = report
        .steps
        .iter()
        .filter(|s| s.info.error.is_some() || s.outcome_name(run) == "unfinished")
        .collect();
    if !failed.is_empty() {
        out.push_str("\n### Failures\n");
        for step in failed {
            let message = step
                .info
                .error
                .as_ref()
                .map_or("it did not finish: the run was killed", |e| {
                    e.message.as_str()
                });
            let mut lines = message.lines();
            let head = lines.next().unwrap_or("");
            let _ = writeln!(
                out,
                "\n#### `{}` {}: {}\n",
                step.id,
                step.outcome_name(run),
                cell(head)
            );
            let mut rest: String = lines.map(|l| format!("{l}\n")).collect();
            if let Some(tail) = &step.info.gate_output
                && !rest.contains(tail.trim())
            {
                rest.push_str(tail);
            }
            // A command's own words: what it printed last.
            if let Some(last) = step.attempts.last() {
                for t in [&last.stderr_tail, &last.stdout_tail].into_iter().flatten() {
                    if !rest.contains(t.as_str()) {
                        rest.push_str(t);
                        rest.push('\n');
                    }
                }
            }
            let rest = tail(&rest, TAIL_LINES);
            if !rest.trim().is_empty() {
                fenced(&mut out, "text", &rest);
            }
        }
    }
    let decided: Vec<(&str, String)> = report
        .steps
        .iter()
        .filter_map(|s| Some((s.id.as_str(), s.approval()?)))
        .chain(
            run.approval
                .as_ref()
                .map(|a| ("the result", super::words::approval_text(a))),
        )
        .collect();
    if !decided.is_empty() {
        out.push_str("\n### Approvals\n\n");
        for (who, text) in decided {
            let who = if who == "the result" {
                who.to_owned()
            } else {
                format!("`{who}`")
            };
            let _ = writeln!(out, "- {who}: {}", cell(&text));
        }
    }
    let skipped: Vec<&StepReport> = report
        .steps
        .iter()
        .filter(|s| s.info.skipped.is_some())
        .collect();
    if !skipped.is_empty() {
        out.push_str("\n### Skipped\n\n");
        for step in skipped {
            let _ = writeln!(
                out,
                "- `{}`: {}",
                step.id,
                cell(&step.why().unwrap_or_default())
            );
        }
    }
    if let Some(gate) = report.final_gates.last() {
        let said = match gate.passed {
            Some(true) => "passed".to_owned(),
            Some(false) => format!(
                "failed{}",
                gate.exit_code
                    .map_or(String::new(), |c| format!(" (exit {c})"))
            ),
            None => "did not finish".to_owned(),
        };
        let _ = writeln!(out, "\nMission gate `{}`: {said}", gate.command);
        if gate.passed == Some(false) && !gate.output_tail.trim().is_empty() {
            out.push('\n');
            fenced(&mut out, "text", &tail(&gate.output_tail, TAIL_LINES));
        }
    }
    out.push_str("\n### Graph\n\n");
    if let Some(note) = &report.graph_note {
        let _ = writeln!(out, "{}\n", cell(note));
    }
    out.push_str(&mermaid(report));
    let unpriced = report
        .steps
        .iter()
        .filter(|s| s.info.agent.is_some() && s.info.cost_usd.is_none() && s.info.outcome.is_some())
        .count();
    if unpriced > 0 {
        let _ = writeln!(
            out,
            "\nCost unknown for {}: its CLI reports none and its profile has no `price`.",
            plural(unpriced, "step")
        );
    }
    let _ = writeln!(
        out,
        "\n<sub>`medley report {} --format html` shows every prompt, attempt, gate output and diff.</sub>",
        run.id
    );
    out
}

/// A mark for an outcome that reads without colour.
fn mark(outcome: &str) -> &'static str {
    match outcome {
        "passed" => "✅",
        "cached" | "kept" => "♻️",
        "failed" => "❌",
        "skipped" => "⏭️",
        "cancelled" | "killed" => "⛔",
        "unfinished" | "running" => "⏳",
        "waiting" | "decided" => "✋",
        _ => "▫️",
    }
}

/// Text for one table cell or line: its first line, with no HTML. Code spans (between
/// backticks) are kept as they are, since Markdown shows their content as text (an entity
/// there would show as itself); outside them `<`, `>` and `&` become entities. `|` is escaped
/// everywhere (GitHub's tables need it so, even in code spans). With an odd number of backticks
/// nothing counts as a code span.
fn cell(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let spans = line.matches('`').count().is_multiple_of(2);
    let mut out = String::with_capacity(line.len());
    let mut code = false;
    for c in line.chars() {
        match c {
            '`' if spans => {
                code = !code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !code => out.push_str("&lt;"),
            '>' if !code => out.push_str("&gt;"),
            '&' if !code => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = if from > 0 {
        format!("… ({} earlier lines)\n", from)
    } else {
        String::new()
    };
    for line in &lines[from..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A fenced block whose fence is longer than any run of backticks in `text`.
fn fenced(out: &mut String, info: &str, text: &str) {
    let fence = crate::markdown::fence(text);
    let _ = writeln!(out, "{fence}{info}");
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(out, "{fence}");
}

/// The graph as a mermaid flowchart, each node styled by its outcome.
fn mermaid(report: &Report) -> String {
    let mut out = String::from("```mermaid\nflowchart LR\n");
    let label = |s: &StepReport| {
        let runner = s.info.agent.as_deref().unwrap_or(&s.runner);
        format!(
            "{}<br/>{} · {}",
            s.id.replace('"', "#quot;"),
            s.outcome_name(&report.run),
            runner.replace('"', "#quot;")
        )
    };
    let mut grouped: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, s) in report.steps.iter().enumerate() {
        if s.declared == s.id {
            continue;
        }
        match grouped.iter_mut().find(|(d, _)| *d == s.declared) {
            Some((_, members)) => members.push(i),
            None => grouped.push((s.declared.as_str(), vec![i])),
        }
    }
    for (g, (declared, members)) in grouped.iter().enumerate() {
        let _ = writeln!(out, "  subgraph m{g}[\"{declared} (matrix)\"]");
        for &i in members {
            let _ = writeln!(out, "    s{i}[\"{}\"]", label(&report.steps[i]));
        }
        out.push_str("  end\n");
    }
    for (i, s) in report.steps.iter().enumerate() {
        if s.declared == s.id {
            let _ = writeln!(out, "  s{i}[\"{}\"]", label(s));
        }
    }
    for &(from, to) in &report.edges {
        let _ = writeln!(out, "  s{from} --> s{to}");
    }
    for (name, fill) in [
        ("passed", "#1a7f37"),
        ("cached", "#0969da"),
        ("kept", "#0969da"),
        ("waiting", "#9a6700"),
        ("failed", "#cf222e"),
        ("skipped", "#6e7781"),
        ("cancelled", "#bc4c00"),
        ("unfinished", "#8250df"),
    ] {
        let members: Vec<String> = report
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.outcome_name(&report.run) == name)
            .map(|(i, _)| format!("s{i}"))
            .collect();
        if !members.is_empty() {
            let _ = writeln!(
                out,
                "  classDef {name} fill:{fill},color:#fff\n  class {} {name}",
                members.join(",")
            );
        }
    }
    out.push_str("```\n");
    out
}
