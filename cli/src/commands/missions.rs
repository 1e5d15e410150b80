//! `medley missions`: the missions in `missions/`, with their descriptions.

use clap::Args;
use medley_engine::plan::PlanOptions;
use serde_json::json;

use super::{compile_path, print_json};
use crate::output::OutputFormat;
use crate::{CliError, Context, exit, missions, print_data};

/// List the missions in missions/ with their descriptions
#[derive(Debug, Args)]
#[command(
    long_about = "List the missions in missions/ (the nearest such folder, up to the repository \
        root): each one's name (what `medley run NAME` takes), its step count and description. \
        A mission that does not compile is listed as invalid: `medley validate` says why.\n\n\
        With --output json: one JSON array, a mission per object: `name`, `path`, `mission` \
        (its name inside the file, or null), `valid`, `steps` (or null), `description` (or null).",
    after_help = "Examples:\n  medley missions\n  medley missions --output json"
)]
pub struct MissionsArgs {}

pub fn cmd_missions(ctx: &Context, _args: MissionsArgs) -> Result<u8, CliError> {
    let paths = missions::all(&ctx.cwd).map_err(CliError::invalid)?;
    let mut rows = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plan = compile_path(ctx, &path, &PlanOptions::default()).ok();
        rows.push(json!({
            "name": name,
            "path": path.display().to_string(),
            "mission": plan.as_ref().map(|p| p.mission.clone()),
            "valid": plan.is_some(),
            "steps": plan.as_ref().map(|p| p.steps.len()),
            "description": plan.as_ref().and_then(|p| p.description.clone()),
        }));
    }
    if ctx.output == OutputFormat::Json {
        print_json(&serde_json::Value::Array(rows))?;
        return Ok(exit::SUCCESS);
    }
    let text = |row: &serde_json::Value, key: &str| row[key].as_str().unwrap_or("").to_owned();
    let width = rows
        .iter()
        .map(|r| text(r, "name").len())
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    for row in &rows {
        let what = match row["steps"].as_u64() {
            Some(1) => "1 step".to_owned(),
            Some(n) => format!("{n} steps"),
            None => "invalid (`medley validate` says why)".to_owned(),
        };
        let line = format!(
            "{:<width$}  {what:<9}  {}",
            text(row, "name"),
            text(row, "description")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    print_data(&out)?;
    Ok(exit::SUCCESS)
}
