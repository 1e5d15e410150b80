use clap::{Args, ValueEnum};
use medley_engine::plan::{PlanOptions, graph};

use super::load_plan;
use crate::{CliError, Context, exit, print_data};

/// Print a mission's step graph as DOT or Mermaid
#[derive(Debug, Args)]
#[command(
    long_about = "Print a mission's step graph as Graphviz DOT or Mermaid, with matrix children \
        grouped and each step's agent (or `command`).\n\n\
        The Mermaid output is a fenced ```mermaid block: paste it into a GitHub comment and it renders.\n\n\
        With --output json: one JSON object, `mission` and `steps` (each `id`, `declared`, \
        `needs`, `runner`: its agents or `command`; for a matrix read from a step, `dynamic`: \
        `axis`, `from`, `file`, `max_children`, `fields`), in the order they can run. Such a step \
        is drawn as `split.* from plan`: its children are made when `plan` passes.",
    after_help = "Examples:\n  medley graph refactor | dot -Tsvg > refactor.svg\n  medley graph refactor --format mermaid"
)]
pub struct GraphArgs {
    /// A mission file or name (`missions/<name>.toml`); default: the only one in missions/
    pub mission: Option<String>,
    /// The graph format
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

pub fn cmd_graph(ctx: &Context, args: GraphArgs) -> Result<u8, CliError> {
    let plan = load_plan(ctx, args.mission.as_deref(), &PlanOptions::default())?;
    if ctx.output == crate::output::OutputFormat::Json {
        let steps: Vec<serde_json::Value> = plan
            .steps
            .iter()
            .map(|s| {
                let mut step = serde_json::json!({
                    "id": s.id,
                    "declared": s.declared,
                    "needs": s.needs,
                    "runner": graph::runner(s),
                });
                if let Some(axis) = &s.dynamic {
                    step["dynamic"] = serde_json::json!(axis);
                }
                step
            })
            .collect();
        super::print_json(&serde_json::json!({ "mission": plan.mission, "steps": steps }))?;
        return Ok(exit::SUCCESS);
    }
    let text = match args.format {
        GraphFormat::Dot => graph::dot(&plan),
        GraphFormat::Mermaid => graph::mermaid(&plan),
    };
    print_data(&text)?;
    Ok(exit::SUCCESS)
}
