//! `medley validate`: every problem of each mission file, or of every mission in `missions/`.

use std::path::Path;

use clap::Args;
use medley_engine::mission::MissionErrors;
use medley_engine::plan::PlanOptions;
use miette::Diagnostic as _;
use serde_json::json;

use super::compile_path;
use crate::output::OutputFormat;
use crate::{CliError, Context, exit, missions, style};

/// Check mission files and report every problem
#[derive(Debug, Args)]
#[command(
    long_about = "Check mission files and report every problem, with the line and column of each.\n\n\
        Checks the TOML, every key and value, step ids, needs and cycles, agent profiles, \
        durations, matrices and templates. Never looks for agent binaries. With no MISSION, \
        checks every mission in missions/ (what CI wants). Exit 2 when any file has an error.\n\n\
        With --output json: one JSON object on stdout, `{\"missions\": [...]}`, one entry per \
        file: `path`, `mission` (its name, when it compiled), `valid`, `steps` (when valid), and \
        `diagnostics`, each with `severity` (`error` or `warning`), `file`, `line`, `column` \
        (from 1; null when the problem has no place in the file), `message`, `help` (or null) \
        and `label` (what the place is, or null).",
    after_help = "Examples:\n  medley validate\n  medley validate missions/refactor.toml review\n  medley validate --output json"
)]
pub struct ValidateArgs {
    /// Mission files or names (`missions/<name>.toml`); default: every mission in missions/
    #[arg(value_name = "MISSION")]
    pub missions: Vec<String>,
}

pub fn cmd_validate(ctx: &Context, args: ValidateArgs) -> Result<u8, CliError> {
    let json = ctx.output == OutputFormat::Json;
    let targets: Vec<Result<std::path::PathBuf, missions::MissionArgError>> =
        if args.missions.is_empty() {
            match missions::all(&ctx.cwd) {
                Ok(all) => all.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            }
        } else {
            args.missions
                .iter()
                .map(|m| missions::resolve(&ctx.cwd, Some(m)))
                .collect()
        };
    let mut code = exit::SUCCESS;
    let mut entries = Vec::new();
    for target in targets {
        let path = match target {
            Ok(path) => path,
            Err(e) => {
                code = exit::INVALID;
                if json {
                    entries.push(json!({
                        "path": null,
                        "mission": null,
                        "valid": false,
                        "diagnostics": [plain_diagnostic("error", None, &e.to_string(), e.help().map(|h| h.to_string()))],
                    }));
                } else {
                    ctx.eprint(&e);
                }
                continue;
            }
        };
        let file = path.display().to_string();
        match compile_path(ctx, &path, &PlanOptions::default()) {
            Ok(plan) => {
                let warnings = cache_warnings(&plan);
                let steps = plan.steps.len();
                if json {
                    entries.push(json!({
                        "path": file,
                        "mission": plan.mission,
                        "valid": true,
                        "steps": steps,
                        "diagnostics": warnings
                            .iter()
                            .map(|w| plain_diagnostic("warning", Some(&path), w, None))
                            .collect::<Vec<_>>(),
                    }));
                    continue;
                }
                for warning in warnings {
                    ctx.status(&format!(
                        "{}: `{file}`: {warning}",
                        style::yellow("warning", ctx.color),
                    ));
                }
                ctx.status(&format!(
                    "{} `{file}`: mission `{}`, {steps} step{}",
                    style::green("valid", ctx.color),
                    plan.mission,
                    if steps == 1 { "" } else { "s" }
                ));
            }
            Err(e) => {
                code = code.max(e.code);
                if json {
                    entries.push(json!({
                        "path": file,
                        "mission": null,
                        "valid": false,
                        "diagnostics": diagnostics(&path, &e),
                    }));
                } else {
                    ctx.status(ctx.render_report(&e.report).trim_end());
                }
            }
        }
    }
    if json {
        super::print_json(&json!({ "missions": entries }))?;
    }
    Ok(code)
}

/// A diagnostic with no place in the file.
fn plain_diagnostic(
    severity: &str,
    file: Option<&Path>,
    message: &str,
    help: Option<String>,
) -> serde_json::Value {
    json!({
        "severity": severity,
        "file": file.map(|f| f.display().to_string()),
        "line": null,
        "column": null,
        "message": message,
        "help": help,
        "label": null,
    })
}

/// A failed compile's diagnostics as JSON objects, each at its line and column.
fn diagnostics(path: &Path, error: &CliError) -> Vec<serde_json::Value> {
    let Some(errors) = error.report.downcast_ref::<MissionErrors>() else {
        return vec![plain_diagnostic(
            "error",
            Some(path),
            &error.report.to_string(),
            error.report.help().map(|h| h.to_string()),
        )];
    };
    let source = errors.source_code.inner();
    errors
        .errors
        .iter()
        .map(|e| {
            let primary = e.labels.iter().find(|l| l.primary()).or(e.labels.first());
            let (line, column) = match primary {
                Some(label) => {
                    let (l, c) = line_column(source, label.offset());
                    (json!(l), json!(c))
                }
                None => (json!(null), json!(null)),
            };
            json!({
                "severity": "error",
                "file": errors.path,
                "line": line,
                "column": column,
                "message": e.message,
                "help": e.help,
                "label": primary.and_then(|l| l.label()),
            })
        })
        .collect()
}

/// The line and column (from 1, in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Cacheable steps whose templates render something that changes every run.
fn cache_warnings(plan: &medley_engine::plan::Plan) -> Vec<String> {
    use medley_engine::plan::Action;
    let mut warnings = Vec::new();
    for step in plan.steps.iter().filter(|s| s.cache) {
        if step.declared != step.id
            && warnings
                .iter()
                .any(|w: &String| w.contains(&format!("`{}`", step.declared)))
        {
            continue;
        }
        let mut sources = vec![match &step.action {
            Action::Agent { prompt, .. } => prompt.source.as_str(),
            Action::Command { run } => run.source.as_str(),
        }];
        if let Some(gate) = &step.gate {
            sources.push(gate.source.as_str());
        }
        let names: Vec<&str> = sources
            .iter()
            .flat_map(|s| medley_engine::cache::volatile_names(s))
            .collect();
        if let Some(name) = names.first() {
            warnings.push(format!(
                "step `{}` renders `{name}`, which changes every run, so its cache key does too: its result is never reused (set `cache = false` to say so, or leave `{name}` out)",
                step.declared
            ));
        }
    }
    warnings
}
