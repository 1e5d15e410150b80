#!/usr/bin/env python3
"""`medley report` of a 100-step run with about 1 MB of diffs: the time to make each format
(median of 5) and its size; with chromium on PATH, also how long the browser takes to load the
HTML page headless (against an empty page, so the browser's own start-up is left out).

    python3 bench/report.py
"""
import os, statistics, shutil, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 100
LINES = 250  # per step: 250 lines of ~41 bytes, ~10 KB, so ~1 MB of diffs over the run


def timed(cmd, **kw):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    return took


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    medley = os.path.join(target, "release", "medley")
    work = tempfile.mkdtemp(prefix="medley-report-bench-")
    repo = os.path.join(work, "repo")
    os.makedirs(os.path.join(repo, "missions"))
    with open(os.path.join(repo, "README.md"), "w") as f:
        f.write("# bench\n")
    # A fan-out of 50 from s0, then a chain of 49: every step writes its own ~10 KB file.
    lines = []
    for i in range(STEPS):
        lines += ["", f"[steps.s{i}]",
                  f"run = \"seq -f 'line %03g of step {i:03d}: lorem ipsum dolor' 1 {LINES} > out{i}.txt\"",
                  f'gate = "test -s out{i}.txt"']
        if 0 < i <= 50:
            lines.append('needs = ["s0"]')
        elif i > 50:
            lines.append(f'needs = ["s{i - 1}"]')
    with open(os.path.join(repo, "missions", "r.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, HOME=os.path.join(work, "home"), GIT_CONFIG_GLOBAL="/dev/null",
               GIT_CONFIG_NOSYSTEM="1")
    subprocess.run("git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm m",
                   cwd=repo, shell=True, check=True, env=env)
    run = subprocess.run([medley, "run", "r", "--output", "plain"], cwd=repo, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # The diffs' size: what `git diff` prints for every step's result against its base.
    diffs = subprocess.run(
        "for r in $(git for-each-ref --format='%(refname)' refs/medley/ | grep /steps/); do "
        "git diff --no-color $(git rev-parse $r^) $r; done | wc -c",
        cwd=repo, shell=True, env=env, capture_output=True, text=True).stdout.strip()
    print(f"run of {STEPS} steps; diffs of their results: {int(diffs) / 1e6:.2f} MB")
    for fmt in ["html", "markdown", "junit"]:
        out = os.path.join(work, f"report.{fmt}")
        times = [timed([medley, "report", "--format", fmt, "-o", out], cwd=repo, env=env) for _ in range(5)]
        size = os.path.getsize(out)
        print(f"{fmt:9} {statistics.median(times) * 1000:7.0f} ms (median of 5; min {min(times) * 1000:.0f} ms)"
              f"  {size / 1e6:6.2f} MB")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        page = os.path.join(work, "report.html")
        empty = os.path.join(work, "empty.html")
        with open(empty, "w") as f:
            f.write("<!DOCTYPE html><title>empty</title>")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={os.path.join(work, 'chromium')}", "--dump-dom"]
        blank = statistics.median(timed([chromium, *flags, f"file://{empty}"]) for _ in range(3))
        full = statistics.median(timed([chromium, *flags, f"file://{page}"]) for _ in range(3))
        print(f"chromium --headless --dump-dom: the page {full * 1000:.0f} ms, an empty page "
              f"{blank * 1000:.0f} ms: the report costs the browser {max(full - blank, 0) * 1000:.0f} ms")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
