//! Compiling a generated 1,000-step mission (matrices and templates included): load + compile.
//!
//! `cargo bench -p medley-engine --bench compile`. Target: ≤ 50 ms in release.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use medley_engine::mission::Mission;
use medley_engine::plan::{PlanOptions, compile};

/// 100 plain steps and 180 five-child matrix steps: 1,000 concrete steps. Agent and command
/// steps alternate; each needs one or two earlier steps; templates read vars, the matrix and
/// upstream steps' results.
fn generated_mission() -> String {
    let mut text = String::from(
        "name = \"big\"\ngate = \"cargo test --quiet\"\n\n[vars]\nmodule = \"src/lib.rs\"\nlevel = 3\n\n\
         [defaults]\nagent = [\"claude\", \"codex\"]\ngate = \"cargo check --quiet\"\ntimeout = \"20m\"\n\n",
    );
    for i in 0..280 {
        let _ = writeln!(text, "[steps.s{i}]");
        if i > 0 {
            let a = i - 1;
            let b = i / 2;
            if a == b {
                let _ = writeln!(text, "needs = [\"s{a}\"]");
            } else {
                let _ = writeln!(text, "needs = [\"s{a}\", \"s{b}\"]");
            }
        }
        let matrix = i % 14 >= 5;
        if matrix {
            let _ = writeln!(
                text,
                "matrix = {{ part = [\"a\", \"b\", \"c\", \"d\", \"e\"] }}"
            );
        }
        let part = if matrix { " {{ matrix.part }}" } else { "" };
        let upstream = if i > 0 {
            format!(" after {{{{ steps.s{}.outcome }}}}", i - 1)
        } else {
            String::new()
        };
        if i % 2 == 0 {
            let _ = writeln!(
                text,
                "prompt = \"Refactor {{{{ vars.module }}}}{part} at level {{{{ vars.level }}}}{upstream}.\""
            );
            let _ = writeln!(
                text,
                "retry_prompt = \"`{{{{ failure.command }}}}` failed:\\n{{{{ failure.output }}}}\""
            );
        } else {
            let _ = writeln!(text, "run = \"cargo test{part} -- {{{{ vars.module }}}}\"");
            let _ = writeln!(text, "gate = \"test -n {{{{ mission.name }}}}\"");
        }
        text.push('\n');
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = generated_mission();
    let mission =
        Mission::parse(Path::new("big.toml"), text.clone()).expect("the generated mission loads");
    let plan = compile(&mission, &PlanOptions::default()).expect("the generated mission compiles");
    assert_eq!(plan.steps.len(), 1000);
    let mut group = c.benchmark_group("mission");
    group.sample_size(20);
    group.bench_function("load+compile 1000 steps", |b| {
        b.iter(|| {
            let mission =
                Mission::parse(Path::new("big.toml"), black_box(text.clone())).expect("loads");
            black_box(compile(&mission, &PlanOptions::default()).expect("compiles"))
        })
    });
    group.bench_function("compile 1000 steps", |b| {
        b.iter(|| {
            black_box(compile(black_box(&mission), &PlanOptions::default()).expect("compiles"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
