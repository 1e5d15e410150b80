//! The mission's own settings: its name, whole-number settings (`max_parallel`, `max_steps`,
//! `attempts`), `secrets` and `setup_files`.

use toml::Spanned;

use super::Compiler;
use crate::mission::diagnostics::{ErrorKind, MissionError};
use crate::plan::ids::{ID_RULE, id_help, is_valid_id, to_id};

impl<'m> Compiler<'m> {
    pub(super) fn mission_name(&mut self) -> String {
        let name = self.mission.name();
        if !is_valid_id(&name) {
            let error = MissionError::new(
                ErrorKind::InvalidId,
                format!("invalid mission name `{name}`"),
            );
            self.push(match &self.file.name {
                Some(n) => error.label(n.span(), "not a valid id").help(id_help(&name)),
                None => error
                    .label(0..0, "the name comes from the file name")
                    .help(format!(
                        "add `name = \"{}\"` at the top of the file; {}",
                        to_id(&name),
                        ID_RULE
                    )),
            });
        }
        name
    }

    pub(super) fn positive(&mut self, value: Option<&Spanned<i64>>, key: &str) -> Option<u32> {
        let value = value?;
        match u32::try_from(*value.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            Err(_) if *value.get_ref() > 0 => {
                self.push(
                    MissionError::new(ErrorKind::Value, format!("`{key}` is too large"))
                        .label(value.span(), format!("more than {}", u32::MAX))
                        .help(format!(
                            "write a whole number from 1 to {}, e.g. `{key} = 2`",
                            u32::MAX
                        )),
                );
                None
            }
            _ => {
                self.push(
                    MissionError::new(ErrorKind::Value, format!("`{key}` must be at least 1"))
                        .label(value.span(), "not a positive whole number")
                        .help(format!("write a whole number from 1 up, e.g. `{key} = 2`")),
                );
                None
            }
        }
    }

    /// The mission's `secrets`: names of environment variables.
    pub(super) fn secrets(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for name in self.file.secrets.iter().flatten() {
            let text = name.get_ref();
            let valid = text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                names.push(text.clone());
            } else {
                self.push(
                    MissionError::new(
                        ErrorKind::Value,
                        format!("`{text}` is not the name of an environment variable"),
                    )
                    .label(name.span(), "not a variable name")
                    .help("list the names of the variables that hold secrets, e.g. `\"OPENAI_API_KEY\"`"),
                );
            }
        }
        names
    }

    /// `setup_files`: valid globs, and only with a `setup`.
    pub(super) fn setup_files(&mut self) -> Option<Vec<String>> {
        let files = self.file.setup_files.clone()?;
        for glob in &files {
            self.check_glob(
                glob,
                "setup_files",
                "write a path or glob relative to the repository root, e.g. `package-lock.json` or `requirements*.txt`",
            );
        }
        if self.file.setup.is_none()
            && let Some(first) = files.first()
        {
            self.push(
                MissionError::new(
                    ErrorKind::Value,
                    "`setup_files` names the files of a `setup`, but there is no `setup`",
                )
                .label(first.span(), "no `setup` uses these")
                .help("add `setup = \"...\"` (e.g. `setup = \"npm ci\"`), or remove `setup_files`"),
            );
        }
        Some(files.iter().map(|f| f.get_ref().clone()).collect())
    }
}
