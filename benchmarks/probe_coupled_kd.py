"""Can TD3's coupled tensor carry the teacher's soft labels? (a probe for FOSTER issue #3)

In TD3/FOSTER one distribution per synthetic position is both the next model input and the
previous position's target. Random-KD (real one-hot inputs, teacher targets) beats FOSTER by a
wide margin; this probe writes Random-KD-like data *into the coupled format* without any
distillation, position t = alpha * onehot(real item t) + (1 - alpha) * teacher(items < t),
and judges it with the same protocol. If no alpha comes near Random-KD, the format itself (not
the optimiser) is what holds FOSTER back.

    python benchmarks/probe_coupled_kd.py --alphas=1.0,0.7,0.5 --distilled_eval_seeds=1

Any other ``--key=value`` is passed to run_foster's config (dataset, data_path, ...).
"""

import json
import math
import sys

import torch

from recbole_foster.cli import parse_args
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.run import prepare, prepare_method_inputs
from recbole_foster.training_sets import HardSequences, SoftSequences, TeacherLabelledSequences


def full_length_users(ctx, n, seed):
    """``n`` random training users whose window has no padding (so every position is real)."""
    users, sequences = ctx.candidates
    full = (sequences > 0).all(1)
    users, sequences = users[full], sequences[full]
    chosen = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))[:n]
    return sequences[chosen]


def coupled_log_probs(sequences, teacher_log_probs, alpha, eps=1e-9):
    """(m, L, N) log of alpha * onehot(item) + (1 - alpha) * teacher prediction (position 0: onehot)."""
    m, length = sequences.shape
    n_items = teacher_log_probs.size(-1)
    probs = torch.zeros(m, length, n_items)
    probs.scatter_(2, sequences.unsqueeze(-1), 1.0)
    probs[:, 1:] = alpha * probs[:, 1:] + (1 - alpha) * teacher_log_probs.exp()
    probs[..., 0] = 0.0
    probs = (probs + eps) / (1 + eps * n_items)
    log_probs = probs.log()
    log_probs[..., 0] = -math.inf
    return log_probs


def main(argv):
    options = parse_args(argv)
    alphas = [float(a) for a in str(options.pop("alphas", "1.0,0.7,0.5")).split(",")]
    options.setdefault("method", "random_kd")
    ctx = prepare(options)
    prepare_method_inputs(ctx)
    n = ctx.n_sequences
    sequences = full_length_users(ctx, n, ctx.config["seed"])
    labelled = TeacherLabelledSequences.from_teacher(sequences, ctx.teacher)
    rows = {"Full": ctx.real_run.manifest["test"]}
    rows[f"hard-{n}"] = evaluate_training_set(ctx, HardSequences(sequences), desc="hard")["test"]
    rows[f"Random-KD-{n}"] = evaluate_training_set(ctx, labelled, desc="random-kd")["test"]
    for alpha in alphas:
        soft = SoftSequences(coupled_log_probs(sequences, labelled.target_log_probs, alpha))
        rows[f"coupled alpha={alpha}"] = evaluate_training_set(ctx, soft, desc=f"alpha {alpha}")["test"]
    print(json.dumps({k: {m: v[m] for m in ("ndcg@10", "ndcg@10_std", "recall@10") if m in v}
                      for k, v in rows.items()}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
