//! Templates: minijinja with strict undefined, in two flavours.
//!
//! Prompts are plain text. In a template rendered into a shell command (`run`, `gate`,
//! `setup`) no value is ever written as text: each becomes a reference to an environment
//! variable set for that process, written for the quoting context it sits in (see
//! [`super::shell`]), so a variable can never inject shell syntax. A list becomes separate
//! words with `| shell_args`. `| safe`, `{% autoescape %}`, `{% filter %}` and `{% set %}`
//! blocks, and contexts that cannot be made safe are refused before anything runs.
//!
//! This file holds [`Templates`] (the two minijinja environments) and [`Flavor`].
//! `shell_render.rs` turns a shell template's output into a [`ShellCommand`];
//! `shell_check.rs` finds what a shell template may not do before the run; `context.rs` is what
//! a template sees (`steps`, `vars`, placeholders, `file()`); `tests.rs` is the injection corpus.

mod context;
mod shell_check;
mod shell_render;
#[cfg(test)]
mod tests;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, UndefinedBehavior};

pub use context::{
    CONTEXT_NAMES, FAILURE_FIELDS, STEP_FIELDS, StepKeys, StepsContext, context, dashed_step_refs,
    file_function, map, placeholder_failure, placeholder_step,
};
pub use shell_check::{Problem, shell_problems};
pub use shell_render::ShellCommand;
use shell_render::{Values, assemble, shell_args, shell_formatter};

/// Where a template is rendered, which decides how values are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A prompt: values are written as they are.
    Text,
    /// A shell command: every value is passed as an environment variable.
    Shell,
}

/// The parsed templates of a plan, by name, in their two environments.
#[derive(Clone)]
pub struct Templates {
    text: Environment<'static>,
    shell: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    pub fn new() -> Templates {
        Templates {
            text: environment(Flavor::Text),
            shell: environment(Flavor::Shell),
        }
    }

    fn env(&self, flavor: Flavor) -> &Environment<'static> {
        match flavor {
            Flavor::Text => &self.text,
            Flavor::Shell => &self.shell,
        }
    }

    /// Parses and keeps a template under `name`.
    pub fn add(&mut self, name: &str, flavor: Flavor, source: &str) -> Result<(), Error> {
        let env = match flavor {
            Flavor::Text => &mut self.text,
            Flavor::Shell => &mut self.shell,
        };
        env.add_template_owned(name.to_owned(), source.to_owned())
    }

    pub fn contains(&self, name: &str, flavor: Flavor) -> bool {
        self.env(flavor).get_template(name).is_ok()
    }

    /// Renders the template kept under `name`; a shell template renders as its display.
    pub fn render(&self, name: &str, flavor: Flavor, context: &Value) -> Result<String, Error> {
        match flavor {
            Flavor::Text => self.text.get_template(name)?.render(context),
            Flavor::Shell => Ok(self.render_shell(name, context)?.display),
        }
    }

    /// Renders the shell template kept under `name`.
    pub fn render_shell(&self, name: &str, context: &Value) -> Result<ShellCommand, Error> {
        let captured = self.shell.get_template(name)?.render_captured(context)?;
        let values = captured
            .state()
            .get_extension::<Values>()
            .map(|v| v.0.as_slice())
            .unwrap_or_default();
        assemble(captured.output(), values)
    }

    /// Evaluates an `if` expression to a boolean (Jinja truthiness).
    pub fn eval(&self, expression: &str, context: &Value) -> Result<bool, Error> {
        let expr = self.text.compile_expression(expression)?;
        Ok(expr.eval(context)?.is_true())
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are a valid syntax")
}

fn environment(flavor: Flavor) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_syntax(syntax());
    env.add_filter("shell_args", shell_args);
    if flavor == Flavor::Shell {
        // `| escape` would otherwise HTML-escape the value.
        env.set_auto_escape_callback(|_| AutoEscape::Custom("shell".into()));
        env.set_formatter(shell_formatter);
    }
    env
}
