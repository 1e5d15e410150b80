#!/usr/bin/env python3
"""Time from a step's worktree being ready (its `step_started` event, emitted once the worktree
and setup are done) to the agent's process running (the fake agent CLI records the moment its
`main` starts). 100 agent steps, one at a time, with the fake `claude` from tests/fakes.

    python3 bench/agent_start.py
"""
import json, os, statistics, subprocess, tempfile
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 100


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli", "-p", "medley-tests",
                    "--bin", "medley", "--bin", "fake-agent"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    fake = os.path.join(ROOT, "target", "release", "fake-agent")
    work = tempfile.mkdtemp(prefix="medley-agent-start-")
    repo, bin_dir = os.path.join(work, "repo"), os.path.join(work, "bin")
    os.makedirs(os.path.join(repo, "missions"))
    os.makedirs(bin_dir)
    os.symlink(fake, os.path.join(bin_dir, "claude"))
    script = os.path.join(work, "fake.script")
    with open(script, "w") as f:
        f.write("claude: noop\n")
    lines = ["max_parallel = 1"]
    for i in range(STEPS):
        lines += ["", f"[steps.s{i}]", 'agent = "claude"', 'prompt = "Do nothing."', "attempts = 1"]
    with open(os.path.join(repo, "missions", "start.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, HOME=os.path.join(work, "home"), PATH=bin_dir + ":" + os.environ["PATH"],
               MEDLEY_FAKE_SCRIPT=script, IS_SANDBOX="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run("git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm m",
                   cwd=repo, shell=True, check=True, env=env)
    out = subprocess.run([medley, "run", "start", "--output", "json"], cwd=repo, env=env,
                         capture_output=True, text=True)
    started = {}
    for line in out.stdout.splitlines():
        e = json.loads(line)
        if e["type"] == "step_started":
            started[e["step"]] = datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
    gaps = []
    with open(script.replace(".script", ".calls.jsonl")) as f:
        for line in f:
            call = json.loads(line)
            step = call["cwd"].rstrip("/").split("/")[-2]
            gaps.append(call["started_us"] / 1e6 - started[step])
    print(f"worktree ready -> agent running, {len(gaps)} steps: mean {statistics.mean(gaps)*1000:.2f} ms, "
          f"median {statistics.median(gaps)*1000:.2f} ms, max {max(gaps)*1000:.2f} ms")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
