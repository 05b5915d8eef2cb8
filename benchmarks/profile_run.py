"""Where a run's time goes: its phases and its top functions, for one run_foster.py command.

    python benchmarks/profile_run.py --name=default                      # the default run (ml-100k)
    python benchmarks/profile_run.py --name=small-set-eval --method=random_kd --label_storage=text_code \\
        --n_sequences=20 --distilled_eval_seeds=3
    python benchmarks/profile_run.py --name=small-set-eval-before --repo=/work/wt-before29 --method=...

Runs ``run_foster.py`` of the checkout ``--repo`` (default: this one, first on ``PYTHONPATH``) in a
subprocess under cProfile, so the code of another checkout (before a change) is profiled the same
way on the same machine. Every option other than the script's own is a ``run_foster.py`` option.
The phases are the run's own ``timings`` (results.json; measured inside the profiled process,
so they include cProfile's overhead, as do the functions' seconds); the functions are the
``--top`` by cumulative time and by own time (what a speed-up should target). Writes
``<out>/profile-<name>.json`` (with the command, the load average and the machine) and ``.png``.
"""

import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import command_of, figure, parse, parser_of, save  # noqa: E402

# import machinery and module bodies: they wrap everything and say nothing of where time goes
WRAPPERS = ("<frozen importlib", "<built-in method builtins.exec>", "<built-in method builtins.__import__>")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_name(filename, line, function, repo):
    """``pkg/module.py:line(function)``, paths relative to the checkout or to site-packages."""
    if filename.startswith(repo + os.sep):
        filename = os.path.relpath(filename, repo)
    elif "site-packages" + os.sep in filename:
        filename = filename.split("site-packages" + os.sep, 1)[1]
    if filename == "~":  # a built-in
        return function
    return f"{filename}:{line}({function})"


def top_functions(profile_file, repo, top):
    """``(by cumulative time, by own time)``: lists of {function, calls, own_s, cumulative_s}."""
    stats = pstats.Stats(profile_file).stats
    rows = [{"function": short_name(*key, repo), "calls": int(value[1]), "own_s": round(value[2], 3),
             "cumulative_s": round(value[3], 3)} for key, value in stats.items()]
    callers_only = [row for row in rows if not row["function"].startswith(WRAPPERS) and "(<module>)" not in row["function"]]
    by_cumulative = sorted(callers_only, key=lambda row: -row["cumulative_s"])[:top]
    by_own = sorted(rows, key=lambda row: -row["own_s"])[:top]
    return by_cumulative, by_own


def git_state(repo):
    """``(commit, paths changed since it)``: what code was profiled (None outside a git checkout)."""
    head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None, None
    status = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True)
    return head.stdout.strip(), [line[3:] for line in status.stdout.splitlines()]


def profile_run(repo, run_argv, work):
    """Run ``repo/run_foster.py run_argv`` under cProfile; return (wall seconds, results.json, .prof path)."""
    profile_file = os.path.join(work, "run.prof")
    output_dir = next((a.split("=", 1)[1] for a in run_argv if a.startswith("--output_dir=")), None)
    if output_dir is None:
        output_dir = os.path.join(work, "run")
        run_argv = run_argv + [f"--output_dir={output_dir}"]
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "cProfile", "-o", profile_file, os.path.join(repo, "run_foster.py"), *run_argv]
    start = time.perf_counter()
    done = subprocess.run(command, env=env)
    wall = time.perf_counter() - start
    results_file = os.path.join(output_dir, "results.json")
    if done.returncode != 0 or not os.path.isfile(results_file):  # cProfile swallows the run's exit code
        print(f"error: the profiled run failed (see above): {' '.join(command)}", file=sys.stderr)
        sys.exit(2)
    with open(results_file) as f:
        return wall, json.load(f), profile_file


def plot(path, profile):
    fig, (phases_ax, cum_ax, own_ax) = figure((17, 6), ncols=3)
    phases = {k: v for k, v in profile["phases_s"].items() if k != "total"}
    phases_ax.barh(list(phases), list(phases.values()), color="tab:blue")
    phases_ax.invert_yaxis()
    phases_ax.set_xlabel("seconds")
    phases_ax.set_title(f"phases (total {profile['phases_s'].get('total', 0):.0f} s)", fontsize=9)
    for ax, key, label in ((cum_ax, "top_cumulative", "cumulative_s"), (own_ax, "top_own", "own_s")):
        rows = profile[key]
        ax.barh([row["function"][-60:] for row in rows], [row[label] for row in rows], color="tab:orange")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=6)
        ax.set_xlabel("seconds")
        ax.set_title(f"top functions, {label.replace('_s', '')} time", fontsize=9)
    fig.suptitle(f"{profile['name']}: {profile['command']}"[:200], fontsize=8)
    save(fig, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__)
    parser.add_argument("--name", required=True, help="the output is profile-<name>.json/.png")
    parser.add_argument("--repo", default=HERE, help="the checkout whose run_foster.py is profiled")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "benchmarks", "results", "speed"))
    args, _ = parse(parser, argv)  # checks the run options as run_foster.py parses them
    own = {"--name", "--repo", "--top", "--out"}
    run_argv = [f"--dataset={args.dataset}"] + [a for a in argv if a.split("=", 1)[0] not in own | {"--dataset"}]
    repo = os.path.abspath(args.repo)
    if not os.path.isfile(os.path.join(repo, "run_foster.py")):
        parser.error(f"--repo={args.repo} has no run_foster.py")
    commit, changed = git_state(repo)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        wall, results, profile_file = profile_run(repo, run_argv, work)
        by_cumulative, by_own = top_functions(profile_file, repo, args.top)
    profile = {
        "name": args.name,
        "command": command_of("profile.py", argv),
        "run_command": "python run_foster.py " + " ".join(run_argv),
        "repo": repo, "commit": commit, "changed_since_commit": changed,
        "wall_s": round(wall, 1),
        "phases_s": {k: round(v, 2) for k, v in results.get("timings", {}).items()},
        "top_cumulative": by_cumulative, "top_own": by_own,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "device": results.get("device")},
        "note": "phases and function seconds are measured under cProfile (its overhead included)",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"profile-{args.name}")
    with open(path + ".json", "w") as f:
        json.dump(profile, f, indent=1)
    plot(path + ".png", profile)
    print(json.dumps({"phases_s": profile["phases_s"], "wall_s": profile["wall_s"]}))
    print(f"wrote {path}.json and .png")


if __name__ == "__main__":
    main()
