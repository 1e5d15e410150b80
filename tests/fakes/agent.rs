#![allow(
    clippy::print_stderr,
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::exit,
    clippy::unwrap_used
)]
//! A fake agent CLI for medley's tests. Installed on PATH under each real CLI's name (`claude`,
//! `codex`, `gemini`, `qwen`, `cursor-agent`, `kimi`), it acts as the CLI it is called as:
//! it takes the real flags, refuses what the real CLI refuses, and prints the event stream the
//! real CLI printed (`shared/samples/`, replayed with the session id swapped in).
//!
//! `MEDLEY_FAKE_SCRIPT` names a script file; each call of CLI X takes the next line starting
//! with `X:` (the last one again when they run out); a line starting `X[WORDS]:` is taken
//! instead, without counting, by every call of X whose prompt contains WORDS (the first such
//! line), so that calls running at once can each be told what to do. A line is `;`-separated
//! actions:
//!
//! - `write PATH TEXT`, `append PATH TEXT`: change a file in the cwd (`\n` in TEXT is a newline),
//!   only where the CLI's permission flags allow writing;
//! - `resolve PATH [ours|theirs|both]`: edit git's conflict markers out of PATH, keeping that
//!   side of each block (`both`, the default: the first side's lines, then the second's);
//! - `ok`: the success stream (the default); `noop`: the success stream, writing nothing;
//! - `401`, `unreachable`, `denied`: the captured stream of that failure (codex unreachable
//!   never ends: it keeps printing "waiting for network" errors);
//! - `hang`: print the first event, then wait until killed;
//! - `sleep MS`; `pid PATH` (append this process's pid to PATH); `exit N` (after the stream);
//! - `await PATH N`: wait until PATH has N lines (default 1), e.g. pids other calls wrote;
//! - `linger`: after the stream, keep running (as Cursor and Kimi Code can).
//! - kimi only: `429`, `nokey`, `noconfig` (the captured failures of those names), `legacy` (the
//!   legacy Python kimi-cli stub's notice, exit 0). `MEDLEY_FAKE_KIMI=legacy` makes `--version`
//!   answer as that stub; `MEDLEY_FAKE_KIMI=old-node` makes every call fail as Kimi Code does
//!   on Node 20 (a `SyntaxError`, exit 1). Kimi's `unreachable` keeps retrying, never ending.
//!
//! Every call is recorded in `<script>.calls.jsonl`: the CLI, argv, cwd and prompt received.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = Path::new(&args[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv = &args[1..];
    let code = match cli.as_str() {
        "claude" | "codex" | "gemini" | "qwen" | "cursor-agent" | "kimi" => run(&cli, argv),
        other => {
            eprintln!("fake-agent: unknown CLI name `{other}`");
            2
        }
    };
    std::process::exit(code);
}

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// The last value of a repeated flag (the real CLIs let the last one win).
fn last_flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .enumerate()
        .filter(|(_, a)| *a == name)
        .filter_map(|(i, _)| argv.get(i + 1))
        .next_back()
        .map(String::as_str)
}

fn has(argv: &[String], name: &str) -> bool {
    argv.iter().any(|a| a == name)
}

struct Call {
    session: String,
    resumed: bool,
    can_write: bool,
    prompt: String,
}

fn run(cli: &str, argv: &[String]) -> i32 {
    if cli == "kimi" {
        match std::env::var("MEDLEY_FAKE_KIMI").as_deref() {
            Ok("old-node") => {
                eprintln!(
                    "file:///usr/lib/node_modules/@moonshot-ai/kimi-code/dist/cli.js:1\nSyntaxError: The requested module 'node:zlib' does not provide an export named 'zstdCompressSync'\n\nNode.js v20.20.2"
                );
                return 1;
            }
            Ok("legacy") => {
                let sample = if argv == ["--version"] {
                    "kimi-legacy-version"
                } else {
                    "kimi-legacy-print"
                };
                print!(
                    "{}",
                    std::fs::read_to_string(format!("{SAMPLES}/{sample}.stdout.txt"))
                        .unwrap_or_default()
                );
                return 0;
            }
            _ => {}
        }
    }
    if argv == ["--version"] {
        // The versions the samples were captured with, unless a test asks for another.
        if let Ok(version) = std::env::var("MEDLEY_FAKE_VERSION") {
            println!("{version}");
            return 0;
        }
        println!(
            "{}",
            match cli {
                "claude" => "2.1.330 (Claude Code)",
                "codex" => "codex-cli 0.169.0",
                "gemini" => "0.61.0",
                "qwen" => "0.24.4",
                "kimi" => "2.1.0",
                _ => "0.1.0",
            }
        );
        return 0;
    }

    let root = nix_uid_is_root() || std::env::var("MEDLEY_FAKE_ROOT").as_deref() == Ok("1");
    // What each real CLI refuses, with its own words and exit code.
    let call = match cli {
        "claude" => {
            if !has(argv, "-p") {
                eprintln!("fake claude: only -p mode is faked");
                return 2;
            }
            if flag(argv, "--output-format") == Some("stream-json") && !has(argv, "--verbose") {
                eprintln!(
                    "Error: When using --print, --output-format=stream-json requires --verbose"
                );
                return 1;
            }
            let mode = last_flag(argv, "--permission-mode");
            let bypass =
                mode == Some("bypassPermissions") || has(argv, "--dangerously-skip-permissions");
            if bypass && root && std::env::var("IS_SANDBOX").as_deref() != Ok("1") {
                eprintln!(
                    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
                );
                return 1;
            }
            let resume = flag(argv, "--resume");
            Call {
                session: resume
                    .or(flag(argv, "--session-id"))
                    .unwrap_or("00000000-0000-4000-8000-000000000001")
                    .to_owned(),
                resumed: resume.is_some(),
                can_write: bypass || mode == Some("acceptEdits"),
                prompt: flag(argv, "-p").unwrap_or("").to_owned(),
            }
        }
        "codex" => {
            if has(argv, "--full-auto") {
                eprintln!(
                    "error: unexpected argument '--full-auto' found\n\n  tip: to pass '--full-auto' as a value, use '-- --full-auto'\n\nUsage: codex exec [OPTIONS] [PROMPT]\n\nFor more information, try '--help'."
                );
                return 2;
            }
            if argv.first().map(String::as_str) != Some("exec") || !has(argv, "--json") {
                eprintln!("fake codex: only `exec --json` is faked");
                return 2;
            }
            let resume_at = argv.iter().position(|a| a == "resume");
            let thread = resume_at.and_then(|i| argv.get(i + 1)).cloned();
            let sandbox = last_flag(argv, "--sandbox");
            Call {
                session: thread.clone().unwrap_or_else(|| {
                    format!("01a20c2d-fake-7d82-a6c4-{:012x}", std::process::id())
                }),
                resumed: thread.is_some(),
                can_write: sandbox == Some("workspace-write")
                    || sandbox == Some("danger-full-access")
                    || has(argv, "--dangerously-bypass-approvals-and-sandbox"),
                prompt: argv.last().cloned().unwrap_or_default(),
            }
        }
        "gemini" | "qwen" => {
            if cli == "gemini"
                && !has(argv, "--skip-trust")
                && std::env::var("GEMINI_CLI_TRUST_WORKSPACE").as_deref() != Ok("true")
            {
                eprintln!(
                    "The current folder is not trusted. Run with --skip-trust or trust it first."
                );
                return 55;
            }
            let resume = flag(argv, "--resume");
            Call {
                session: resume
                    .or(flag(argv, "--session-id"))
                    .unwrap_or("e1aef7d2-e925-44e4-aa1d-000000000001")
                    .to_owned(),
                resumed: resume.is_some(),
                can_write: last_flag(argv, "--approval-mode") == Some("yolo")
                    || has(argv, "--yolo"),
                prompt: flag(argv, "-p").unwrap_or("").to_owned(),
            }
        }
        "kimi" => {
            if ["--yolo", "--auto", "--plan"].iter().any(|f| has(argv, f)) && has(argv, "-p") {
                eprintln!("error: Cannot combine --prompt with --yolo.");
                return 1;
            }
            let resume = flag(argv, "-S").or(flag(argv, "--session"));
            Call {
                session: resume.map(str::to_owned).unwrap_or_else(|| {
                    format!(
                        "session_d9f2ee36-6d32-4057-8d10-{:012x}",
                        std::process::id()
                    )
                }),
                resumed: resume.is_some(),
                can_write: true,
                prompt: flag(argv, "-p").unwrap_or("").to_owned(),
            }
        }
        _ => {
            // cursor-agent: not captured; the stream follows AGENTS.md section 6.
            let resume = flag(argv, "--resume");
            Call {
                session: resume
                    .unwrap_or("c0ffee00-0000-4000-8000-000000000001")
                    .to_owned(),
                resumed: resume.is_some(),
                can_write: has(argv, "--force"),
                prompt: flag(argv, "-p").unwrap_or("").to_owned(),
            }
        }
    };
    let mut stdin = String::new();
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let script = std::env::var_os("MEDLEY_FAKE_SCRIPT").map(PathBuf::from);
    record(script.as_deref(), cli, argv, &call.prompt, &stdin);
    let line = script
        .as_deref()
        .map(|s| next_line(s, cli, &call.prompt))
        .unwrap_or_default();
    let mut case = "ok";
    let mut exit = None;
    let mut writes = true;
    let mut linger = false;
    for action in line.split(';').map(str::trim).filter(|a| !a.is_empty()) {
        let mut words = action.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("write"), Some(path), text) | (Some("append"), Some(path), text) => {
                if writes && call.can_write {
                    let text = text.unwrap_or("").replace("\\n", "\n");
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(action.starts_with("append"))
                        .truncate(action.starts_with("write"))
                        .open(path)
                        .expect("the fake can write in its cwd");
                    file.write_all(text.as_bytes()).expect("a write");
                }
            }
            (Some("resolve"), Some(path), side) => {
                if writes && call.can_write {
                    let text = std::fs::read_to_string(path).expect("a conflicted file");
                    std::fs::write(path, resolve(&text, side.unwrap_or("both"))).expect("a write");
                }
            }
            (Some("noop"), _, _) => writes = false,
            (Some("linger"), _, _) => linger = true,
            (Some("sleep"), Some(ms), _) => {
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)))
            }
            (Some("pid"), Some(path), _) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("a pid file");
                // One write, so that concurrent calls appending to one file never interleave.
                file.write_all(format!("{}\n", std::process::id()).as_bytes())
                    .expect("a write");
            }
            (Some("await"), Some(path), n) => {
                // Until PATH has N lines (1 by default): another call got somewhere.
                let n: usize = n.and_then(|n| n.parse().ok()).unwrap_or(1);
                while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            (Some("exit"), Some(n), _) => exit = n.parse().ok(),
            (Some(c @ ("ok" | "401" | "unreachable" | "denied" | "hang")), _, _) => case = c,
            (Some(c @ ("429" | "nokey" | "noconfig" | "legacy")), _, _) if cli == "kimi" => {
                case = c
            }
            _ => {
                eprintln!("fake-agent: unknown action `{action}`");
                return 2;
            }
        }
    }
    let case = if case == "ok" && !call.can_write {
        "denied"
    } else {
        case
    };
    let code = replay(cli, case, &call, exit);
    let _ = std::io::stdout().flush();
    if linger {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    code
}

/// `text` with each conflict block replaced by its `side`'s lines (`both`: ours, then theirs).
fn resolve(text: &str, side: &str) -> String {
    let mut out = String::new();
    // 0: outside a block; 1: ours; 2: the diff3 base; 3: theirs.
    let mut state = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        match state {
            0 if bare.starts_with("<<<<<<<") => state = 1,
            1 | 2 if bare == "=======" => state = 3,
            1 if bare.starts_with("|||||||") => state = 2,
            3 if bare.starts_with(">>>>>>>") => state = 0,
            0 => out.push_str(line),
            1 if side != "theirs" => out.push_str(line),
            3 if side != "ours" => out.push_str(line),
            _ => {}
        }
    }
    out
}

fn nix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The sample case that shows `case` for `cli`.
fn sample(cli: &str, case: &str, resumed: bool) -> Option<&'static str> {
    Some(match (cli, case) {
        ("claude", "ok") if resumed => "claude-resume",
        ("claude", "ok") => "claude-bypass",
        ("claude", "denied") => "claude-default-denied",
        ("claude", "401") => "claude-401",
        ("claude", "unreachable") => "claude-unreachable",
        ("codex", "ok") if resumed => "codex-resume",
        ("codex", "ok") => "codex-patch",
        ("codex", "denied") => "codex-readonly-denied",
        ("codex", "401") => "codex-401",
        ("codex", "unreachable") => "codex-unreachable",
        ("gemini", "ok" | "denied") => "gemini-model",
        ("gemini", "401") => "gemini-401",
        ("gemini", "unreachable") => "gemini-unreachable",
        ("qwen", "ok" | "denied") => "qwen-yolo",
        ("qwen", "401") => "qwen-401",
        ("qwen", "unreachable") => "qwen-unreachable",
        ("kimi", "ok" | "denied") if resumed => "kimi-resume",
        ("kimi", "ok" | "denied") => "kimi-ok",
        ("kimi", "401") => "kimi-401",
        ("kimi", "429") => "kimi-429",
        ("kimi", "nokey") => "kimi-nokey",
        ("kimi", "noconfig") => "kimi-noconfig",
        ("kimi", "unreachable") => "kimi-unreachable-defaultretries",
        _ => return None,
    })
}

fn replay(cli: &str, case: &str, call: &Call, exit: Option<i32>) -> i32 {
    let mut out = std::io::stdout().lock();
    if case == "hang" {
        let first = match cli {
            "codex" => format!(
                r#"{{"type":"thread.started","thread_id":"{}"}}"#,
                call.session
            ),
            "gemini" => format!(
                r#"{{"type":"init","session_id":"{}","model":"auto"}}"#,
                call.session
            ),
            _ => format!(
                r#"{{"type":"system","subtype":"init","session_id":"{}"}}"#,
                call.session
            ),
        };
        let _ = writeln!(out, "{first}");
        let _ = out.flush();
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let Some(name) = sample(cli, case, call.resumed) else {
        return hand_made(cli, case, call, exit);
    };
    let read =
        |ext: &str| std::fs::read_to_string(format!("{SAMPLES}/{name}.{ext}")).unwrap_or_default();
    let stdout = read("stdout.jsonl");
    let stderr = read("stderr.txt");
    let code: i32 = read("exitcode").trim().parse().unwrap_or(0);
    // The sample's own session id becomes this call's.
    let original = session_of(&stdout);
    let swap = |text: &str| match &original {
        Some(id) => text.replace(id.as_str(), &call.session),
        None => text.to_owned(),
    };
    let _ = std::io::stderr().write_all(swap(&stderr).as_bytes());
    for line in stdout.lines() {
        let _ = writeln!(out, "{}", swap(line));
        let _ = out.flush();
    }
    if cli == "kimi" && case == "unreachable" {
        // With its default retries Kimi Code goes on for minutes: retry events, no end.
        for attempt in 5.. {
            std::thread::sleep(Duration::from_millis(200));
            let _ = writeln!(
                out,
                r#"{{"role":"meta","type":"turn.step.retrying","failed_attempt":{attempt},"next_attempt":{},"max_attempts":1000,"delay_ms":200,"error_name":"APIConnectionError","error_message":"Connection error."}}"#,
                attempt + 1
            );
            let _ = out.flush();
        }
    }
    if cli == "codex" && case == "unreachable" {
        // Codex never ends by itself when the model service is unreachable.
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let _ = writeln!(
                out,
                r#"{{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}}"#
            );
            let _ = out.flush();
        }
    }
    exit.unwrap_or(code)
}

/// The first session or thread id a stream carries.
fn session_of(stdout: &str) -> Option<String> {
    for line in stdout.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for key in ["session_id", "thread_id"] {
            if let Some(id) = value.get(key).and_then(|v| v.as_str()) {
                return Some(id.to_owned());
            }
        }
    }
    None
}

/// cursor-agent, following AGENTS.md (no captured sample exists), and kimi's legacy stub.
fn hand_made(cli: &str, case: &str, call: &Call, exit: Option<i32>) -> i32 {
    let mut out = std::io::stdout().lock();
    let s = &call.session;
    let lines: Vec<String> = match (cli, case) {
        ("cursor-agent", "ok" | "denied") => vec![
            format!(
                r#"{{"type":"system","subtype":"init","session_id":"{s}","model":"auto","cwd":".","permissionMode":"force"}}"#
            ),
            format!(
                r#"{{"type":"tool_call","subtype":"started","session_id":"{s}","tool_call":{{"writeToolCall":{{"args":{{"path":"hello_cursor.txt"}}}}}}}}"#
            ),
            format!(
                r#"{{"type":"tool_call","subtype":"completed","session_id":"{s}","tool_call":{{"writeToolCall":{{"args":{{"path":"hello_cursor.txt"}},"result":{{"success":{{}}}}}}}}}}"#
            ),
            format!(
                r#"{{"type":"assistant","session_id":"{s}","message":{{"role":"assistant","content":[{{"type":"text","text":"Done."}}]}}}}"#
            ),
            format!(
                r#"{{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"{s}","duration_ms":10}}"#
            ),
        ],
        ("kimi", "legacy") => {
            let notice = std::fs::read_to_string(format!("{SAMPLES}/kimi-legacy-print.stdout.txt"))
                .unwrap_or_default();
            let _ = write!(out, "{notice}");
            return exit.unwrap_or(0);
        }
        _ => {
            eprintln!("Error: authentication failed (fake {cli} {case})");
            return exit.unwrap_or(1);
        }
    };
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    exit.unwrap_or(0)
}

fn next_line(script: &Path, cli: &str, prompt: &str) -> String {
    let text = std::fs::read_to_string(script).unwrap_or_default();
    let keyed = format!("{cli}[");
    let chosen = text.lines().find_map(|l| {
        let (words, actions) = l.strip_prefix(&keyed)?.split_once("]:")?;
        prompt.contains(words).then(|| actions.trim().to_owned())
    });
    if let Some(actions) = chosen {
        return actions;
    }
    let prefix = format!("{cli}:");
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let counter = script.with_extension(format!("count.{cli}"));
    let n: usize = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&counter, (n + 1).to_string());
    lines[n.min(lines.len() - 1)].to_owned()
}

fn record(script: Option<&Path>, cli: &str, argv: &[String], prompt: &str, stdin: &str) {
    let Some(script) = script else { return };
    let started_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let entry = serde_json::json!({
        "started_us": started_us,
        "cli": cli,

        "argv": argv,
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "prompt": prompt,
        "stdin": stdin,
    });
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(script.with_extension("calls.jsonl"))
    {
        // One write, so that concurrent calls never interleave their lines.
        let _ = file.write_all(format!("{entry}\n").as_bytes());
    }
}
