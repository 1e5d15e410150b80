use clap::Args;
use medley_engine::plan::PlanOptions;

use super::compile_path;
use crate::{CliError, Context, exit, missions, style};

/// Check mission files and report every problem
#[derive(Debug, Args)]
#[command(
    long_about = "Check mission files and report every problem, with the line and column of each.\n\n\
        Checks the TOML, every key and value, step ids, needs and cycles, agent profiles, \
        durations, matrices and templates. Never looks for agent binaries.",
    after_help = "Example:\n  medley validate missions/refactor.toml missions/review.toml"
)]
pub struct ValidateArgs {
    /// Mission files or names (`missions/<name>.toml`); default: the only one in missions/
    #[arg(value_name = "MISSION")]
    pub missions: Vec<String>,
}

pub fn cmd_validate(ctx: &Context, args: ValidateArgs) -> Result<u8, CliError> {
    let targets: Vec<Option<&str>> = if args.missions.is_empty() {
        vec![None]
    } else {
        args.missions.iter().map(|m| Some(m.as_str())).collect()
    };
    let mut code = exit::SUCCESS;
    for target in targets {
        let path = match missions::resolve(&ctx.cwd, target) {
            Ok(path) => path,
            Err(e) => {
                ctx.eprint(&e);
                code = exit::INVALID;
                continue;
            }
        };
        match compile_path(ctx, &path, &PlanOptions::default()) {
            Ok(plan) => {
                for warning in cache_warnings(&plan) {
                    ctx.status(&format!(
                        "{}: `{}`: {warning}",
                        style::yellow("warning", ctx.color),
                        path.display()
                    ));
                }
                let steps = plan.steps.len();
                ctx.status(&format!(
                    "{} `{}`: mission `{}`, {steps} step{}",
                    style::green("valid", ctx.color),
                    path.display(),
                    plan.mission,
                    if steps == 1 { "" } else { "s" }
                ));
            }
            Err(e) => {
                ctx.status(ctx.render_report(&e.report).trim_end());
                code = code.max(e.code);
            }
        }
    }
    Ok(code)
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
