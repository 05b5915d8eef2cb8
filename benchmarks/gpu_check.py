"""Every method end to end on one device, with tiny settings: seconds and peak memory per phase.

    python benchmarks/gpu_check.py                       # CUDA when available, else CPU
    python benchmarks/gpu_check.py --device=cpu --epochs=2
    CUDA_VISIBLE_DEVICES=1 python benchmarks/gpu_check.py

Runs every registered ``--method`` (Random-KD once per label storage, DIET under
``global_temporal``, ``--method=eval`` on the FOSTER set, which is also exported with
``--export_atomic``) through ``run_foster.py``'s own :func:`~recbole_foster.run.run`, one after
the other in this process, and collects each run's ``timings``, ``peak_mem_mb_per_phase`` and
``device`` from its results. Exits 1 when a run fails or reports another device than the one
asked for (RecBole falls back to the CPU silently when CUDA is missing), so the same script
checks a GPU machine and, in CI, the CPU. Writes ``<out>/gpu-check-<device>.{json,png}``.

Any other ``--key=value`` goes to every run (after the tiny settings below), e.g. ``--data_path``,
``--dataset``, ``--text_encoder``.
"""

import json
import os
import platform
import sys
import tempfile
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import command_of, figure, parse, parser_of, save  # noqa: E402

TINY = {  # small enough for 2 CPU cores; every code path still runs
    "epochs": 1, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "train_batch_size": 256,
    "n_sequences": 4, "distilled_steps": 4, "distilled_eval_every": 2, "distilled_eval_seeds": 1,
    "foster_outer_steps": 4, "foster_inner_steps": 2, "foster_reset_interval": 2, "foster_real_batch_size": 16,
    "foster_dh_pairs": 8, "foster_user_rank": 4, "foster_time_rank": 4, "foster_checkpoint_every": 2,
    "foster_compare_random": False, "label_topk": 5, "n_sampled_items": 8,
    "diet_stages": 2, "diet_memory_size": 4, "diet_epochs": 1,
    "show_progress": False, "state": "WARNING",
}
STORAGES = ("teacher", "dense", "topk", "text_code")


def cases(work):
    """``[(case name, run options)]``: every registered method once (Random-KD per label storage);
    ``eval`` reads the set ``foster`` wrote (kept at int8), so it comes after it."""
    out = [("full", {"method": "full"}), ("random", {"method": "random"})]
    out += [(f"random_kd-{s}", {"method": "random_kd", "label_storage": s}) for s in STORAGES]
    out += [(m, {"method": m}) for m in ("kcenter", "dealrec", "goracs", "kcenter_kd", "generate_kd", "td3")]
    out += [("popularity", {"method": "popularity"}),
            ("auto", {"method": "auto", "budget_bytes": 10 ** 7, "auto_sizes": "[2,4]"})]
    out += [("foster", {"method": "foster", "export_atomic": os.path.join(work, "atomic"), "set_precision": "int8"}),
            ("eval", {"method": "eval"}),  # --synthetic: the foster case's set
            ("diet", {"method": "diet", "eval_protocol": "global_temporal"})]
    return out


def device_options(device):
    """RecBole's keys for ``device``. RecBole 1.2.1 derives ``config["device"]`` from ``gpu_id``
    alone (an empty one is the CPU) and ignores ``use_gpu``, which is set for the record."""
    if device == "cpu":
        return {"use_gpu": False, "gpu_id": ""}
    return {"use_gpu": True}


def run_case(name, options, argv_of):
    """One run; ``{status, seconds, timings, peak_mem_mb_per_phase, ...}`` or the error it raised."""
    from recbole_foster.run import run

    start = time.perf_counter()
    try:
        results = run(argv_of(options))
    except Exception as error:  # noqa: BLE001 - recorded, the remaining methods still run
        return {"status": "failed", "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc().splitlines()[-12:], "seconds": time.perf_counter() - start}, None
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row = {"status": "ok", "method": results["method"], "seconds": time.perf_counter() - start,
           "device": results["device"], "timings": results["timings"],
           "peak_mem_mb": results["peak_mem_mb"], "peak_mem_mb_per_phase": results["peak_mem_mb_per_phase"],
           "peak_mem_kind": results["peak_mem_kind"],
           "test_ndcg@10": (results.get("test") or {}).get("ndcg@10")}
    return row, results


def check(rows, device):
    """The problems: failed runs, and runs on another device than ``device`` (cpu or cuda)."""
    wanted = torch.device(device)
    problems = []
    for name, row in rows.items():
        if row["status"] != "ok":
            problems.append(f"{name}: {row['error']}")
        elif torch.device(row["device"]).type != wanted.type:
            problems.append(f"{name}: ran on {row['device']}, not {device}")
        elif wanted.type == "cuda" and row.get("peak_mem_kind", "cuda allocated") != "cuda allocated":
            problems.append(f"{name}: its peak memory is the {row['peak_mem_kind']}, not CUDA's")
    return problems


def plot(rows, device, path):
    names = [n for n, r in rows.items() if r["status"] == "ok"]
    fig, (ax_time, ax_mem) = figure((11, 0.35 * len(names) + 1.5), ncols=2)
    phases = sorted({p for n in names for p in rows[n]["timings"] if p != "total"})
    left = [0.0] * len(names)
    for phase in phases:
        widths = [rows[n]["timings"].get(phase, 0.0) for n in names]
        ax_time.barh(names, widths, left=left, label=phase)
        left = [a + b for a, b in zip(left, widths)]
    ax_time.set_xlabel("seconds per phase")
    if names:
        ax_time.legend(fontsize=7)
    ax_time.invert_yaxis()
    ax_mem.barh(names, [rows[n]["peak_mem_mb"] for n in names], color="tab:gray")
    kind = rows[names[0]]["peak_mem_kind"] if names else ""
    ax_mem.set_xlabel(f"peak memory, MB ({kind})")
    ax_mem.invert_yaxis()
    ax_mem.set_yticklabels([])
    fig.suptitle(f"every method, tiny settings, on {device}", fontsize=9)
    save(fig, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__, dataset=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda or cpu (default: cuda when available; choose the GPU with "
                             "CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "speed"))
    parser.add_argument("--work_dir", default=None,
                        help="where the runs write (default: a temporary folder, removed afterwards)")
    parser.add_argument("--only", default=None, help="comma-separated case names (default: all)")
    args, run_options = parse(parser, argv)
    if args.device not in ("cpu", "cuda"):  # cuda:N: RecBole's gpu_id would set CUDA_VISIBLE_DEVICES too late
        parser.error(f"--device must be cpu or cuda (choose the GPU with CUDA_VISIBLE_DEVICES), got {args.device}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device={args.device} but this PyTorch sees no CUDA device")
    names = [name for name, _ in cases("")]
    only = args.only.split(",") if args.only else names
    if set(only) - set(names):
        parser.error(f"--only: unknown case(s) {sorted(set(only) - set(names))}; choose from {', '.join(names)}")

    temporary = tempfile.TemporaryDirectory() if args.work_dir is None else None
    work = args.work_dir or temporary.name
    base = {**TINY, "anchor_dir": os.path.join(work, "anchors"), "checkpoint_dir": os.path.join(work, "saved"),
            **run_options, **device_options(args.device)}

    def argv_of(options):
        return [f"--{key}={value}" for key, value in options.items()]

    rows, synthetic = {}, None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # RecBole's config sets it from gpu_id
    try:
        for name, overrides in cases(work):
            if name not in only:
                continue
            options = {**base, **overrides, "output_dir": os.path.join(work, "out", name)}
            if name == "eval":
                if synthetic is None:
                    rows[name] = {"status": "failed", "error": "no set to read: run the foster case first",
                                  "seconds": 0.0}
                    continue
                options["synthetic"] = synthetic
            print(f"== {name}", flush=True)
            rows[name], results = run_case(name, options, argv_of)
            if name == "foster" and results is not None:
                synthetic = results.get("synthetic")
    finally:
        if temporary is not None:
            temporary.cleanup()
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible

    problems = check(rows, args.device)
    summary = {
        "command": command_of("gpu_check.py", argv),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "settings": {**TINY, **run_options},
        "all_ok": not problems,
        "problems": problems,
        "cases": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"gpu-check-{device.type}")
    with open(stem + ".json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    plot(rows, args.device, stem + ".png")
    print(f"\n{'case':<22}{'status':<8}{'seconds':>9}{'peak MB':>10}  device")
    for name, row in rows.items():
        print(f"{name:<22}{row['status']:<8}{row['seconds']:>9.1f}{row.get('peak_mem_mb', float('nan')):>10.1f}"
              f"  {row.get('device', '-')}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"results: {stem}.json")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
