//! The shipped missions, the README's examples and the pinned schema.

use std::path::Path;

use medley_engine::mission::Mission;
use medley_engine::plan::{PlanOptions, compile};
use medley_engine::schema::mission_schema;
use medley_tests::workspace_root;

use crate::in_repo;

fn compiles(name: &str, source: &str) -> usize {
    let mission = Mission::parse(Path::new(name), source.to_owned())
        .unwrap_or_else(|e| panic!("{name} does not load: {e:?}"));
    let plan = compile(&mission, &PlanOptions::default())
        .unwrap_or_else(|e| panic!("{name} does not compile: {e:?}"));
    plan.steps.len()
}

#[test]
fn every_shipped_mission_validates_and_compiles() {
    let dir = workspace_root().join("missions");
    let mut names: Vec<String> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let source = fs_err::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        assert!(compiles(name, &source) > 0);
        let out = in_repo(&["validate", name]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let dry = in_repo(&["run", name, "--dry-run"]);
        assert_eq!(dry.code, 0, "{name}: {}", dry.stderr);
    }
    // The refactor example uses a fallback chain, a matrix and gates; hello needs no agent.
    let refactor = in_repo(&["graph", "refactor"]);
    assert!(
        refactor.stdout.contains("claude → codex"),
        "{}",
        refactor.stdout
    );
    assert!(
        refactor.stdout.contains("split.lexer"),
        "{}",
        refactor.stdout
    );
    let hello = in_repo(&["run", "hello", "--dry-run"]);
    assert!(!hello.stdout.contains("claude"), "{}", hello.stdout);
    assert!(hello.stdout.contains("greet.fr"), "{}", hello.stdout);
}

/// Every ```toml block of README.md is a mission that compiles.
#[test]
fn readme_toml_blocks_compile() {
    let readme = fs_err::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```").expect("a closed toml block");
        blocks += 1;
        compiles(&format!("README.md block {blocks}"), &body[..end]);
        rest = &body[end..];
    }
    assert!(blocks >= 1, "README.md has no toml block");
}

/// `schemas/mission.schema.json` and `missions/mission.schema.json` are exactly the generated
/// schema. Regenerate both with `MEDLEY_UPDATE_SCHEMA=1 cargo test`.
#[test]
fn schema_files_match_the_generated_schema() {
    let generated = mission_schema();
    for file in [
        "schemas/mission.schema.json",
        "missions/mission.schema.json",
    ] {
        let path = workspace_root().join(file);
        if std::env::var_os("MEDLEY_UPDATE_SCHEMA").is_some() {
            fs_err::write(&path, &generated).unwrap();
        }
        let committed = fs_err::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            let diff: Vec<String> = committed
                .lines()
                .zip(generated.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
                .collect();
            panic!(
                "{file} is not the generated schema ({} vs {} lines):\n{}\n\
                 regenerate it with `MEDLEY_UPDATE_SCHEMA=1 cargo test -p medley-tests`",
                committed.lines().count(),
                generated.lines().count(),
                diff.join("\n")
            );
        }
    }
    let printed = in_repo(&["schema"]);
    assert_eq!(printed.code, 0);
    assert_eq!(printed.stdout, generated);
}
