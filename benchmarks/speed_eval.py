"""Small-set evaluation, today's code against a reference checkout: the speed ratio and whether the selected metrics are the same.

One saved set is judged (``--method=eval --synthetic=SET``) by both checkouts in turn
(reference, this one, reference, this one, ...), each in its own subprocess with that
checkout first on PYTHONPATH, with the same options, the same cached real-data run (``anchor_dir``)
and the same text-embedding cache. The ratio is the reference's ``eval`` phase seconds over this
checkout's (from each run's results.json ``timings``), summed over the rounds; the CPU seconds of
each subprocess are recorded too, since other processes share the machine. The per-seed
validation and test metrics and steps of every run must be equal for the ratio to count.

The set is made first, once, by this checkout (``--prepare_method``, default random_kd), which also
trains and caches the real-data run when it is not cached yet; pass ``--set=PATH`` to use a saved one.

    python benchmarks/speed_eval.py --reference=/work/wt-before29 --dataset=amazon-games \\
        --data_path=../shared/data --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml \\
        --label_storage=text_code --n_sequences=20 --distilled_eval_seeds=3 --work_dir=/tmp/speed-eval
"""

import json
import os
import resource
import subprocess
import sys
import time

# (benchmarks/profile_run.py is not named profile.py: that would shadow the standard library's profile (cProfile imports it)
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import command_of, figure, parse, parser_of, save  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(HERE, "benchmarks", "results", "speed")


def run_checkout(repo, argv, output_dir, log):
    """Run ``repo``'s run_foster.py with ``argv``; ``(results, wall seconds, CPU seconds)``."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(repo)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, os.path.join(os.path.abspath(repo), "run_foster.py"), *argv,
                               f"--output_dir={output_dir}"], cwd=os.path.dirname(output_dir), env=env,
                              stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"error: {repo} failed (exit {done.returncode}); see {log}")
    with open(os.path.join(output_dir, "results.json")) as f:
        results = json.load(f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return results, wall, cpu


def scorer_timing(dataset, options, work, repeats):
    """Seconds of one validation check and one test, RecBole's ``Trainer.evaluate`` vs the scorer,
    on the same fresh model, alternating, in this process (the evaluation part alone)."""
    from recbole_foster.evaluation import selection_data
    from recbole_foster.run import prepare
    from recbole_foster.scoring import scorer_for

    ctx = prepare({**options, "dataset": dataset, "method": "random", "output_dir": os.path.join(work, "scorer")})
    model = ctx.new_model(ctx.config["seed"] + 1000)
    trainer = ctx.new_trainer(model)
    timing = {}
    for split, data in (("valid_check", selection_data(ctx)), ("test", ctx.test_data)):
        scorer = scorer_for(ctx.config, data)
        scorer.evaluate(model)  # collates the batches once, as the first check of a run does
        times = {"trainer_evaluate_s": [], "scorer_s": []}
        for _ in range(repeats):
            start = time.perf_counter()
            recbole = trainer.evaluate(data, load_best_model=False, show_progress=False)
            times["trainer_evaluate_s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ours = scorer.evaluate(model)
            times["scorer_s"].append(time.perf_counter() - start)
            assert dict(ours) == dict(recbole), (ours, recbole)
        timing[split] = {"rows": len(data.dataset), **{k: min(v) for k, v in times.items()},
                         "ratio": min(times["trainer_evaluate_s"]) / min(times["scorer_s"]), "metrics_equal": True}
        print(f"{split}: Trainer.evaluate {timing[split]['trainer_evaluate_s']:.2f} s, scorer "
              f"{timing[split]['scorer_s']:.2f} s ({timing[split]['ratio']:.1f}x)", flush=True)
    return timing


def selected(results):
    """What must not change: every seed's selected validation metrics, test metrics and steps."""
    return [{k: run[k] for k in ("seed", "valid", "test", "steps")} for run in results["per_seed"]]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__)
    parser.add_argument("--reference", required=True, help="checkout of the code to compare against")
    parser.add_argument("--rounds", type=int, default=1, help="reference/this-checkout pairs, alternating")
    parser.add_argument("--set", default=None, help="a saved set (set.pt); default: made once by --prepare_method")
    parser.add_argument("--prepare_method", default="random_kd")
    parser.add_argument("--work_dir", default="/tmp/speed-eval")
    parser.add_argument("--name", default="small-set-eval")
    parser.add_argument("--reuse", action="store_true",
                        help="read the runs already in --work_dir instead of running them (their process times are lost)")
    parser.add_argument("--scorer_repeats", type=int, default=3, help="timings of the evaluation alone (0: skip)")
    args, options = parse(parser, argv)
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    options = {"anchor_dir": os.path.join(work, "anchors"), "text_cache_dir": os.path.join(work, "text"), **options}
    options.pop("method", None)
    for key in ("data_path", "config_files"):  # the runs start in the work folder
        if key in options:
            options[key] = ",".join(os.path.abspath(p) for p in str(options[key]).split(","))
    run_options = [f"--dataset={args.dataset}"] + [f"--{k}={v}" for k, v in options.items()]

    set_path = args.set
    if set_path is None:
        prepare_dir = os.path.join(work, "prepare")
        print(f"making the set once: --method={args.prepare_method} (this checkout)", flush=True)
        run_checkout(HERE, [*run_options, f"--method={args.prepare_method}"], prepare_dir,
                     os.path.join(work, "prepare.log"))
        set_path = os.path.join(prepare_dir, "set.pt")
    eval_options = [*run_options, "--method=eval", f"--synthetic={os.path.abspath(set_path)}"]

    runs = []
    for round_ in range(args.rounds):
        for label, repo in (("reference", args.reference), ("this checkout", HERE)):
            out = os.path.join(work, f"{'reference' if label == 'reference' else 'new'}-{round_}")
            load = os.getloadavg()[0]
            if args.reuse:
                with open(os.path.join(out, "results.json")) as f:
                    results, wall, cpu, load = json.load(f), None, None, None
            else:
                results, wall, cpu = run_checkout(repo, eval_options, out, out + ".log")
            runs.append({"code": label, "repo": os.path.abspath(repo), "round": round_,
                         "eval_s": results["timings"]["eval"], "total_s": results["timings"]["total"],
                         "process_wall_s": wall, "process_cpu_s": cpu, "load_1min_at_start": load,
                         "selected": selected(results), "test": results["test"]})
            print(f"round {round_} {label}: eval {results['timings']['eval']:.1f} s (process CPU {cpu} s, "
                  f"load {load})", flush=True)

    scorer = scorer_timing(args.dataset, options, work, args.scorer_repeats) if args.scorer_repeats else None
    ref = [r for r in runs if r["code"] == "reference"]
    new = [r for r in runs if r["code"] == "this checkout"]
    same = all(r["selected"] == ref[0]["selected"] for r in runs)
    summary = {
        "command": command_of("speed_eval.py", argv),
        "what": "small-set evaluation (--method=eval of one saved set): reference checkout vs this checkout",
        "set": os.path.abspath(set_path),
        "run_options": eval_options,
        "ratio_eval_wall": sum(r["eval_s"] for r in ref) / sum(r["eval_s"] for r in new),
        "ratio_process_cpu": None if args.reuse else
        sum(r["process_cpu_s"] for r in ref) / sum(r["process_cpu_s"] for r in new),
        "selected_metrics_identical": same,
        "cpu_count": os.cpu_count(),
        "evaluation_alone": scorer,
        "runs": runs,
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{args.name}.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    fig, ax = figure((6, 3.2))
    labels = [f"{r['code']}\nround {r['round']}" for r in runs]
    ax.bar(labels, [r["eval_s"] for r in runs], color=["#999" if r["code"] == "reference" else "#2a7" for r in runs])
    ax.set_ylabel("eval phase (s)")
    save(fig, os.path.join(OUT, f"{args.name}.png"),
         title=f"{args.dataset}: small-set evaluation, {summary['ratio_eval_wall']:.2f}x "
               f"(selected metrics {'identical' if same else 'DIFFER'})")
    print(f"ratio (eval phase, wall) {summary['ratio_eval_wall']:.2f}x, CPU {summary['ratio_process_cpu']}x; "
          f"selected metrics identical: {same}\n{path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
