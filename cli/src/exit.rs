//! medley's exit codes, mapped in one place.

use std::process::ExitCode;

/// Every step and gate passed (or the command did what it was asked).
pub const SUCCESS: u8 = 0;
/// A step, gate or budget failed.
pub const FAILED: u8 = 1;
/// An invalid mission, invalid usage, or a failed preflight.
pub const INVALID: u8 = 2;
/// The run ended waiting for a person: a result with `approve` needs `medley approve` or
/// `medley reject`.
pub const WAITING: u8 = 3;
/// Interrupted (Ctrl-C, SIGTERM or SIGHUP).
pub const INTERRUPTED: u8 = 130;

pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}
