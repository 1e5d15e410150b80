//! Watch mode: run a mission, then run it again whenever the working tree or the mission file
//! changes, reusing every step whose key the change does not alter (the cache does that).
//!
//! A change that arrives mid-run stops only the running steps it can affect (their `inputs`
//! match a changed file, they have no `inputs`, or the mission itself changed); the others run
//! on to their end, their results land in the cache, and the next run takes them from there
//! instead of starting a twin. Paid agent work is never thrown away for a change it cannot see.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use tokio::sync::{mpsc, watch};

use crate::event::{Body, Event};
use crate::git::Repo;
use crate::mission::{Mission, MissionErrors};
use crate::plan::{Plan, PlanOptions, compile};
use crate::run::{Control, RunError, RunOptions, RunRecord, RunSummary};

/// What watch mode tells its user, besides the runs' own events.
#[derive(Debug)]
pub enum Notice {
    /// Files changed (paths relative to the repository), and whether the mission file did.
    Changed { files: Vec<String>, mission: bool },
    /// A running step the change affects is being stopped; the others run on.
    Stopping {
        steps: Vec<String>,
        keeping: Vec<String>,
    },
    /// The mission file does not compile; watch waits for the next change.
    Invalid(Box<MissionErrors>),
    /// A run could not start or ended in error; watch goes on.
    Failed(RunError),
    /// A run ended.
    Ended(RunSummary),
    /// Watching, after a run: waiting for changes.
    Waiting,
}

/// Watch mode's settings.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub run: RunOptions,
    /// The mission file, as the user named it (relative to `run.cwd`).
    pub mission: PathBuf,
    pub sets: Vec<(String, String)>,
    pub debounce: Duration,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WatchError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("cannot watch `{path}`")]
    #[diagnostic(help(
        "on Linux, raise the inotify watch limit: `sysctl fs.inotify.max_user_watches=524288`"
    ))]
    Notify {
        path: PathBuf,
        #[source]
        source: notify_debouncer_full::notify::Error,
    },
}

/// Whether an event kind can change what a step sees: a file created, written, renamed or
/// removed (not read, not a metadata-only change such as an access time).
fn changes_content(kind: &notify_debouncer_full::notify::EventKind) -> bool {
    use notify_debouncer_full::notify::EventKind;
    use notify_debouncer_full::notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// The changed paths of a burst of file events, relative to the repository, without `.git`,
/// ignored files, and the mission's own run state.
fn relevant(repo: &git2::Repository, root: &Path, paths: &[PathBuf]) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for path in paths {
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        if relative
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == ".git")
            || relative.as_os_str().is_empty()
        {
            continue;
        }
        if repo.is_path_ignored(relative).unwrap_or(false) || path.is_dir() {
            continue;
        }
        changed.insert(relative.to_string_lossy().into_owned());
    }
    changed
}

fn load(options: &WatchOptions) -> Result<(Plan, RunRecord), Box<MissionErrors>> {
    let path = options.run.cwd.join(&options.mission);
    let source = fs_err::read_to_string(&path).map_err(|e| {
        Box::new(MissionErrors::new(
            &options.mission.display().to_string(),
            "",
            vec![crate::mission::MissionError::new(
                crate::mission::ErrorKind::Value,
                format!("cannot read the mission file: {e}"),
            )],
        ))
    })?;
    let mission = Mission::parse(&options.mission, source.clone()).map_err(Box::new)?;
    let plan = compile(
        &mission,
        &PlanOptions {
            sets: options.sets.clone(),
            ..PlanOptions::default()
        },
    )
    .map_err(|e| match e {
        crate::plan::compile::CompileError::Mission(errors) => errors,
        e @ (crate::plan::compile::CompileError::Set(_)
        | crate::plan::compile::CompileError::Only(_)) => Box::new(MissionErrors::new(
            &options.mission.display().to_string(),
            &source,
            vec![crate::mission::MissionError::new(
                crate::mission::ErrorKind::Value,
                e.to_string(),
            )],
        )),
    })?;
    let record = RunRecord {
        mission_path: options.mission.display().to_string(),
        mission_source: source,
        sets: options.sets.clone(),
        only: None,
        max_parallel: None,
        ..RunRecord::default()
    };
    Ok((plan, record))
}

/// Each step's `inputs` globs; `None` when it has none (it sees every file). A plan's globs
/// compile (`validate` refuses a bad one, with its span); were one not to, its step would be
/// taken to see every file.
type Inputs = std::collections::HashMap<String, Option<globset::GlobSet>>;

fn inputs_of(plan: &Plan) -> Inputs {
    plan.steps
        .iter()
        .map(|s| {
            let globs = s
                .inputs
                .as_deref()
                .and_then(|i| crate::cache::input_globs(i).ok());
            (s.id.clone(), globs)
        })
        .collect()
}

/// Whether a change to `files` (or to the mission) can alter step `step`'s key. A child of a
/// matrix read from a step (made as the run went) has its declared step's `inputs`.
fn affects(inputs: &Inputs, step: &str, files: &BTreeSet<String>, mission: bool) -> bool {
    let declared = step.split_once('.').map_or(step, |(d, _)| d);
    match inputs.get(step).or_else(|| inputs.get(declared)) {
        Some(Some(globs)) if !mission => files.iter().any(|f| globs.is_match(f)),
        _ => true,
    }
}

/// Whether `paths` include the mission file.
fn touches(paths: &[PathBuf], mission: &Path) -> bool {
    paths
        .iter()
        .any(|p| p == mission || std::fs::canonicalize(p).is_ok_and(|c| c == mission))
}

/// Runs the mission, then again on every change, until `cancel` turns true.
pub async fn watch(
    options: WatchOptions,
    events: mpsc::UnboundedSender<Event>,
    notices: mpsc::UnboundedSender<Notice>,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), WatchError> {
    let repo = Repo::discover(&options.run.cwd)?;
    let root = repo.root.clone();
    let git = repo.open()?;
    let mission_path = std::fs::canonicalize(options.run.cwd.join(&options.mission))
        .unwrap_or_else(|_| options.run.cwd.join(&options.mission));
    let (file_tx, mut file_rx) = mpsc::unbounded_channel();
    let mut debouncer = notify_debouncer_full::new_debouncer(
        options.debounce,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = result {
                // Reads (medley's own included) and metadata-only changes are not changes.
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|e| changes_content(&e.event.kind))
                    .flat_map(|e| e.event.paths)
                    .collect();
                if !paths.is_empty() {
                    let _ = file_tx.send(paths);
                }
            }
        },
    )
    .map_err(|source| WatchError::Notify {
        path: root.clone(),
        source,
    })?;
    debouncer
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify {
            path: root.clone(),
            source,
        })?;

    let mut first = true;
    loop {
        if !first {
            // Wait for a change (or the end).
            let mut paths: Vec<PathBuf> = tokio::select! {
                received = file_rx.recv() => match received {
                    Some(paths) => paths,
                    None => return Ok(()),
                },
                () = crate::process::cancelled(&mut cancel) => return Ok(()),
            };
            while let Ok(more) = file_rx.try_recv() {
                paths.extend(more);
            }
            let mission_changed = touches(&paths, &mission_path);
            let files = relevant(&git, &root, &paths);
            if files.is_empty() && !mission_changed {
                continue;
            }
            let _ = notices.send(Notice::Changed {
                files: files.into_iter().collect(),
                mission: mission_changed,
            });
        }
        first = false;
        let (plan, record) = match load(&options) {
            Ok(loaded) => loaded,
            Err(errors) => {
                let _ = notices.send(Notice::Invalid(errors));
                continue;
            }
        };
        // One run, with a control channel for changes that arrive while it goes on.
        let (control_tx, control_rx) = watch::channel(Control::default());
        let mut run_options = options.run.clone();
        run_options.record = Some(record);
        run_options.control = Some(control_rx);
        run_options.base = None;
        let (run_events_tx, mut run_events) = mpsc::unbounded_channel();
        let run_cancel = cancel.clone();
        let inputs = inputs_of(&plan);
        let mut task = tokio::spawn(async move {
            let plan = crate::run::checked(plan).await?;
            crate::run::run(plan, run_options, run_events_tx, run_cancel).await
        });
        let mut running: BTreeSet<String> = BTreeSet::new();
        let mut pending_files: BTreeSet<String> = BTreeSet::new();
        let mut pending_mission = false;
        let mut draining = false;
        let ended = loop {
            tokio::select! {
                event = run_events.recv() => {
                    let Some(event) = event else { continue };
                    match &event.body {
                        Body::StepStarted { step, .. } => { running.insert(step.clone()); }
                        Body::StepFinished { step, .. } => { running.remove(step); }
                        _ => {}
                    }
                    let _ = events.send(event);
                }
                received = file_rx.recv(), if !*cancel.borrow() => {
                    let Some(paths) = received else { continue };
                    let mission_changed = touches(&paths, &mission_path);
                    let files = relevant(&git, &root, &paths);
                    if files.is_empty() && !mission_changed {
                        continue;
                    }
                    pending_mission |= mission_changed;
                    pending_files.extend(files.iter().cloned());
                    let (stop, keep): (Vec<String>, Vec<String>) = running
                        .iter()
                        .cloned()
                        .partition(|s| affects(&inputs, s, &pending_files, pending_mission));
                    let _ = notices.send(Notice::Changed { files: files.into_iter().collect(), mission: mission_changed });
                    if !stop.is_empty() || !draining {
                        let _ = notices.send(Notice::Stopping { steps: stop.clone(), keeping: keep });
                    }
                    draining = true;
                    let _ = control_tx.send(Control { drain: true, stop });
                }
                joined = &mut task => {
                    // The rest of the run's events.
                    while let Ok(event) = run_events.try_recv() {
                        let _ = events.send(event);
                    }
                    break joined;
                }
            }
        };
        match ended {
            Ok(Ok(summary)) => {
                let _ = notices.send(Notice::Ended(summary));
            }
            Ok(Err(e)) => {
                let _ = notices.send(Notice::Failed(e));
            }
            Err(e) => {
                let why = if e.is_panic() {
                    "its task panicked"
                } else {
                    "its task was aborted"
                };
                let _ = notices.send(Notice::Failed(RunError::Internal(why.to_owned())));
            }
        }
        if *cancel.borrow() {
            return Ok(());
        }
        if draining {
            // A change came mid-run: run again at once, from a fresh snapshot.
            first = true;
            continue;
        }
        let _ = notices.send(Notice::Waiting);
    }
}
