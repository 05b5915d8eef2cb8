"""Dataset traits: size, sequence length, popularity concentration and text-embedding spread.

    PYTHONPATH=. python benchmarks/dataset_traits.py \
        --datasets=ml-100k,ml-1m=../shared/data,amazon-games=../shared/data,amazon-beauty=/work/data \
        --text_cache_dir=saved/text_embeddings

What characterises the datasets where a distilled set helps and where it does not. Each dataset is
loaded exactly as a run loads it (its YAML in recbole_foster/properties/dataset, RecBole's k-core)
and its item texts are embedded with the run's encoder through the package's cache, so a dataset
that a run has already embedded costs no encoding here (the fallback encoder embeds ~700 items/s on
one core). ``NAME`` alone uses RecBole's default data path (ml-100k ships inside the recbole wheel);
``NAME=PATH`` reads PATH/NAME/NAME.inter. Any other ``--key=value`` goes to every dataset's config
(e.g. ``--text_encoder``).

Per dataset: users, items, interactions, mean/median sequence length (interactions per user),
density, share of interactions on the top 1% items (ceil of 1% of the catalog), and over a seeded
sample of ``--sample`` items (all items when fewer) the mean pairwise cosine distance of their text
embeddings (1 - cosine over distinct pairs) and the effective rank of the mean-centred sample
(exp of the entropy of the normalised singular values, Roy & Vetterli 2007). Writes
``<out>/dataset-traits.{json,md}``; the command heads the table and is stored in the JSON.
"""

import math
import os
import sys

import numpy as np

from common import command_of, parse, parser_of, write_results, write_table  # beside this script


def dataset_specs(value):
    """``[(name, data_path or None)]`` from ``a,b=PATH``."""
    specs = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, _, path = part.partition("=")
        specs.append((name, path or None))
    return specs


def interaction_traits(user_ids, item_ids, n_items):
    """Size, sequence length, density and popularity concentration of one interaction table."""
    per_user = np.bincount(user_ids)
    per_user = per_user[per_user > 0]
    per_item = np.sort(np.bincount(item_ids, minlength=n_items))[::-1]
    n = len(user_ids)
    top = max(1, math.ceil(0.01 * n_items))
    return {"users": int(len(per_user)), "items": int(n_items), "interactions": int(n),
            "mean_seq_len": float(per_user.mean()), "median_seq_len": float(np.median(per_user)),
            "density": n / (len(per_user) * n_items), "top1pct_items": top,
            "top1pct_share": float(per_item[:top].sum() / n)}


def embedding_spread(table, sample, seed):
    """Mean pairwise cosine distance and effective rank of a seeded sample of embedding rows."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(table), size=min(sample, len(table)), replace=False))
    x = np.asarray(table[rows], dtype=np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    m = len(unit)
    total = unit.sum(axis=0)
    mean_cos = (total @ total - m) / (m * (m - 1))  # sum over i != j of cos(i, j), without the m x m matrix
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return {"sampled_items": int(m), "mean_cosine_distance": float(1.0 - mean_cos),
            "effective_rank": float(np.exp(-(p * np.log(p)).sum())), "dim": int(x.shape[1])}


def traits_of(name, data_path, run_options, sample, seed):
    """Load one dataset as a run does and measure it."""
    from recbole_foster.dataset import create_dataset
    from recbole_foster.run import build_config
    from recbole_foster.text_embedding import attach_item_text_embeddings

    options = {**run_options, "dataset": name, "method": "full", "output_dir": os.devnull}
    if data_path:
        options["data_path"] = data_path
    config, _ = build_config(options)
    dataset = create_dataset(config, need_item_file=True)
    inter = dataset.inter_feat
    n_items = dataset.item_num - 1  # id 0 is padding
    traits = {"dataset": name, "data_path": config["data_path"], "eval_protocol": config["eval_protocol"],
              **interaction_traits(np.asarray(inter[dataset.uid_field]), np.asarray(inter[dataset.iid_field]) - 1, n_items)}
    dataset.build()  # RecBole turns the feature tables into tensors here (the text lookup reads them)
    encoder = attach_item_text_embeddings(config, dataset, show_progress=True)
    table = dataset.item_text_embeddings[1:].numpy()
    return {**traits, "text_encoder": encoder, "text_fields": list(config["text_fields"]),
            **embedding_spread(table, sample, seed)}


TABLE_COLUMNS = [("dataset", "{}"), ("users", "{:,}"), ("items", "{:,}"), ("interactions", "{:,}"),
                 ("mean_seq_len", "{:.2f}"), ("median_seq_len", "{:.1f}"), ("density", "{:.5f}"),
                 ("top1pct_share", "{:.3f}"), ("mean_cosine_distance", "{:.3f}"), ("effective_rank", "{:.1f}")]


def markdown(rows, sample):
    head = "| " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "---|" * len(TABLE_COLUMNS)
    body = ["| " + " | ".join(f.format(r[c]) for c, f in TABLE_COLUMNS) + " |" for r in rows]
    encoders = sorted({r["text_encoder"] for r in rows})
    note = (f"\ntop1pct_share: share of interactions on the top 1% items; text columns over a seeded sample "
            f"of at most {sample} items per dataset, encoder {', '.join(encoders)}.")
    return "\n".join([head, rule, *body]) + "\n" + note


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_of(__doc__, dataset=None)
    parser.add_argument("--datasets", default="ml-100k", help="comma list of NAME or NAME=DATA_PATH")
    parser.add_argument("--sample", type=int, default=2000, help="items sampled for the text spread")
    parser.add_argument("--sample_seed", type=int, default=2020)
    parser.add_argument("--out", default="benchmarks/results/dataset-traits")
    args, run_options = parse(parser, argv)
    if args.sample < 2:
        parser.error("--sample must be at least 2")
    specs = dataset_specs(args.datasets)
    if not specs:
        parser.error("--datasets names no dataset")
    rows = [traits_of(name, path, run_options, args.sample, args.sample_seed) for name, path in specs]
    command = command_of("dataset_traits.py", argv)
    for row in rows:
        print(" ".join(f"{c}={f.format(row[c])}" for c, f in TABLE_COLUMNS), flush=True)
    write_results(args.out, "dataset-traits", {"command": command, "sample": args.sample,
                                                "sample_seed": args.sample_seed, "datasets": rows})
    write_table(os.path.join(args.out, "dataset-traits.md"), command, markdown(rows, args.sample))


if __name__ == "__main__":
    main()
