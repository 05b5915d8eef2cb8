"""Where one real-data epoch's time goes (cProfile), and what bounds its speed-up.

Runs ``run_foster.py --method=full --epochs=1`` under cProfile in a fresh anchor folder (so the
epoch is trained, not reused) and writes the phase times and the seconds of the functions that
make up a training step and an evaluation to ``benchmarks/results/speed/real-epoch.json``.

    python benchmarks/speed_real_epoch.py --dataset=amazon-games --data_path=../shared/data
    python benchmarks/speed_real_epoch.py --profile=run.prof --results=out/results.json  # summarise a run
"""

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "speed", "real-epoch.json")
# (label, file suffix, function name): cumulative seconds of each, found in the profile
PARTS = [
    ("train: one epoch", "recbole/trainer/trainer.py", "_train_epoch"),
    ("train: loss forward", "model/text_sasrec.py", "calculate_loss"),
    ("train: full-catalog logits (hidden @ items.T)", "model/students.py", "scores"),
    ("train: transformer encoder", "model/students.py", "encode"),
    ("train: cross entropy", "~", "<built-in method torch._C._nn.cross_entropy_loss>"),
    ("train: backward", "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
    ("eval: valid + test", "recbole/trainer/trainer.py", "evaluate"),
    ("eval: full_sort_predict", "sequential_recommender/sasrec.py", "full_sort_predict"),
    ("eval: top-k", "~", "<built-in method torch.topk>"),
    ("data: windowing build", "dataset/windowing.py", "build"),
]


def cumulative(stats, suffix, name):
    return round(sum(row[3] for (file, _, func), row in stats.stats.items()
                     if func == name and file.endswith(suffix)), 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-games")
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--profile", help="summarise this cProfile file instead of running")
    parser.add_argument("--results", help="the results.json of the profiled run (with --profile)")
    parser.add_argument("--out", default=OUT)
    args, extra = parser.parse_known_args()
    command = [sys.executable, "-m", "cProfile", "-o", "PROFILE", "run_foster.py", "--method=full",
               f"--dataset={args.dataset}", f"--data_path={args.data_path}", "--epochs=1", *extra]
    if args.profile is None:
        work = tempfile.mkdtemp(prefix="real-epoch-")
        args.profile, args.results = os.path.join(work, "run.prof"), os.path.join(work, "out", "results.json")
        run = [args.profile if part == "PROFILE" else part for part in command]
        subprocess.run(run + [f"--anchor_dir={work}/anchors", f"--output_dir={work}/out"], check=True,
                       cwd=os.path.dirname(HERE))
    stats = pstats.Stats(args.profile)
    with open(args.results) as f:
        results = json.load(f)
    report = {
        "command": " ".join(["python benchmarks/speed_real_epoch.py", f"--dataset={args.dataset}",
                             f"--data_path={args.data_path}", *extra]),
        "profiled": " ".join(part for part in command[3:] if part != "PROFILE"),
        "phase_seconds": {k: round(v, 2) for k, v in results["timings"].items()},
        "test": results["test"],
        "profile_seconds": {label: cumulative(stats, suffix, name) for label, suffix, name in PARTS},
        "load": os.getloadavg(),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "note": "cProfile adds overhead; phase_seconds are the run's own timers under it.",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
