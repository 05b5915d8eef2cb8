"""Distillation cost: FOSTER vs TD3, over all items vs a sampled subset, and catalog scaling.

The paper's Table 5 (per-epoch time and peak memory of TD3 and FOSTER, all items and 512 items)
and a curve of one FOSTER outer step's time and memory on synthetic catalogs of growing size.

    python benchmarks/efficiency.py --dataset=amazon-games --data_path=../shared/data

Every configuration is measured in this one process, on the same data, model and summary size.
Time: wall clock of ``--timed_steps`` outer steps after one warm-up step, the configurations
taking their steps in turns (so a changing machine load weighs on all alike); ``epoch_s`` is that
per-step time times ``--steps_per_epoch`` (default R = foster_reset_interval, the outer steps
between two resets), i.e. extrapolated, not timed over a whole epoch. Memory: the traced peak of
tensors allocated during one outer step (PyTorch profiler allocation events; on CUDA the peak
allocated memory), so data loading and the text-embedding table are not counted.
The teacher and anchors are untrained models of the right shape with random resets: what they
contain does not change what a step costs, and it spares the real-data training run.
Writes ``benchmarks/results/speed/efficiency-<dataset>.json`` and, with ``--scaling``, ``.png``,
with the ratios TD3-512 / FOSTER-512 of step time and peak memory.
TD3's step time varies with its random number of skipped steps (0..td3_max_skip): use enough
``--timed_steps`` (the same seed gives the same draws for every configuration).

Extra rows, each measured in this same process:

* ``--td3_windows=40``: TD3-512 with other ``td3_window`` values (TD3's published window is 40;
  the plugin's default is 10), since TD3's cost grows with its unrolled window;
* ``--fused_gelu``: TD3-512 and FOSTER-512 with the transformer's feed-forward activation
  replaced by PyTorch's fused ``F.gelu`` (RecBole's ``FeedForward.gelu`` is five elementwise ops
  whose intermediates autograd keeps; outputs differ by float rounding, < 1e-6).

Catalog scaling (``--scaling``) uses random tables of width ``--scaling_dim`` (default: the
dataset's) and, with ``--share_tables``, one catalog table for the model, the teacher and FOSTER's
inner copy (each builds its own copy today; a 10M x 384 float32 table is 15 GiB). ``held_mb``
is what the loop holds in catalog-sized tensors; ``rss_mb`` the process's resident memory.
"""

import json
import os
import platform
import resource
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from recbole.model.layers import FeedForward
from torch.profiler import ProfilerActivity, profile

from common import command_of, figure, parse, parser_of, save, write_results  # beside this script
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.distill.td3 import TD3Solver
from recbole_foster.label_modes import MODES
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster.run import prepare

SOLVERS = {"foster": BomeSolver, "td3": TD3Solver}


def traced_peak_mb(fn, device):
    """Peak of live tensor memory allocated while ``fn`` runs (MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # op events carry their own allocations (self), "[memory]" events the frees; in time order
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


class FakeCatalog:
    """A catalog of ``n_items`` random text embeddings, standing in for a RecBole dataset."""

    def __init__(self, n_items, dim, seed=0):
        self.n_items = n_items
        self.item_text_embeddings = torch.randn(n_items, dim, generator=torch.Generator().manual_seed(seed))
        self.item_text_embeddings[0] = 0

    def num(self, field):
        return self.n_items


def fake_real_data(config, n_items, n_rows=4096, seed=0):
    """Real-looking training samples over the first items of a fake catalog."""
    generator = torch.Generator().manual_seed(seed)
    length = config["MAX_ITEM_LIST_LENGTH"]
    high = min(n_items, 1000)
    feat = {
        config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]: torch.randint(1, high, (n_rows, length), generator=generator),
        config["ITEM_LIST_LENGTH_FIELD"]: torch.full((n_rows,), length),
        config["ITEM_ID_FIELD"]: torch.randint(1, high, (n_rows,), generator=generator),
    }
    return SimpleNamespace(inter_feat=feat)


def models_of(loop):
    """The models a loop holds: the learner, the teacher and (FOSTER) the inner copy."""
    inner = getattr(loop.solver, "inner_model", None)
    return [loop.model, loop.teacher] + ([inner] if inner is not None else [])


def build(ctx, method, sampled, catalog, real_dataset, share_tables=False, fused_gelu=False, td3_window=None):
    """A trainer for ``method`` with ``sampled`` items per step (None = all items).

    ``share_tables``: the models use the catalog's own table instead of a copy each (each copy is
    dropped as soon as it is made, so at most one extra copy exists at a time). ``fused_gelu``:
    the feed-forward activation is ``F.gelu``. ``td3_window``: overrides the config's.
    """
    config = ctx.config
    config["foster_reset"] = config["foster_start"] = "random"
    n_real = catalog.n_items - 1
    config["n_sampled_items"] = sampled or n_real
    config["td3_items"] = "all" if sampled is None else "sampled"
    window = config["td3_window"]
    if td3_window is not None:
        config["td3_window"] = td3_window
    device = config["device"]
    table = catalog.item_text_embeddings.to(device)

    def text_model():
        model = TextSASRec(config, catalog).to(device)
        if share_tables:
            model.item_embedding.table = table
        return model

    torch.manual_seed(config["seed"])
    model, teacher = text_model(), text_model()
    summary = SyntheticSummary(item_factor_from_text(catalog.item_text_embeddings).to(device),
                               config["n_sequences"] or 20, config["foster_seq_len"],
                               config["foster_user_rank"], config["foster_time_rank"],
                               config["foster_temperature"]).to(device)
    loop = DistillationLoop(config, model, teacher, summary, real_dataset, None, [], MODES["coupled"], SOLVERS[method])
    config["td3_window"] = window
    for module in models_of(loop):
        if share_tables:
            module.item_embedding.table = table
        if fused_gelu:
            for layer in module.modules():
                if isinstance(layer, FeedForward):
                    layer.intermediate_act_fn = F.gelu
    return loop


def held_mb(loop, n_items):
    """MiB of distinct catalog-sized tensors (n_items rows) the loop's models and summary hold."""
    tensors = [t for m in models_of(loop) + [loop.summary] for t in list(m.buffers()) + list(m.parameters())]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors
                if t.dim() == 2 and t.size(0) == n_items}
    return len(storages), sum(storages.values()) / 2**20


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def measure(trainer, timed_steps, device):
    """(seconds per outer step, traced peak MiB of one step)."""
    (step_s,), (peak,) = measure_together([trainer], timed_steps, device)
    return step_s, peak


def measure_together(trainers, timed_steps, device):
    """([seconds per outer step], [traced peak MiB of one step]) of each trainer, their timed steps
    taken in turns (one step of each per round), so that a change of the machine's load during
    the run weighs on every configuration alike and their ratios stay fair."""
    for trainer in trainers:
        trainer.outer_step()  # warm-up, includes the first reset
    seconds = [0.0] * len(trainers)
    for _ in range(timed_steps):
        for i, trainer in enumerate(trainers):
            start = time.perf_counter()
            trainer.outer_step()
            seconds[i] += time.perf_counter() - start
    return [s / timed_steps for s in seconds], [traced_peak_mb(t.outer_step, device) for t in trainers]


def ratio(td3, foster):
    return {"step_time": td3["step_s"] / foster["step_s"], "peak_memory": td3["peak_mem_mb"] / foster["peak_mem_mb"]}


def plot(results, path):
    items = [r["items"] for r in results["scaling"]]
    fig, axes = figure((9, 3.5), ncols=2)
    axes[0].plot(items, [r["step_s"] for r in results["scaling"]], "o-")
    axes[1].plot(items, [r["peak_mem_mb"] for r in results["scaling"]], "o-", label="traced peak of one step")
    axes[1].plot(items, [r["held_mb"] for r in results["scaling"]], "s--", label="catalog tables held")
    axes[1].legend(fontsize=8)
    for ax, label in zip(axes, ["seconds per outer step", "memory (MiB)"]):
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)  # from zero: flat means flat
        ax.set_xlabel("catalog size (items)")
        ax.set_ylabel(label)
    dims = sorted({r.get("dim") for r in results["scaling"]} - {None})
    shared = ", one table shared by the models" if results.get("scaling_tables_shared") else ""
    fig.suptitle(f"FOSTER ({results['n_sampled_items']} sampled items): one outer step vs catalog size "
                 f"(tables {'/'.join(map(str, dims))} wide{shared})")
    save(fig, path)


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--sampled", type=int, default=512)
    parser.add_argument("--timed_steps", type=int, default=5)
    parser.add_argument("--steps_per_epoch", type=int, default=None)
    parser.add_argument("--scaling", default="10000,100000,1000000")
    parser.add_argument("--scaling_dim", type=int, default=None)
    parser.add_argument("--share_tables", action="store_true")
    parser.add_argument("--td3_windows", default="")
    parser.add_argument("--fused_gelu", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/speed")
    args, run_options = parse(parser, argv)
    options = {"dataset": args.dataset, "method": "foster", "output_dir": os.path.join("outputs", "efficiency")}
    if args.data_path:
        options["data_path"] = args.data_path
    options.update(run_options)
    ctx = prepare(options)
    config, device = ctx.config, ctx.config["device"]
    steps_per_epoch = args.steps_per_epoch or config["foster_reset_interval"]
    catalog = SimpleNamespace(n_items=ctx.dataset.item_num, item_text_embeddings=ctx.dataset.item_text_embeddings,
                              num=lambda field: ctx.dataset.item_num)
    configurations = [(method, sampled, {}) for method in ("td3", "foster") for sampled in (None, args.sampled)]
    extra = [("td3", {"td3_window": int(w)}) for w in args.td3_windows.split(",") if w]
    if args.fused_gelu:
        extra += [("td3", {"fused_gelu": True}), ("foster", {"fused_gelu": True})]
    configurations += [(method, args.sampled, variant) for method, variant in extra]
    trainers = [build(ctx, method, sampled, catalog, ctx.train_data.dataset, **variant)
                for method, sampled, variant in configurations]
    rows = []
    for (method, sampled, variant), step_s, peak in zip(configurations, *measure_together(trainers, args.timed_steps, device)):
        rows.append({"method": method, "items": "all" if sampled is None else sampled, **variant, "step_s": step_s,
                     "epoch_s": step_s * steps_per_epoch, "peak_mem_mb": peak})
        print(json.dumps(rows[-1]), flush=True)
    del trainers
    scaling = []
    dim = args.scaling_dim or ctx.dataset.item_text_embeddings.size(1)
    for n_items in [int(n) for n in args.scaling.split(",") if n]:
        fake = FakeCatalog(n_items + 1, dim)
        trainer = build(ctx, "foster", args.sampled, fake, fake_real_data(config, n_items + 1),
                        share_tables=args.share_tables)
        copies, held = held_mb(trainer, n_items + 1)
        step_s, peak = measure(trainer, args.timed_steps, device)
        scaling.append({"method": "foster", "items": n_items, "dim": dim, "step_s": step_s, "peak_mem_mb": peak,
                        "catalog_copies": copies, "held_mb": held, "rss_mb": rss_mb()})
        print(json.dumps(scaling[-1]), flush=True)
        del trainer, fake
    def row(method, **variant):
        keys = ("td3_window", "fused_gelu")
        return next(r for r in rows if r["method"] == method and r["items"] == args.sampled
                    and all(r.get(k) == variant.get(k) for k in keys))

    ratios = {"default": ratio(row("td3"), row("foster"))}
    for method, variant in extra:
        if method == "td3":
            foster = row("foster", **variant) if "fused_gelu" in variant else row("foster")
            ratios[",".join(f"{k}={v}" for k, v in variant.items())] = ratio(row("td3", **variant), foster)
    results = {
        "dataset": args.dataset, "n_items": ctx.dataset.item_num - 1, "n_sampled_items": args.sampled,
        "n_sequences": config["n_sequences"], "seq_len": config["foster_seq_len"],
        "foster_inner_steps": config["foster_inner_steps"], "td3_window": config["td3_window"],
        "td3_max_skip": config["td3_max_skip"], "timed_steps": args.timed_steps,
        "steps_per_epoch": steps_per_epoch, "epoch_s_is": f"step_s x {steps_per_epoch} (extrapolated)",
        "peak_mem_is": "traced peak of tensors allocated during one outer step",
        "device": str(device), "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(), "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "command": command_of("efficiency.py", argv),
        f"td3_{args.sampled}_over_foster_{args.sampled}": ratios,
        "rows": rows, "scaling": scaling, "scaling_tables_shared": args.share_tables,
    }
    write_results(args.out, f"efficiency-{args.dataset}", results, plot if scaling else None)


if __name__ == "__main__":
    main(sys.argv[1:])
