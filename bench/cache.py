#!/usr/bin/env python3
"""A 100-step mission (a fan-out and a chain of command steps with gates), run once to fill the
cache, then rerun with everything cached: the rerun's wall time, and per step the cost of the
cache (key, lookup and reuse: `step_ready` -> `step_finished` of a cached step).

    python3 bench/cache.py
"""
import json, os, statistics, subprocess, tempfile, time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 100


def ts(e):
    return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    work = tempfile.mkdtemp(prefix="medley-cache-bench-")
    repo = os.path.join(work, "repo")
    os.makedirs(os.path.join(repo, "missions"))
    for i in range(10):
        with open(os.path.join(repo, f"f{i}.txt"), "w") as f:
            f.write(f"file {i}\n")
    lines = []
    for i in range(STEPS):
        lines += ["", f"[steps.s{i}]", f'run = "echo {i} > out{i}.txt"', 'gate = "true"']
        if 0 < i <= 50:
            lines.append('needs = ["s0"]')
        elif i > 50:
            lines.append(f'needs = ["s{i - 1}"]')
    with open(os.path.join(repo, "missions", "c.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, HOME=os.path.join(work, "home"), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run("git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm m",
                   cwd=repo, shell=True, check=True, env=env)
    first = subprocess.run([medley, "run", "c", "--output", "json"], cwd=repo, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    start = time.perf_counter()
    again = subprocess.run([medley, "run", "c", "--output", "json"], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    assert again.returncode == 0, again.stderr
    events = [json.loads(l) for l in again.stdout.splitlines()]
    ready = {e["step"]: ts(e) for e in events if e["type"] == "step_ready"}
    done = {e["step"]: (ts(e), e["outcome"]) for e in events if e["type"] == "step_finished"}
    cached = [done[s][0] - ready[s] for s in done if done[s][1] == "cached"]
    print(f"rerun of {STEPS} steps, {len(cached)} cached: wall {wall:.3f} s")
    print(f"per cached step (key + lookup + reuse): mean {statistics.mean(cached)*1000:.2f} ms, "
          f"median {statistics.median(cached)*1000:.2f} ms")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
