use clap::Args;
use medley_engine::schema::mission_schema;

use crate::{CliError, Context, exit, missions, print_data};

/// Print the mission file's JSON Schema
#[derive(Debug, Args)]
#[command(
    long_about = "Print the JSON Schema of mission files, generated from medley's own types.\n\n\
        With --write, write it to missions/mission.schema.json, where a mission's \
        `#:schema mission.schema.json` line finds it (editors with TOML support read it offline).",
    after_help = "Example:\n  medley schema --write"
)]
pub struct SchemaArgs {
    /// Write it to missions/mission.schema.json instead of stdout
    #[arg(long)]
    pub write: bool,
}

pub fn cmd_schema(ctx: &Context, args: SchemaArgs) -> Result<u8, CliError> {
    let schema = mission_schema();
    if !args.write {
        print_data(&schema)?;
        return Ok(exit::SUCCESS);
    }
    let dir = missions::missions_dir(&ctx.cwd);
    let path = dir.join("mission.schema.json");
    fs_err::create_dir_all(ctx.cwd.join(&dir))
        .and_then(|()| fs_err::write(ctx.cwd.join(&path), schema))
        .map_err(|e| CliError::failed(super::init::WriteError(e)))?;
    ctx.status(&format!("wrote `{}`", path.display()));
    Ok(exit::SUCCESS)
}
