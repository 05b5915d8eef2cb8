"""How a small training set (distilled or selected) is judged: train a fresh model on it only.

A fresh TextSASRec (new seed; only the frozen text embeddings are shared with anything trained
on real data) is trained on the sequences alone, model selection uses the *real* validation
split, and the selected model is scored with RecBole's full-ranking evaluation on the real test
split. Every method (FOSTER, Random, coresets) goes through :func:`evaluate_training_set`, so
their numbers differ only in the training sequences.
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm


def soft_sequence_loss(model, log_probs, item_ids, target_log_probs=None):
    """KL(next-position target || model prediction) on soft sequences over the items ``item_ids``.

    ``log_probs`` (m, n, K) are the sequences' log-distributions. Inputs are positions 0..n-2
    embedded as probability-weighted mixes of the model's item representations; targets are the
    distributions at positions 1..n-1 (FOSTER App. B.2) of ``target_log_probs``, which default
    to ``log_probs`` itself (TD3/FOSTER's coupled tensor). Targets enter as log-probabilities:
    differentiating ``p log p`` through a probability that underflowed to 0 gives NaN.
    """
    targets = log_probs if target_log_probs is None else target_log_probs
    hidden = model.encode_soft(log_probs[:, :-1].exp(), item_ids)
    log_pred = F.log_softmax(model.scores(hidden, item_ids), dim=-1)
    return F.kl_div(log_pred, targets[:, 1:], reduction="none", log_target=True).sum(-1).mean()


def teacher_soft_labels(teacher, log_probs, item_ids):
    """(m, n, K) targets for soft sequences: the teacher's next-item prediction from each prefix.

    Position t + 1's label is the teacher's distribution over ``item_ids`` after reading the soft
    inputs 0..t (``foster_targets: teacher``), so labels always agree with the current inputs.
    Position 0 has no prefix and is never a target; it holds the inputs' own row. Gradients flow
    to ``log_probs`` (a label is a function of the inputs), never into the frozen teacher.
    """
    hidden = teacher.encode_soft(log_probs[:, :-1].exp(), item_ids)
    labels = torch.log_softmax(teacher.scores(hidden, item_ids), dim=-1)
    return torch.cat([log_probs[:, :1], labels], dim=1)


class SoftSequences:
    """Synthetic soft sequences, given as log-distributions (m, n, n_items) over the catalog.

    ``target_log_probs`` are separate soft labels (``foster_targets: separate``); None means the
    inputs are also the targets. The padding item (column 0, probability 0) is left out.
    """

    def __init__(self, log_probs, target_log_probs=None):
        self.log_probs = log_probs[..., 1:]
        self.target_log_probs = None if target_log_probs is None else target_log_probs[..., 1:]

    def __len__(self):
        return self.log_probs.size(0)

    def loss(self, model, rows):
        device = model.item_text_embeddings.device
        log_probs = self.log_probs[rows].to(device)
        targets = None if self.target_log_probs is None else self.target_log_probs[rows].to(device)
        items = torch.arange(1, log_probs.size(-1) + 1, device=log_probs.device)
        return soft_sequence_loss(model, log_probs, items, targets)


class HardSequences:
    """Real item-id sequences (m, L), right-padded with 0: next-item cross-entropy at every position."""

    def __init__(self, item_seqs):
        self.item_seqs = item_seqs

    def __len__(self):
        return self.item_seqs.size(0)

    def loss(self, model, rows):
        seqs = self.item_seqs[rows].to(model.item_text_embeddings.device)
        hidden = model.encode(seqs[:, :-1])
        targets = seqs[:, 1:]
        mask = (targets > 0) & (seqs[:, :-1] > 0)
        return F.cross_entropy(model.scores(hidden[mask]), targets[mask])


class TeacherLabelledSequences(HardSequences):
    """Real sequences with the teacher's next-item distributions as KL targets (Random-KD).

    Separates what soft labels alone add from what synthetic sequences add (DD-Ranking).
    """

    def __init__(self, item_seqs, teacher):
        super().__init__(item_seqs)
        with torch.no_grad():
            teacher.eval()
            seqs = item_seqs.to(teacher.item_text_embeddings.device)
            hidden = teacher.encode(seqs[:, :-1])
            scores = teacher.scores(hidden)
            scores[..., 0] = float("-inf")
            self.target_log_probs = torch.log_softmax(scores, dim=-1).cpu()

    def loss(self, model, rows):
        seqs = self.item_seqs[rows].to(model.item_text_embeddings.device)
        targets = self.target_log_probs[rows].to(seqs.device)[..., 1:]
        mask = (seqs[:, 1:] > 0) & (seqs[:, :-1] > 0)
        hidden = model.encode(seqs[:, :-1])[mask]
        log_pred = F.log_softmax(model.scores(hidden)[:, 1:], dim=-1)
        return F.kl_div(log_pred, targets[mask], reduction="none", log_target=True).sum(-1).mean()


def _ndcg(result, metric):
    return float(result[metric.lower()])


def train_and_select(ctx, sequences, seed, desc="eval"):
    """Train a fresh model on ``sequences``; return (best valid metrics, test metrics, steps)."""
    config = ctx.config
    model = ctx.new_model(seed)
    trainer = ctx.new_trainer(model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["distilled_lr"], weight_decay=config["distilled_weight_decay"]
    )
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(config["distilled_batch_size"], len(sequences))
    metric = config["valid_metric"]
    best_score, best_state, best_valid, bad_checks = -np.inf, None, None, 0
    steps = config["distilled_steps"]
    progress = tqdm(range(1, steps + 1), desc=f"{desc} (seed {seed})", leave=False, mininterval=2)
    for step in progress:
        model.train()
        rows = torch.randperm(len(sequences), generator=generator)[:batch_size]
        loss = sequences.loss(model, rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config["distilled_eval_every"] == 0 or step == steps:
            valid = trainer.evaluate(ctx.valid_data, load_best_model=False, show_progress=False)
            score = _ndcg(valid, metric)
            progress.set_postfix(loss=f"{loss.item():.4f}", **{metric: f"{score:.4f}"})
            if score > best_score:
                best_score, best_valid, bad_checks = score, valid, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_checks += 1
                if bad_checks >= config["distilled_patience"]:
                    break
    model.load_state_dict(best_state)
    test = trainer.evaluate(ctx.test_data, load_best_model=False, show_progress=False)
    return {k: float(v) for k, v in best_valid.items()}, {k: float(v) for k, v in test.items()}, step


def evaluate_training_set(ctx, sequences, desc="eval"):
    """Mean and std over ``distilled_eval_seeds`` evaluation seeds, plus the per-seed numbers."""
    config = ctx.config
    seeds = [config["seed"] + 1000 + i for i in range(config["distilled_eval_seeds"])]
    per_seed = []
    with ctx.timed("eval"):
        for seed in seeds:
            valid, test, steps = train_and_select(ctx, sequences, seed, desc=desc)
            per_seed.append({"seed": seed, "valid": valid, "test": test, "steps": steps})
    summary = {}
    for split in ("valid", "test"):
        keys = per_seed[0][split].keys()
        values = {k: np.array([run[split][k] for run in per_seed]) for k in keys}
        summary[split] = {k: float(v.mean()) for k, v in values.items()}
        summary[split].update({f"{k}_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()})
    summary["per_seed"] = per_seed
    summary["eval_seeds"] = seeds
    return summary
