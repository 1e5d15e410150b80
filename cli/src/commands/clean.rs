//! `medley clean`: what ended runs left (worktrees, kept pool slots; with `--runs`, old
//! records and branches; with `--pool`, the pool).

use clap::Args;
use medley_engine::history::{self};
use medley_engine::run::worktrees_root;

use super::repo;
use crate::{CliError, Context, exit};

/// Remove what ended runs left: worktrees, and with --runs old records
#[derive(Debug, Args)]
#[command(
    long_about = "Remove the worktrees of ended runs and whatever killed runs left, and free the \
        pooled worktrees failed steps kept for a look; say how much disk the pool of warm \
        worktrees holds. With --pool, also remove that pool (the next run starts cold). With \
        --cache, also empty the step cache (step results and merge resolutions). Live runs are \
        never touched; running it twice is safe.\n\n\
        With --runs, also remove each ended run's record (journal, logs, prompts), its hidden \
        refs and its result branch `medley/<mission>/<run>`, except:\n  \
        - the newest run of each mission (so `last` still names it): --all removes it too;\n  \
        - a run whose result was never applied (`medley apply`): it is kept whole, record and \
        branch, and listed; --force removes it too, and any `medley/<mission>/<run>` branch whose \
        run has no record left.\n\
        So `medley clean --runs --all --force` leaves no run record and no `medley/*` branch.",
    after_help = "Examples:\n  medley clean\n  medley clean --runs\n  medley clean --runs --all --force\n  medley clean --pool"
)]
pub struct CleanArgs {
    /// Also remove ended runs' records, refs and result branches (not each mission's newest)
    #[arg(long)]
    pub runs: bool,
    /// With --runs, remove each mission's newest run too
    #[arg(long, requires = "runs")]
    pub all: bool,
    /// With --runs, remove runs whose result was never applied, and stray result branches
    #[arg(long, requires = "runs")]
    pub force: bool,
    /// Also empty the step cache (step results and merge resolutions)
    #[arg(long)]
    pub cache: bool,
    /// Also remove the pool of warm worktrees (their build caches go with them)
    #[arg(long)]
    pub pool: bool,
}

pub fn cmd_clean(ctx: &Context, args: CleanArgs) -> Result<u8, CliError> {
    super::no_json(ctx, "clean")?;
    let repo = repo(ctx)?;
    let worktrees = worktrees_root(None, &repo).map_err(CliError::failed)?;
    let runs = history::CleanRuns {
        runs: args.runs,
        all: args.all,
        force: args.force,
    };
    let cleaned = history::clean(&repo, &worktrees, runs, args.pool, ctx.settings.grace)
        .map_err(CliError::failed)?;
    let mut said = false;
    for (run, step) in &cleaned.released_slots {
        ctx.status(&format!(
            "released the worktree step {step} of run {run} kept for a look"
        ));
        said = true;
    }
    if cleaned.removed_slots > 0 {
        ctx.status(&format!(
            "removed the pool of warm worktrees ({} worktree{})",
            cleaned.removed_slots,
            if cleaned.removed_slots == 1 { "" } else { "s" }
        ));
        said = true;
    }
    for run in &cleaned.worktrees {
        ctx.status(&format!("removed the worktrees of run {run}"));
        said = true;
    }
    for run in &cleaned.runs {
        ctx.status(&format!("removed run {run} (its record and refs)"));
        said = true;
    }
    for branch in &cleaned.branches {
        ctx.status(&format!("removed branch {branch}"));
        said = true;
    }
    for (run, branch) in &cleaned.kept_branches {
        let short = history::short_id(&repo.git_dir, run);
        ctx.status(&format!(
            "kept run {short} and its branch {branch}: its result was never applied \
             (`medley apply {short}` applies it; `medley clean --runs --force` removes it)"
        ));
        said = true;
    }
    for branch in &cleaned.stray_branches {
        ctx.status(&format!(
            "kept branch {branch}: its run has no record left (`medley clean --runs --force` removes it)"
        ));
        said = true;
    }
    if args.cache {
        let count = medley_engine::cache::clear(&repo).map_err(CliError::failed)?;
        if count > 0 {
            ctx.status(&format!(
                "emptied the cache ({count} result{})",
                if count == 1 { "" } else { "s" }
            ));
            said = true;
        }
    }
    if !said {
        ctx.status("nothing to clean");
    }
    if cleaned.pool_bytes > 0 {
        ctx.status(&format!(
            "the pool of warm worktrees holds {} (`medley clean --pool` removes it)",
            bytes(cleaned.pool_bytes)
        ));
    }
    Ok(exit::SUCCESS)
}

/// A size in bytes for people: `512 B`, `3.4 MB`, `1.2 GB`.
fn bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
