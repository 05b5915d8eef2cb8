"""How fast one real-data epoch trains, before and after, and where its time goes.

Trains the real-data run's model (TextSASRec, amazon-games, ``global_temporal``) for the first
``--batches`` batches of epoch 0 (all of them with ``--batches=0``), once with an older checkout
(``--before``) and once with this one, alternating for ``--rounds`` rounds in one script run so both
see the same machine load. Each side is a fresh process that builds the run as ``run_foster.py
--method=full`` does (``prepare``, the seeded model, its trainer and optimizer) and then steps
``calculate_loss`` / ``backward`` / ``optimizer.step`` over RecBole's train dataloader; it also times
one validation (RecBole's ``evaluate``, as each epoch of the run does). Both sides must produce the
same losses and weights bit for bit: a speed-up that changes the numbers is not counted.
The last side also records an operator profile (``torch.profiler``) of a few batches, which is what
bounds the speed-up.

    python benchmarks/speed_real_epoch.py --before=/work/wt-before29 \
        --data_path=../shared/data --text_cache_dir=/work/main/saved/text_embeddings

Writes ``benchmarks/results/speed/real-epoch.json`` and ``.png``.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "results", "speed", "real-epoch.json")
CONFIG = "benchmarks/configs/amazon-games-temporal-cpu.yaml"
# operator families of a training step (torch.profiler self time), in the order they are shown
OPS = {
    "matmul (logits, their backward, projection, transformer)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "log_softmax forward + backward (full catalog)": ("aten::_log_softmax", "aten::_log_softmax_backward_data"),
    "zero-fill of the cross-entropy gradient": ("aten::fill_", "aten::zero_"),
    "dropout masks (bernoulli)": ("aten::bernoulli_",),
}


# what a step must compute for the same numbers: the GEMMs and the full-catalog softmax are the
# math of the loss, and dropout's draws are the RNG stream that later steps depend on
FIXED = ("matmul (logits, their backward, projection, transformer)", "log_softmax forward + backward (full catalog)",
         "dropout masks (bernoulli)")


def bound(report):
    """The largest epoch speed-up with identical numbers: everything but the FIXED work vanishing."""
    fixed = sum(report["op_shares"][label] for label in FIXED)
    return {"fixed_share_of_a_step": round(fixed, 3), "max_epoch_speedup_at_identical_numbers": round(1 / fixed, 2),
            "why": "a step is GEMMs (the full-catalog logits and their two backward GEMMs dominate) and the "
                   "full-catalog log_softmax forward/backward; both are already one kernel per batch over the real "
                   "targets only, and dropout's draws fix the RNG stream. With all other work gone the epoch "
                   "would be at most this much faster, below 2x. Cheaper math (sampled softmax, bf16) or a "
                   "fused cross-entropy backward changes the numbers (measured: a hand-written backward differs by "
                   "6e-11), so none is the default."}


def worker(args):
    """One side: train ``args.batches`` batches and validate once; print a JSON line."""
    sys.path.insert(0, args.code)
    os.chdir(args.code)
    import itertools

    import torch

    from recbole_foster.run import prepare
    from recbole_foster.trainer import CheckpointSafeTrainer

    options = dict(method="full", dataset=args.dataset, data_path=args.data_path, config_files=CONFIG,
                   text_cache_dir=args.text_cache_dir, output_dir=os.path.join(args.tmp, "out"), epochs=1)
    ctx = prepare(options)
    model = ctx.new_model(ctx.config["seed"])
    trainer = CheckpointSafeTrainer(ctx.config, model)
    train_data = ctx.train_data
    n_batches = args.batches or len(train_data)

    def step(interaction):
        interaction = interaction.to(ctx.config["device"])
        trainer.optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        trainer.optimizer.step()
        return loss.item()

    model.train()
    batches = iter(train_data)
    start = time.perf_counter()
    losses = [step(interaction) for interaction in itertools.islice(batches, n_batches)]
    train_seconds = time.perf_counter() - start
    weights = b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())
    start = time.perf_counter()
    valid = trainer.evaluate(ctx.valid_data, load_best_model=False, show_progress=False)
    valid_seconds = time.perf_counter() - start
    result = {"code": args.code, "batches": len(losses), "batches_per_epoch": len(train_data),
              "train_seconds": train_seconds, "valid_seconds": valid_seconds,
              "losses_sha": hashlib.sha256(json.dumps(losses).encode()).hexdigest()[:16],
              "weights_sha": hashlib.sha256(weights).hexdigest()[:16], "last_loss": losses[-1],
              "valid": {k: float(v) for k, v in valid.items()}, "threads": torch.get_num_threads()}
    if args.profile_batches:
        from torch.profiler import ProfilerActivity, profile

        model.train()  # evaluate() left it in eval mode (no dropout)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for interaction in itertools.islice(batches, args.profile_batches):
                step(interaction)
        self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        total = sum(self_us.values())
        shares = {label: sum(self_us.get(op, 0) for op in ops) / total for label, ops in OPS.items()}
        shares["everything else"] = 1 - sum(shares.values())
        result["op_shares"] = {k: round(v, 4) for k, v in shares.items()}
        result["top_ops"] = {k: round(v / total, 4) for k, v in sorted(self_us.items(), key=lambda kv: -kv[1])[:12]}
    print("RESULT " + json.dumps(result), flush=True)


def run_side(args, code, profile_batches):
    command = [sys.executable, os.path.abspath(__file__), "--worker", f"--code={code}", f"--dataset={args.dataset}",
               f"--data_path={os.path.abspath(args.data_path)}", f"--text_cache_dir={os.path.abspath(args.text_cache_dir)}",
               f"--batches={args.batches}", f"--profile_batches={profile_batches}", f"--tmp={args.tmp}"]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"error: the side {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.4]})
    sides = ["before", "after"]
    epoch = [report["epoch_seconds"][s] for s in sides]
    valid = [report["valid_seconds"][s] for s in sides]
    left.bar(sides, epoch, label="training epoch (extrapolated)")
    left.bar(sides, valid, bottom=epoch, label="validation")
    left.set_ylabel("seconds")
    left.set_title(f"one amazon-games epoch: {report['ratio_epoch']:.2f}x\n(identical numbers: {report['identical']})")
    left.legend(fontsize=8, loc="lower center")
    shares = report["op_shares"]
    right.barh(list(shares)[::-1], [100 * v for v in list(shares.values())[::-1]])
    right.set_xlabel("% of a training step (self time)")
    limit = report["bound"]["max_epoch_speedup_at_identical_numbers"]
    right.set_title(f"where a step's time goes (after)\nat most {limit}x faster, same numbers")
    fig.text(0.01, 0.01, report["command"], fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="/work/wt-before29", help="checkout of the code to compare with")
    parser.add_argument("--dataset", default="amazon-games")
    parser.add_argument("--data_path", default="../shared/data")
    parser.add_argument("--text_cache_dir", default="saved/text_embeddings")
    parser.add_argument("--batches", type=int, default=60, help="batches timed per side (0: the whole epoch)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile_batches", type=int, default=10)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--replot", action="store_true", help="redo the summary and PNG of an existing --out")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.replot:
        with open(args.out) as f:
            report = json.load(f)
        report["bound"] = bound(report)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        return plot(report, os.path.splitext(args.out)[0] + ".png")
    import tempfile

    args.tmp = tempfile.mkdtemp(prefix="real-epoch-")
    load_start = os.getloadavg()
    runs = {"before": [], "after": []}
    for round_ in range(args.rounds):
        for side, code in (("before", os.path.abspath(args.before)), ("after", ROOT)):
            last = round_ == args.rounds - 1 and side == "after"
            runs[side].append(run_side(args, code, args.profile_batches if last else 0))
            print(side, json.dumps({k: runs[side][-1][k] for k in ("train_seconds", "valid_seconds", "losses_sha")}))
    per_epoch = {side: min(r["train_seconds"] / r["batches"] for r in rs) * rs[0]["batches_per_epoch"]
                 for side, rs in runs.items()}
    valid = {side: min(r["valid_seconds"] for r in rs) for side, rs in runs.items()}
    fingerprints = {(r["losses_sha"], r["weights_sha"], json.dumps(r["valid"])) for rs in runs.values() for r in rs}
    after = runs["after"][-1]
    command = ["python benchmarks/speed_real_epoch.py", f"--before={args.before}", f"--data_path={args.data_path}",
               f"--text_cache_dir={args.text_cache_dir}", f"--batches={args.batches}", f"--rounds={args.rounds}"]
    report = {
        "command": " ".join(command),
        "setting": f"{args.dataset}, {CONFIG}, TextSASRec, train_batch_size 256 windows of 20, "
                   f"{after['batches_per_epoch']} batches per epoch; {args.batches or 'all'} batches timed per side, "
                   "the fastest of the rounds extrapolated to the epoch",
        "epoch_seconds": {k: round(v, 1) for k, v in per_epoch.items()},
        "valid_seconds": {k: round(v, 1) for k, v in valid.items()},
        "ratio_epoch": round(per_epoch["before"] / per_epoch["after"], 3),
        "ratio_epoch_with_validation": round((per_epoch["before"] + valid["before"])
                                             / (per_epoch["after"] + valid["after"]), 3),
        "identical": len(fingerprints) == 1,
        "valid_metrics": after["valid"],
        "op_shares": after["op_shares"],
        "top_ops": after["top_ops"],
        "runs": runs,
        "threads": f"torch threads {after['threads']} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})",
        "load": f"uptime load average {load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
                f"({os.cpu_count()} cores, shared with other jobs)",
    }
    report["bound"] = bound(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    plot(report, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
