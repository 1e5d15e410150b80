//! One mission file per case: each invalid one's diagnostic and each valid one's plan, pinned.

use std::path::Path;

use medley_engine::mission::Mission;
use medley_engine::plan::{PlanOptions, compile};

use crate::{in_repo, snapshot};

fn relative(path: &Path) -> String {
    path.strip_prefix(medley_tests::workspace_root())
        .expect("corpus files are in the workspace")
        .display()
        .to_string()
}

#[test]
fn invalid_missions_report_every_problem_with_its_place() {
    insta::glob!("../corpus/invalid", "*.toml", |path| {
        let out = in_repo(&["validate", &relative(path)]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains("help: "), "{}", out.stderr);
        // Every diagnostic points at path:line:col.
        assert!(
            out.stderr.contains(&format!("[{}:", relative(path))),
            "{}",
            out.stderr
        );
        let name = format!("invalid-{}", path.file_stem().unwrap().to_string_lossy());
        snapshot!(name, out.snapshot());
    });
}

#[test]
fn valid_missions_compile_to_these_plans() {
    insta::glob!("../corpus/valid", "*.toml", |path| {
        let mission = Mission::load(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));

        let plan = compile(&mission, &PlanOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let mut json = serde_json::to_value(&plan).unwrap();
        json["path"] = relative(path).into();
        let name = format!("valid-{}", path.file_stem().unwrap().to_string_lossy());
        snapshot!(name, serde_json::to_string_pretty(&json).unwrap());
    });
}
