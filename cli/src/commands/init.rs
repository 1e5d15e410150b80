use clap::Args;
use medley_engine::schema::mission_schema;

use crate::{CliError, Context, exit};

/// The mission `medley init` writes: the same file as this repository's `missions/hello.toml`.
pub const HELLO: &str = include_str!("../../../missions/hello.toml");

/// Write a first mission and its schema in missions/
#[derive(Debug, Args)]
#[command(
    long_about = "Write missions/hello.toml, a first mission that runs with no agent installed \
        (command steps: a small DAG with a matrix and a gate, plus a commented agent step to \
        uncomment), and missions/mission.schema.json beside it. Refuses to overwrite either.",
    after_help = "Example:\n  medley init && medley run hello"
)]
pub struct InitArgs {}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot write file")]
pub struct WriteError(#[source] pub std::io::Error);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{0}` already exists")]
#[diagnostic(help("medley init never overwrites a file: move it aside first, or edit it"))]
pub struct Exists(String);

pub fn cmd_init(ctx: &Context, _args: InitArgs) -> Result<u8, CliError> {
    super::no_json(ctx, "init")?;
    let dir = ctx.cwd.join("missions");
    let files = [
        ("missions/hello.toml", HELLO.to_owned()),
        ("missions/mission.schema.json", mission_schema()),
    ];
    for (name, _) in &files {
        if ctx.cwd.join(name).exists() {
            return Err(CliError::invalid(Exists((*name).to_owned())));
        }
    }
    fs_err::create_dir_all(&dir).map_err(|e| CliError::failed(WriteError(e)))?;
    for (name, text) in &files {
        fs_err::write(ctx.cwd.join(name), text).map_err(|e| CliError::failed(WriteError(e)))?;
        ctx.status(&format!("wrote `{name}`"));
    }
    ctx.status("next: `medley run hello` (no agent needed), then uncomment its agent step");
    Ok(exit::SUCCESS)
}
