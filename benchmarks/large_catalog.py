"""Large catalogs: embed N synthetic item texts through the streamed cache, then distil on them.

For each catalog size N (``--items``) this script

1. writes a synthetic catalog: ``<work>/large-N/large-N.item`` (one title of 2-6 random words of
   the encoder's vocabulary per item) and ``large-N.inter`` (users with 20 time-ordered
   interactions each, items drawn uniformly over the whole catalog);
2. embeds the titles with ``--text_encoder`` (default: the offline all-MiniLM-L6-v2 fallback)
   through :func:`recbole_foster.text_embedding.get_text_embeddings`, i.e. streamed batch by batch
   into the memory-mapped, resumable cache, and reports rows per second. Sizes above
   ``--embed_max`` are not embedded (on 2 CPU cores MiniLM takes hours for 1M titles): their
   distillation runs on a random table of the encoder's width, and the JSON says so;
3. reads the table back as the run does (one in-memory tensor from the memory-mapped .npy);
4. reads the interaction file into next-item training samples (prefixes of
   ``MAX_ITEM_LIST_LENGTH``; with pandas, not through RecBole's Dataset) and runs ``--steps``
   FOSTER outer steps (``--sampled`` items per step, untrained teacher as in efficiency.py).

``--share_tables``: the learner, teacher and FOSTER's inner copy use one catalog table instead of
a copy each (what a run would hold with the models sharing the dataset's table).

Peak resident memory (VmHWM of this process, reset before every phase through
/proc/self/clear_refs) is recorded per phase. Writes
``benchmarks/results/speed/large-catalog.json`` and ``.png``.

    python benchmarks/large_catalog.py --items=10000,100000,1000000 --embed_max=100000
"""

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time

import numpy as np
import pandas as pd
import torch

from common import command_of, figure, parse, parser_of, save, write_results  # beside this script
from efficiency import build  # beside this script
from recbole_foster import text_embedding as te
from recbole_foster.run import build_config


def reset_peak():
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def phase(record, name, fn):
    """Run ``fn`` as one phase: its seconds and peak RSS go into ``record``; returns its result."""
    reset_peak()
    start = time.perf_counter()
    result = fn()
    record[name] = {"s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}
    print(f"  {name}: {record[name]['s']:.1f} s, peak RSS {record[name]['peak_rss_mb']:.0f} MiB", flush=True)
    return result


def vocabulary(tokenizer):
    return sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) >= 3)


def write_catalog(folder, name, n_items, words, users_per_item=0.1, per_user=20, seed=0):
    """The .item (titles) and .inter (uniform items, increasing timestamps) atomic files."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    titles = [" ".join(rng.choices(words, k=rng.randint(2, 6))) for _ in range(n_items)]
    items = pd.DataFrame({"item_id:token": np.arange(1, n_items + 1), "title:token_seq": titles})
    items.to_csv(os.path.join(folder, f"{name}.item"), sep="\t", index=False)
    n_users = max(1, int(n_items * users_per_item))
    generator = np.random.default_rng(seed)
    inter = pd.DataFrame({
        "user_id:token": np.repeat(np.arange(1, n_users + 1), per_user),
        "item_id:token": generator.integers(1, n_items + 1, n_users * per_user),
        "timestamp:float": np.tile(np.arange(per_user), n_users),
    })
    inter.to_csv(os.path.join(folder, f"{name}.inter"), sep="\t", index=False)
    return titles


def training_samples(path, config):
    """Each user's last item after its previous ``MAX_ITEM_LIST_LENGTH`` (item ids as written: the
    file's ids are already 1..N, 0 = padding), as the tensors DistillationLoop reads."""
    inter = pd.read_csv(path, sep="\t").sort_values(["user_id:token", "timestamp:float"], kind="stable")
    length = config["MAX_ITEM_LIST_LENGTH"]
    per_user = inter.groupby("user_id:token")["item_id:token"].apply(lambda s: s.to_numpy()[-(length + 1):])
    seqs = np.zeros((len(per_user), length), dtype=np.int64)
    lengths, targets = np.zeros(len(per_user), dtype=np.int64), np.zeros(len(per_user), dtype=np.int64)
    for row, items in enumerate(per_user):
        seqs[row, :len(items) - 1], lengths[row], targets[row] = items[:-1], len(items) - 1, items[-1]
    feat = {config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]: torch.from_numpy(seqs),
            config["ITEM_LIST_LENGTH_FIELD"]: torch.from_numpy(lengths),
            config["ITEM_ID_FIELD"]: torch.from_numpy(targets)}
    return type("Samples", (), {"inter_feat": feat})()


class Catalog:
    def __init__(self, table):
        self.n_items, self.item_text_embeddings = table.size(0), table

    def num(self, field):
        return self.n_items


def run_size(n_items, args, config, tokenizer, words):
    record = {"items": n_items}
    name = f"large-{n_items}"
    folder = os.path.join(args.work, name)
    if not args.keep_cache:  # a fresh embedding is measured, not a cache hit
        shutil.rmtree(os.path.join(folder, "cache"), ignore_errors=True)
    print(f"{n_items} items", flush=True)
    titles = phase(record, "catalog", lambda: write_catalog(folder, name, n_items, words))
    texts = [""] + titles  # row 0: padding, as item_texts() makes it
    del titles
    if n_items <= args.embed_max:
        def embed():
            table, used, info = te.get_text_embeddings(
                texts, args.text_encoder, ["title"], pooling="mean", max_tokens=32, batch_size=args.batch_size,
                cache_dir=os.path.join(folder, "cache"), show_progress=False)
            return used, info
        used, info = phase(record, "embed", embed)
        record.update(encoder=used, embedded=True, cache_hit=info["cache_hit"], resumed_at=info["resumed_at"],
                      rows_per_s=None if info["cache_hit"] else len(texts) / record["embed"]["s"])
        def load():
            table = torch.from_numpy(np.array(np.load(info["cache_file"], mmap_mode="r"), dtype=np.float32))
            table[0] = 0.0
            return table
        table = phase(record, "load", load)
    else:
        record.update(embedded=False, note=f"not embedded (> --embed_max={args.embed_max}): random table of width "
                                           f"{args.dim} for the distillation")
        table = phase(record, "load", lambda: torch.randn(n_items + 1, args.dim, generator=torch.Generator().manual_seed(0)))
    del texts
    samples = phase(record, "samples", lambda: training_samples(os.path.join(folder, f"{name}.inter"), config))
    record["real_samples"] = len(samples.inter_feat[config["ITEM_ID_FIELD"]])
    catalog = Catalog(table)

    def distil():
        loop = build(ctx_of(config), "foster", args.sampled, catalog, samples, share_tables=args.share_tables)
        loop.outer_step()  # the first step includes the reset
        start = time.perf_counter()
        for _ in range(args.steps):
            loop.outer_step()
        return (time.perf_counter() - start) / args.steps
    record["foster_step_s"] = phase(record, "distil", distil)
    record["table_mb"] = table.numel() * 4 / 2**20
    return record


def ctx_of(config):
    return type("Ctx", (), {"config": config})()


def extrapolate(sizes):
    """Seconds the sizes not embedded would take at the rows/s of the largest embedded one."""
    measured = [r for r in sizes if r.get("rows_per_s")]
    if not measured:
        return
    rate = max(measured, key=lambda r: r["items"])
    for r in sizes:
        if not r["embedded"]:
            r["embed_s_extrapolated"] = (r["items"] + 1) / rate["rows_per_s"]
            r["embed_s_extrapolated_is"] = f"items / rows_per_s measured at {rate['items']} items"


def plot(results, path):
    rows = results["sizes"]
    fig, axes = figure((13, 3.8), ncols=3)
    for name in ("catalog", "embed", "load", "samples", "distil"):
        points = [(r["items"], r[name]["peak_rss_mb"] / 1024) for r in rows if name in r]
        axes[0].plot(*zip(*points), "o-", label=name)
    axes[0].axhline(24, color="grey", ls="--", lw=1, label="24 GiB")
    axes[0].set_ylabel("peak RSS of the phase (GiB)")
    axes[0].legend(fontsize=8)
    embedded = [r for r in rows if r.get("rows_per_s")]
    axes[1].plot([r["items"] for r in embedded], [r["rows_per_s"] for r in embedded], "o-")
    axes[1].set_ylabel(f"embedding rows / s ({results['encoder_name']})")
    axes[2].plot([r["items"] for r in rows], [r["foster_step_s"] for r in rows], "s-")
    axes[2].set_ylabel(f"s / FOSTER-{results['n_sampled_items']} outer step")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("catalog size (items)")
    fig.suptitle(f"synthetic catalogs, {results['threads']} thread(s), load average {results['load'][0]:.1f}")
    save(fig, path)


def encoder_name(used, requested):
    if requested == te._fallback_folder():
        return "all-MiniLM-L6-v2"
    return os.path.basename(used.rstrip("/")) if os.path.isdir(used) else used


def sizes_of(text):
    """``"10000,100000"`` -> ``[10000, 100000]`` (catalog sizes of at least 2 items)."""
    try:
        sizes = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of item counts >= 2")
    return sizes


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--items", type=sizes_of, default="10000,100000")
    parser.add_argument("--embed_max", type=int, default=100000)
    parser.add_argument("--text_encoder", default=None, help="default: the offline all-MiniLM-L6-v2 fallback")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=384, help="width of the random table of sizes not embedded")
    parser.add_argument("--sampled", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--share_tables", action="store_true",
                        help="the models use one catalog table (efficiency.py's option); writes large-catalog-shared.json")
    parser.add_argument("--name", default=None, help="file name of the results (default: large-catalog[-shared])")
    parser.add_argument("--keep_cache", action="store_true", help="reuse (or resume) the embedding caches of --work")
    parser.add_argument("--work", default=os.path.join("outputs", "large_catalog"))
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "speed"))
    args, run_options = parse(parser, argv)
    args.text_encoder = args.text_encoder or te._fallback_folder()
    config, _ = build_config({"dataset": args.dataset, "method": "foster", **run_options})
    try:
        tokenizer, model, used = te.load_text_encoder(args.text_encoder)
    except te.TextEncoderUnavailable as error:
        parser.error(str(error))
    args.dim = model.config.hidden_size
    words = vocabulary(tokenizer)
    del model
    sizes = []
    for n_items in args.items:
        sizes.append(run_size(n_items, args, config, tokenizer, words))
        print(json.dumps(sizes[-1]), flush=True)
    extrapolate(sizes)
    results = {
        "encoder": used, "encoder_name": encoder_name(used, args.text_encoder),
        "n_sampled_items": args.sampled, "timed_steps": args.steps, "embed_batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "device": str(config["device"]),
        "machine": platform.processor() or platform.machine(), "load": os.getloadavg(),
        "tables_shared": args.share_tables, "peak_is": "VmHWM of the process during the phase (reset per phase via /proc/self/clear_refs)",
        "command": command_of("large_catalog.py", argv), "sizes": sizes,
    }
    name = args.name or ("large-catalog-shared" if args.share_tables else "large-catalog")
    write_results(args.out, name, results, plot)


if __name__ == "__main__":
    main(sys.argv[1:])
