//! Finding the mission a command names: a path, a name in `missions/`, or the only one there.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum MissionArgError {
    #[error("no mission file at `{0}`")]
    #[diagnostic(help("check the path; a bare name is looked up as `missions/<name>.toml`"))]
    NoFile(String),
    #[error("no mission named `{name}`")]
    #[diagnostic(help("{}", list_help(.available, .dir)))]
    NotFound {
        name: String,
        dir: String,
        available: Vec<String>,
    },
    #[error("no mission given, and `{dir}` holds several")]
    #[diagnostic(help("name one: {}", names(.available)))]
    Several { dir: String, available: Vec<String> },
    #[error("no mission given, and there is none in `{dir}`")]
    #[diagnostic(help("create one with `medley init`, or give a mission file's path"))]
    None { dir: String },
}

fn names(available: &[String]) -> String {
    available
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_help(available: &[String], dir: &str) -> String {
    if available.is_empty() {
        format!("there is no mission in `{dir}`: create one with `medley init`")
    } else {
        format!("the missions in `{dir}` are {}", names(available))
    }
}

/// The `missions/` directory: in the current directory or the nearest ancestor that has one,
/// stopping at the repository root. Returned relative to the current directory.
pub fn missions_dir(cwd: &Path) -> PathBuf {
    let mut up = PathBuf::new();
    let mut dir = cwd.to_path_buf();
    loop {
        if dir.join("missions").is_dir() {
            return up.join("missions");
        }
        if medley_engine::git::is_top_level(&dir) || !dir.pop() {
            return PathBuf::from("missions");
        }
        up.push("..");
    }
}

/// Names of the `*.toml` files in `dir`, sorted.
pub fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every mission in `missions/` (paths relative to the current directory), sorted; an error
/// when there is none.
pub fn all(cwd: &Path) -> Result<Vec<PathBuf>, MissionArgError> {
    let dir = missions_dir(cwd);
    let names = available(&cwd.join(&dir));
    if names.is_empty() {
        return Err(MissionArgError::None {
            dir: dir.display().to_string(),
        });
    }
    Ok(names
        .iter()
        .map(|n| dir.join(format!("{n}.toml")))
        .collect())
}

/// Resolves MISSION (a path or a name) or, with none, the only mission in `missions/`.
pub fn resolve(cwd: &Path, arg: Option<&str>) -> Result<PathBuf, MissionArgError> {
    let dir = missions_dir(cwd);
    let dir_text = dir.display().to_string();
    match arg {
        Some(arg) => {
            let as_path = PathBuf::from(arg);
            if cwd.join(&as_path).is_file() {
                return Ok(as_path);
            }
            if arg.contains(['/', '\\']) || arg.ends_with(".toml") {
                return Err(MissionArgError::NoFile(arg.to_owned()));
            }
            let named = dir.join(format!("{arg}.toml"));
            if cwd.join(&named).is_file() {
                Ok(named)
            } else {
                Err(MissionArgError::NotFound {
                    name: arg.to_owned(),
                    dir: dir_text,
                    available: available(&cwd.join(&dir)),
                })
            }
        }
        None => {
            let all = available(&cwd.join(&dir));
            match all.as_slice() {
                [one] => Ok(dir.join(format!("{one}.toml"))),
                [] => Err(MissionArgError::None { dir: dir_text }),
                _ => Err(MissionArgError::Several {
                    dir: dir_text,
                    available: all,
                }),
            }
        }
    }
}
