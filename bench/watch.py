#!/usr/bin/env python3
"""Watch mode: from a file's save to the first step's process starting, with nothing in flight.
The step records its start with `date +%s.%N`; 20 saves, `--debounce 50ms`.

    python3 bench/watch.py
"""
import os, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "medley-cli"], cwd=ROOT, check=True)
    medley = os.path.join(ROOT, "target", "release", "medley")
    work = tempfile.mkdtemp(prefix="medley-watch-bench-")
    repo = os.path.join(work, "repo")
    starts = os.path.join(work, "starts.txt")
    os.makedirs(os.path.join(repo, "missions"))
    with open(os.path.join(repo, "trigger.txt"), "w") as f:
        f.write("0\n")
    with open(os.path.join(repo, "missions", "w.toml"), "w") as f:
        f.write(f'[steps.s]\ninputs = ["trigger.txt"]\nrun = "date +%s.%N >> {starts}"\n')
    env = dict(os.environ, HOME=os.path.join(work, "home"), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run("git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm m",
                   cwd=repo, shell=True, check=True, env=env)
    watch = subprocess.Popen([medley, "watch", "w", "--debounce", "50ms", "--output", "plain"], cwd=repo, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def count():
        try:
            with open(starts) as f:
                return len(f.read().split())
        except FileNotFoundError:
            return 0

    while count() < 1:
        time.sleep(0.01)
    time.sleep(0.5)
    gaps = []
    for i in range(1, 21):
        before = count()
        saved = time.time()
        with open(os.path.join(repo, "trigger.txt"), "w") as f:
            f.write(f"{i}\n")
        while count() <= before:
            time.sleep(0.002)
        with open(starts) as f:
            started = float(f.read().split()[-1])
        gaps.append(started - saved)
        time.sleep(0.3)  # nothing in flight before the next save
    watch.send_signal(2)
    watch.wait()
    print(f"save -> first step's process, 20 saves, debounce 50ms: mean {statistics.mean(gaps)*1000:.1f} ms, "
          f"median {statistics.median(gaps)*1000:.1f} ms, max {max(gaps)*1000:.1f} ms")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
