//! Parsing a 100 MB stream per adapter (the captured samples' lines, repeated): MB/s.
//!
//! `cargo bench -p medley-engine --bench parse`. Target: ≥ 200 MB/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medley_engine::agent;
use medley_engine::mission::Runtime;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/samples");
const SIZE: usize = 100 * 1024 * 1024;

/// The sample's event lines repeated to about 100 MB (the terminal event once, at the end).
fn stream(case: &str) -> Vec<String> {
    let text = fs_err::read_to_string(format!("{SAMPLES}/{case}.stdout.jsonl")).expect("a sample");
    let lines: Vec<&str> = text.lines().collect();
    let (body, last) = lines.split_at(lines.len() - 1);
    let mut out = Vec::new();
    let mut size = 0;
    while size < SIZE {
        for line in body {
            size += line.len() + 1;
            out.push((*line).to_owned());
        }
    }
    out.push(last[0].to_owned());
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse 100 MB");
    group.sample_size(10);
    for (runtime, case) in [
        (Runtime::Claude, "claude-bypass"),
        (Runtime::Codex, "codex-patch"),
        (Runtime::Gemini, "gemini-model"),
        (Runtime::Qwen, "qwen-yolo"),
    ] {
        let lines = stream(case);
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let adapter = agent::adapter(runtime);
        group.bench_function(runtime.name(), |b| {
            b.iter(|| {
                let mut parser = adapter.parser(None);
                let mut outputs = 0;
                for line in &lines {
                    outputs += parser.stdout_line(black_box(line)).len();
                }
                black_box((outputs, parser.finish(Some(0))))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
