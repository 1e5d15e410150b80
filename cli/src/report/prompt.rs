//! The approval prompt of the live view: a result that waits for a person is summed up (files
//! changed, the gate it passed), and the person approves it, rejects it with a reason, reads
//! its diff in their pager, or leaves it waiting.

use std::io::{BufRead as _, Write};

use medley_engine::run::{ApprovalRequest, Decision};

use crate::style;

/// Files listed by name in the summary; more are counted.
const FILES_SHOWN: usize = 10;

/// Asks about `request` on `out`, reading answers from `input` (a line, `None` at the end);
/// `pager` shows a diff. The end of the input leaves the result waiting.
pub fn ask(
    request: &ApprovalRequest,
    input: &mut dyn FnMut() -> Option<String>,
    out: &mut dyn Write,
    pager: &dyn Fn(&str),
    color: bool,
) -> Decision {
    let who = request.step.as_deref().unwrap_or("the mission's result");
    let _ = writeln!(
        out,
        "\n{} {}",
        style::yellow(&format!("{who} waits for your approval:"), color),
        request.message
    );
    let commit = request.commit.get(..10).unwrap_or(&request.commit);
    let n = request.files.len();
    let _ = writeln!(
        out,
        "  result {commit}: {n} file{} changed",
        if n == 1 { "" } else { "s" }
    );
    for file in request.files.iter().take(FILES_SHOWN) {
        let _ = writeln!(out, "    {file}");
    }
    if n > FILES_SHOWN {
        let _ = writeln!(out, "    and {} more", n - FILES_SHOWN);
    }
    match &request.gate {
        Some(gate) => {
            let first = gate.lines().next().unwrap_or("");
            let _ = writeln!(out, "  gate `{first}` passed");
        }
        None => {
            let _ = writeln!(out, "  no gate");
        }
    }
    loop {
        let _ = write!(
            out,
            "{} ",
            style::bold("[a]pprove, [r]eject, [d]iff, [l]eave waiting?", color)
        );
        let _ = out.flush();
        let Some(answer) = input() else {
            return Decision::Leave;
        };
        match answer.trim().to_lowercase().as_str() {
            "a" | "approve" | "y" | "yes" => return Decision::Approve,
            "l" | "leave" | "w" | "wait" => return Decision::Leave,
            "d" | "diff" => pager(&request.diff),
            "r" | "reject" | "n" | "no" => loop {
                let _ = write!(out, "why (the reason is kept, and heard by a retry)? ");
                let _ = out.flush();
                let Some(reason) = input() else {
                    return Decision::Leave;
                };
                let reason = reason.trim();
                if !reason.is_empty() {
                    return Decision::Reject(reason.to_owned());
                }
            },
            _ => {
                let _ = writeln!(
                    out,
                    "type `a` to approve, `r` to reject, `d` for the diff, `l` to leave it waiting"
                );
            }
        }
    }
}

/// The lines typed on stdin, read by a thread of their own: a prompt waits for the next one,
/// or gives up when the run no longer listens (it was stopped).
pub struct Typed(std::sync::mpsc::Receiver<String>);

impl Typed {
    pub fn start() -> Typed {
        let (lines, typed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            loop {
                let mut line = String::new();
                match input.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if lines.send(line).is_err() => break,
                    Ok(_) => {}
                }
            }
        });
        Typed(typed)
    }

    /// The next line, `None` at the end of stdin or once `gone()` says no one waits for it.
    pub fn next(&self, gone: impl Fn() -> bool) -> Option<String> {
        loop {
            match self.0.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) => return Some(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !gone() => {}
                Err(_) => return None,
            }
        }
    }
}

/// Shows `diff` in the user's pager (`MEDLEY_PAGER`, else `PAGER`, else `less`); where none
/// can start, on stderr.
pub fn page(pager: Option<&str>, diff: &str) {
    let shown = if diff.is_empty() {
        "(no change)\n"
    } else {
        diff
    };
    let command = pager.unwrap_or("less -R");
    let child = std::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(shown.as_bytes());
            }
            let _ = child.wait();
        }
        Err(_) => {
            let _ = std::io::stderr().lock().write_all(shown.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> (ApprovalRequest, tokio::sync::oneshot::Receiver<Decision>) {
        let (reply, decided) = tokio::sync::oneshot::channel();
        (
            ApprovalRequest {
                step: Some("plan".to_owned()),
                message: "Is the plan sound?".to_owned(),
                commit: "0123456789abcdef".to_owned(),
                files: vec!["PLAN.md".to_owned()],
                gate: Some("test -s PLAN.md".to_owned()),
                diff: "+step one\n".to_owned(),
                reply,
            },
            decided,
        )
    }

    fn answer(typed: &str) -> (Decision, String, Vec<String>) {
        let (request, _decided) = request();
        let mut out = Vec::new();
        let paged = std::cell::RefCell::new(Vec::new());
        let mut lines = typed.lines().map(str::to_owned);
        let decision = ask(
            &request,
            &mut || lines.next(),
            &mut out,
            &|diff| paged.borrow_mut().push(diff.to_owned()),
            false,
        );
        (
            decision,
            String::from_utf8(out).unwrap(),
            paged.into_inner(),
        )
    }

    #[test]
    fn the_summary_then_approve() {
        let (decision, out, _) = answer("a\n");
        assert_eq!(decision, Decision::Approve);
        assert!(
            out.contains("plan waits for your approval: Is the plan sound?"),
            "{out}"
        );
        assert!(out.contains("result 0123456789: 1 file changed"), "{out}");
        assert!(out.contains("    PLAN.md"), "{out}");
        assert!(out.contains("gate `test -s PLAN.md` passed"), "{out}");
    }

    #[test]
    fn a_rejection_asks_for_its_reason_and_the_diff_goes_to_the_pager() {
        let (decision, _, paged) = answer("x\nd\nr\n\nuse fewer steps\n");
        assert_eq!(decision, Decision::Reject("use fewer steps".to_owned()));
        assert_eq!(paged, vec!["+step one\n".to_owned()]);
    }

    #[test]
    fn leaving_it_or_the_end_of_input_leaves_it_waiting() {
        assert_eq!(answer("l\n").0, Decision::Leave);
        assert_eq!(answer("").0, Decision::Leave);
        assert_eq!(answer("r\n").0, Decision::Leave);
    }
}
