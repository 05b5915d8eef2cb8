"""Wall time of the default run, as a user with a fresh clone meets it.

    python benchmarks/default_run.py --work_dir=/tmp/default-run

runs ``python run_foster.py`` (plus any ``--key=value``) in a fresh working directory with an
empty anchor cache, text-embedding cache and output folder, so the real-data run (the teacher),
the text embedding and the distillation all happen, as on a first run. It records the wall
clock, the process's CPU seconds, the phases of the run's ``results.json`` and the machine's load
(other jobs on the machine slow a wall clock down; the CPU seconds say how much). Writes
``benchmarks/results/speed/default-run.{json,png}``.
"""

import json
import os
import resource
import subprocess
import sys
import time

from common import command_of, figure, parse, parser_of, save, write_results  # beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_default(work_dir, run_options):
    """``(wall seconds, CPU seconds, results.json)`` of one fresh run in ``work_dir``."""
    if os.path.exists(work_dir) and os.listdir(work_dir):
        raise SystemExit(f"--work_dir={work_dir} is not empty; a default run must start with empty caches.")
    os.makedirs(work_dir, exist_ok=True)
    fresh = {"anchor_dir": f"{work_dir}/anchors", "text_cache_dir": f"{work_dir}/text",
             "output_dir": f"{work_dir}/outputs", "checkpoint_dir": f"{work_dir}/saved"}
    options = [f"--{k}={v}" for k, v in {**run_options, **fresh}.items()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(os.path.join(work_dir, "run.log"), "w") as log:
        done = subprocess.run([sys.executable, os.path.join(ROOT, "run_foster.py")] + options, cwd=work_dir,
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the run failed (exit {done.returncode}); see {work_dir}/run.log")
    with open(os.path.join(work_dir, "run.log")) as f:
        path = [line.split("results: ", 1)[1].strip() for line in f if line.startswith("results: ")][-1]
    with open(path) as f:
        results = json.load(f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, results


def plot(results, png):
    phases = {k: v for k, v in results["phases_s"].items() if k != "total"}
    fig, ax = figure((6, 2.6))
    ax.barh(list(phases), list(phases.values()), color="tab:blue")
    ax.axvline(results["target_s"], color="tab:red", ls="--", label=f"target {results['target_s']:.0f} s")
    ax.set_xlabel("seconds")
    save(fig, png, title=f"default run: {results['wall_s']:.0f} s wall, {results['cpu_s']:.0f} s CPU",
         legend={"fontsize": 8})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__, dataset=None)
    parser.add_argument("--work_dir", required=True, help="an empty folder for the run's caches and outputs")
    parser.add_argument("--target_s", type=float, default=360.0)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "speed"))
    parser.add_argument("--name", default="default-run")
    args, run_options = parse(parser, argv)
    load_start = os.getloadavg()
    wall, cpu, results = run_default(os.path.abspath(args.work_dir), run_options)
    summary = {
        "command": command_of("default_run.py", argv),
        "run": " ".join(["python run_foster.py"] + [f"--{k}={v}" for k, v in run_options.items()]),
        "method": results["method"], "dataset": results["dataset"],
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "target_s": args.target_s,
        "within_target": wall <= args.target_s,
        "phases_s": {k: round(v, 1) for k, v in results["timings"].items()},
        "test_ndcg@10": {row: values.get("ndcg@10") for row, values in results.get("rows_test", {}).items()}
        if "rows_test" in results else results.get("test", {}).get("ndcg@10"),
        "cpu_count": os.cpu_count(), "torch_threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    write_results(args.out, args.name, summary, plot)


if __name__ == "__main__":
    main()
