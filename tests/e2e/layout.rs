//! The layout's rules, checked on the sources: no import circle between the modules of the
//! engine or of the CLI (at any level: `run` and `plan`, or `run::step` and `run::gate`), and
//! no engine file over 600 lines without a reason in its opening comment (saying "600 lines").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `run/attempt.rs` → `["run", "attempt"]`; `run/mod.rs` → `["run"]`; `lib.rs` → `[]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers a path expression names after `prefix::`: `a` in `prefix::a::b`, and `a`,
/// `b` in `prefix::{a::x, b}`.
fn named_after(code: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        // `prefix` must start a path (not `mysuper::`).
        if code[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[from..];
        // `super::super::x` climbs twice.
        let mut ups = 0;
        let mut rest = rest;
        while prefix == "super::" && rest.starts_with("super::") {
            ups += 1;
            rest = &rest["super::".len()..];
        }
        let mut names = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut current = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(std::mem::take(&mut current));
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    current.push(c);
                }
            }
            names.push(current);
            names = names
                .into_iter()
                .map(|n| n.trim().split("::").next().unwrap_or("").trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
        found.push((ups, names));
    }
    found
}

/// Every import circle among sibling modules under `root`, as `a -> b -> a` lines.
fn circles(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    // Edges between siblings: parent module -> (from child, to child).
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let source = module_of(root, file);
        let code = code_of(&fs_err::read_to_string(file).unwrap());
        let is_dir_module = matches!(
            file.file_stem().and_then(|s| s.to_str()),
            Some("mod" | "lib" | "main")
        );
        let mut targets: Vec<Vec<String>> = Vec::new();
        for (_, names) in named_after(&code, "crate::") {
            for name in names {
                targets.push(vec![name]);
            }
        }
        for (ups, names) in named_after(&code, "super::") {
            // A file module's `super` is its parent; a `mod.rs`'s is its parent's parent.
            let mut base = source.clone();
            for _ in 0..=ups {
                base.pop();
            }
            if is_dir_module && source.is_empty() {
                continue;
            }
            for name in names {
                let mut target = base.clone();
                target.push(name);
                targets.push(target);
            }
        }
        for mut target in targets {
            // Resolve to the deepest module the path names (`run::step::x` → `run::step`).
            while !target.is_empty() && !modules.contains(&target) {
                target.pop();
            }
            if target.is_empty() {
                continue;
            }
            let common = source
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // A module using its own parent's or children's items is not a sibling edge.
            if common == source.len() || common == target.len() {
                continue;
            }
            edges
                .entry(source[..common].to_vec())
                .or_default()
                .insert((source[common].clone(), target[common].clone()));
        }
    }
    let mut found = Vec::new();
    for (parent, pairs) in &edges {
        let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (a, b) in pairs {
            graph.entry(a).or_default().push(b);
        }
        for (a, b) in pairs {
            // A path from b back to a closes a circle.
            let mut stack = vec![(b.as_str(), vec![a.as_str(), b.as_str()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                if node == a {
                    let at = if parent.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", parent.join("::"))
                    };
                    found.push(format!("{at}{}", path.join(" -> ")));
                    break;
                }
                if !seen.insert(node) {
                    continue;
                }
                for next in graph.get(node).into_iter().flatten() {
                    let mut path = path.clone();
                    path.push(next);
                    stack.push((next, path));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn source_root(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn the_engines_modules_import_one_way() {
    let found = circles(&source_root("engine"));
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_clis_modules_import_one_way() {
    let found = circles(&source_root("cli"));
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_circle_check_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs_err::create_dir_all(src.join("run")).unwrap();
    fs_err::write(src.join("lib.rs"), "pub mod run;\npub mod history;\n").unwrap();
    fs_err::write(src.join("history.rs"), "use crate::run::Grace;\n").unwrap();
    fs_err::write(
        src.join("run/mod.rs"),
        "mod a;\nmod b;\nuse crate::history;\n",
    )
    .unwrap();
    fs_err::write(src.join("run/a.rs"), "use super::{b::X, mod_item};\n").unwrap();
    fs_err::write(src.join("run/b.rs"), "use super::a;\n").unwrap();
    assert_eq!(
        circles(src),
        vec![
            "history -> run -> history".to_owned(),
            "run -> history -> run".to_owned(),
            "run: a -> b -> a".to_owned(),
            "run: b -> a -> b".to_owned(),
        ]
    );
}
#[test]
fn no_engine_file_is_over_600_lines_without_a_reason() {
    let mut files = Vec::new();
    rust_files(&source_root("engine"), &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = fs_err::read_to_string(&file).unwrap();
        let lines = text.lines().count();
        let opening: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        if lines > 600 && !opening.contains("600 lines") {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over 600 lines whose opening comment gives no reason (\"over 600 lines because ...\"):\n{}",
        long.join("\n")
    );
}
