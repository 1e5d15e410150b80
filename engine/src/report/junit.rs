//! The report as JUnit XML, the shape CI test reporters read: one `<testsuite>` for the run,
//! one `<testcase>` per step (a failed step carries its message and gate output as the
//! failure's text, a skipped or cancelled one is `<skipped>`), and the mission gate as a case
//! of its own when it ran.

use std::fmt::Write as _;

use super::model::Report;
use super::text::escape;

/// An error kind as the journal writes it (`gate`, `merge_conflict`, ...).
fn kind_name(kind: crate::event::ErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "failed".to_owned())
}

/// Seconds, as JUnit writes them.
fn seconds(ms: Option<u64>) -> String {
    format!("{:.3}", ms.unwrap_or(0) as f64 / 1000.0)
}

/// The report as JUnit XML.
pub fn render(report: &Report) -> String {
    let run = &report.run;
    let mut cases = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    let class = format!("medley.{}", run.mission);
    for step in &report.steps {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
            escape(&step.id),
            escape(&class),
            seconds(step.info.duration_ms)
        );
        let outcome = step.outcome_name(run);
        let body = match outcome {
            "passed" | "cached" | "kept" => None,
            "failed" => {
                failures += 1;
                let error = step.info.error.as_ref();
                let message = error.map_or("failed", |e| e.message.lines().next().unwrap_or(""));
                let mut text = error.map_or(String::new(), |e| e.message.clone());
                if let Some(tail) = &step.info.gate_output
                    && !text.contains(tail.trim())
                {
                    text.push_str("\n\ngate output (tail):\n");
                    text.push_str(tail);
                }
                Some(format!(
                    "<failure message=\"{}\" type=\"{}\">{}</failure>",
                    escape(message),
                    escape(&error.map_or("failed".to_owned(), |e| kind_name(e.kind))),
                    escape(&text)
                ))
            }
            "skipped" | "cancelled" | "not run" | "waiting" => {
                skipped += 1;
                let why = step
                    .why()
                    .or_else(|| step.approval())
                    .unwrap_or_else(|| match outcome {
                        "cancelled" => "cancelled: the run was stopped".to_owned(),
                        _ => "not run: the run ended before it".to_owned(),
                    });
                Some(format!("<skipped message=\"{}\"/>", escape(&why)))
            }
            _ => {
                errors += 1;
                Some(format!(
                    "<error message=\"{}\" type=\"unfinished\"/>",
                    escape("it did not finish: the run was killed (`medley resume` continues it)")
                ))
            }
        };
        let mut output = if step.info.output.is_empty() {
            String::new()
        } else {
            format!(
                "\n      <system-out>{}</system-out>",
                escape(&step.info.output)
            )
        };
        // A command's last words on stderr, from its last attempt.
        if let Some(err) = step.attempts.last().and_then(|a| a.stderr_tail.as_ref()) {
            output.push_str(&format!("\n      <system-err>{}</system-err>", escape(err)));
        }
        match body {
            None if output.is_empty() => cases.push_str("/>\n"),
            body => {
                let _ = write!(
                    cases,
                    ">{}{output}\n    </testcase>\n",
                    body.map_or(String::new(), |b| format!("\n      {b}"))
                );
            }
        }
    }
    if let Some(gate) = report.final_gates.last() {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase name=\"mission gate\" classname=\"{}\" time=\"0.000\"",
            escape(&class)
        );
        match gate.passed {
            Some(true) => cases.push_str("/>\n"),
            Some(false) => {
                failures += 1;
                let _ = write!(
                    cases,
                    ">\n      <failure message=\"{}\" type=\"gate\">{}</failure>\n    </testcase>\n",
                    escape(&format!(
                        "gate `{}` failed{}",
                        gate.command,
                        gate.exit_code
                            .map_or(String::new(), |c| format!(" (exit {c})"))
                    )),
                    escape(&gate.output_tail)
                );
            }
            None => {
                errors += 1;
                cases.push_str(
                    ">\n      <error message=\"the mission gate did not finish\" type=\"unfinished\"/>\n    </testcase>\n",
                );
            }
        }
    }
    let time = seconds(run.duration_ms);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"medley\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"{skipped}\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{}\" id=\"{}\">",
        escape(&run.mission),
        escape(run.started.get(..19).unwrap_or(&run.started)),
        escape(&run.id)
    );
    out.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            escape(value)
        );
    };
    property("run", &run.id);
    property("outcome", run.status());
    property("base", &run.base);
    if let Some(branch) = &run.result_branch {
        property("result_branch", branch);
    }
    if let Some(cost) = run.cost_usd {
        property("cost_usd", &format!("{cost:.4}"));
    }
    out.push_str("    </properties>\n");
    out.push_str(&cases);
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
