"""The methods of ``run_foster.py --method=...`` beyond ``full``: distillation (foster, td3),
selection (random, random_kd, kcenter, dealrec, goracs) and eval of a saved set.

Each returns the part of results.json it owns; ``table`` rows are printed side by side.
All small training sets are judged by :func:`evaluate_training_set` (one protocol).
"""

import os
import time

import torch

from recbole_foster.distill.anchors import ensure_anchor_pool, load_state, pool_dir
from recbole_foster.distill.artifacts import export_atomic, load_synthetic, save_synthetic, write_atomic_sequences
from recbole_foster.distill.bome import negative_gap_share
from recbole_foster.distill.evaluate import (
    HardSequences,
    SoftSequences,
    TeacherLabelledSequences,
    evaluate_training_set,
    teacher_soft_labels,
)
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text, mean_entropy
from recbole_foster.distill.trainer import FosterDistillTrainer
from recbole_foster.data import item_texts, text_fields_of


def _require_text_model(ctx):
    if not getattr(ctx.config.model_class, "requires_item_text", False):
        raise ValueError(f"--method={ctx.config['method']} needs a text-based model (TextSASRec), not {ctx.config['model']}.")


def _n_sequences(ctx):
    n = ctx.config["n_sequences"]
    if n is None:
        n = 20
        ctx.config["n_sequences"] = n
    if int(n) < 1:
        raise ValueError(f"--n_sequences must be a positive integer, got {n}.")
    return int(n)


def full_row(manifest):
    return {k: v for k, v in manifest["test"].items()}


def user_training_sequences(dataset, max_len):
    """Each training user's longest training sequence (prefix + next item), last ``max_len`` items."""
    feat = dataset.inter_feat
    uid = feat[dataset.uid_field]
    seq, seq_len, target = feat[dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]], \
        feat[dataset.config["ITEM_LIST_LENGTH_FIELD"]], feat[dataset.iid_field]
    longest = {}
    for row, (u, n) in enumerate(zip(uid.tolist(), seq_len.tolist())):
        if u not in longest or n > seq_len[longest[u]]:
            longest[u] = row
    users = sorted(longest)
    sequences = torch.zeros(len(users), max_len, dtype=torch.long)
    for i, u in enumerate(users):
        row = longest[u]
        items = seq[row, : seq_len[row]].tolist() + [int(target[row])]
        items = items[-max_len:]
        sequences[i, : len(items)] = torch.tensor(items)
    return torch.tensor(users), sequences


def random_users(ctx, n):
    """N training users drawn with ``selection_seed`` (default: ``seed``) and their windows.

    A separate seed lets the spread over *which* users are drawn be measured without changing
    the Full run (whose key includes ``seed``).
    """
    seed = ctx.config["selection_seed"]
    seed = ctx.config["seed"] if seed is None else int(seed)
    users, sequences = user_training_sequences(ctx.train_data.dataset, ctx.config["MAX_ITEM_LIST_LENGTH"])
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(users), generator=generator)[:n]
    return users[chosen], sequences[chosen]


def run_random(ctx):
    """N real training users chosen uniformly at random, judged like a distilled set."""
    _require_text_model(ctx)
    n = _n_sequences(ctx)
    users, sequences = random_users(ctx, n)
    result = evaluate_training_set(ctx, HardSequences(sequences), desc=f"Random-{n}")
    _, manifest = ensure_anchor_pool(ctx)
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    return {**result, "selected_users": [token[u] for u in users.tolist()],
            "table": {"Full": full_row(manifest), f"Random-{n}": result["test"]}}


def load_teacher(ctx, folder, manifest):
    """The Full run's best model (the teacher), from its anchor pool."""
    teacher = ctx.new_model(ctx.config["seed"])
    teacher.load_state_dict(load_state(folder, manifest["teacher"], ctx.config["device"]))
    return teacher


def run_random_kd(ctx):
    """The Random-N users trained on the real-data model's soft next-item distributions."""
    _require_text_model(ctx)
    n = _n_sequences(ctx)
    folder, manifest = ensure_anchor_pool(ctx)
    teacher = load_teacher(ctx, folder, manifest)
    users, sequences = random_users(ctx, n)
    result = evaluate_training_set(ctx, TeacherLabelledSequences(sequences, teacher), desc=f"Random-KD-{n}")
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    return {**result, "selected_users": [token[u] for u in users.tolist()],
            "table": {"Full": full_row(manifest), f"Random-KD-{n}": result["test"]}}


def run_coreset(ctx):
    """``--method=kcenter|dealrec|goracs``: N real users chosen by a coreset algorithm, judged like Random-N."""
    from recbole_foster.coreset.selectors import LABELS, select

    _require_text_model(ctx)
    n, method = _n_sequences(ctx), ctx.config["method"]
    folder, manifest = ensure_anchor_pool(ctx)
    teacher = load_teacher(ctx, folder, manifest)
    users, sequences = user_training_sequences(ctx.train_data.dataset, ctx.config["MAX_ITEM_LIST_LENGTH"])
    with ctx.timed("select"):
        chosen = select(ctx, method, teacher, sequences, n)
    users, sequences = users[chosen], sequences[chosen]
    label = f"{LABELS[method]}-{n}"
    result = evaluate_training_set(ctx, HardSequences(sequences), desc=label)
    token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
    selected = [token[u] for u in users.tolist()]
    exported = None
    if ctx.config["export_atomic"]:
        exported = write_atomic_sequences(
            ctx.config["export_atomic"], f"{ctx.config['dataset']}-{method}{n}", sequences, selected,
            list(ctx.dataset.field2id_token[ctx.dataset.iid_field]), item_texts(ctx.dataset, text_fields_of(ctx.config)))
    return {**result, "selected_users": selected, "exported_atomic": exported,
            "table": {"Full": full_row(manifest), label: result["test"]}}


def _header(ctx, n, teacher_folder):
    keys = [k for k in ctx.config.final_config_dict if k.startswith(("foster_", "td3_"))] + ["n_sampled_items"]
    return {
        "dataset": ctx.config["dataset"],
        "item_tokens": list(ctx.dataset.field2id_token[ctx.dataset.iid_field]),
        "text_encoder": ctx.text_encoder,
        "text_fields": text_fields_of(ctx.config),
        "n_sequences": n,
        "hyper_parameters": {k: ctx.config[k] for k in keys},
        "seed": ctx.config["seed"],
        "teacher_run": os.path.basename(teacher_folder),  # whose predictions label a teacher-target set
    }


def soft_training_set(summary, teacher, target_mode, device):
    """(SoftSequences over the whole catalog, input probabilities on CPU) for evaluation/export.

    ``teacher`` mode labels the final inputs with the teacher, which is why such a set is
    evaluated together with the real-data run it was distilled from; the other modes take the
    summary's own targets (None for coupled: the inputs are the targets).
    """
    log_probs = summary.full_log_probabilities().to(device)
    if target_mode == "teacher":
        with torch.no_grad():
            items = torch.arange(1, log_probs.size(-1), device=device)
            labels = teacher_soft_labels(teacher.eval(), log_probs[..., 1:], items)
            targets = torch.cat([torch.full_like(labels[..., :1], float("-inf")), labels], dim=-1)
    else:
        targets = summary.full_target_log_probabilities()
    log_probs = log_probs.cpu()
    return SoftSequences(log_probs, None if targets is None else targets.cpu()), log_probs.exp()


def _export(ctx, probs, n):
    folder = ctx.config["export_atomic"]
    if not folder:
        return None
    name = f"{ctx.config['dataset']}-{ctx.config['method']}{n}"
    return export_atomic(folder, name, probs, list(ctx.dataset.field2id_token[ctx.dataset.iid_field]),
                         item_texts(ctx.dataset, text_fields_of(ctx.config)),
                         mode=ctx.config["foster_export_mode"], seed=ctx.config["seed"])


def anchor_rows(manifest, start_fraction):
    """Checkpoints from ``start_fraction`` of the way to the best epoch up to the best epoch.

    Early checkpoints of a slow (lr 2e-4) run are near-random models whose predictions carry
    little signal; after the best epoch the model only over-fits.
    """
    best = manifest["best_epoch"]
    rows = [r for r in manifest["checkpoints"] if start_fraction * best <= r["epoch"] <= best]
    return rows or [r for r in manifest["checkpoints"] if r["epoch"] == best]


def run_foster(ctx):
    """Distil ``n_sequences`` synthetic sequences with FOSTER, then judge them (and Random-N)."""
    return distill_and_evaluate(ctx, FosterDistillTrainer)


def run_td3(ctx):
    """The same summary distilled by TD3's RaT-BPTT (second order through a window)."""
    from recbole_foster.distill.td3 import TD3DistillTrainer

    return distill_and_evaluate(ctx, TD3DistillTrainer)


TARGET_MODES = ("coupled", "separate", "fixed", "teacher")


def new_summary(ctx, n, teacher):
    """A Tucker summary of ``n`` sequences, warm-started from the Random-N users (``foster_init: real``).

    With ``foster_targets: separate`` the targets start as the teacher's next-item predictions
    for those users (Random-KD's labels); ``fixed`` keeps them there and distils the inputs only;
    ``teacher`` has no label parameters: the trainer labels the current inputs with the teacher.
    Returns (summary, top-1 agreement of the warm start or None).
    """
    config = ctx.config
    if config["foster_targets"] not in TARGET_MODES:
        raise ValueError(f"foster_targets must be one of {TARGET_MODES}, got {config['foster_targets']!r}.")
    summary = SyntheticSummary(
        item_factor_from_text(ctx.dataset.item_text_embeddings).to(config["device"]), n,
        config["foster_seq_len"] or config["MAX_ITEM_LIST_LENGTH"],
        config["foster_user_rank"], config["foster_time_rank"], config["foster_temperature"],
        separate_targets=config["foster_targets"] in ("separate", "fixed"),
    ).to(config["device"])
    if config["foster_init"] == "random":
        if config["foster_targets"] == "fixed":
            raise ValueError("foster_targets: fixed keeps the teacher's labels of the warm start; "
                             "it needs foster_init: real (got random).")
        return summary, None
    if config["foster_init"] != "real":
        raise ValueError(f"foster_init must be 'real' or 'random', got {config['foster_init']!r}.")
    # Start from the Random-N users' sequences (same seed), so what distillation adds on top of
    # them is what the comparison with Random-N measures.
    _, sequences = random_users(ctx, n)
    width = summary.seq_len
    init = torch.zeros(n, width, dtype=torch.long)
    init[:, : min(width, sequences.size(1))] = sequences[:, :width]
    generator = torch.Generator().manual_seed(config["seed"])
    fit = summary.fit_to_sequences(init, generator=generator)
    ctx.logger.info(f"Synthetic data initialised from {n} real users' sequences (top-1 fit {fit:.3f})")
    if summary.separate_targets:
        labelled = init > 0
        labelled[:, 0] = False  # the first item has no history, hence no teacher label
        kl = summary.fit_targets(teacher_next_item_log_probs(teacher, init.to(config["device"])),
                                 labelled, steps=config["foster_target_fit_steps"], generator=generator)
        ctx.logger.info(f"Synthetic targets initialised from the teacher's predictions (KL {kl:.3f})")
        if config["foster_targets"] == "fixed":
            summary.freeze_targets()
    return summary, fit


def teacher_next_item_log_probs(teacher, item_seqs):
    """``f(item_ids)``: the teacher's (m, n, K) label log-distributions for the items at positions
    1..n-1 of ``item_seqs`` (position 0 has no label: zeros, masked out by the caller)."""
    with torch.no_grad():
        teacher.eval()
        hidden = teacher.encode(item_seqs[:, :-1])

    def label_log_probs(item_ids):
        scores = teacher.scores(hidden, item_ids)
        log_probs = torch.log_softmax(scores, dim=-1)
        return torch.cat([torch.zeros_like(log_probs[:, :1]), log_probs], dim=1)

    return label_log_probs


def distill_and_evaluate(ctx, trainer_class):
    """Distil with ``trainer_class`` (resumable), save the set, judge it (and Random-N)."""
    _require_text_model(ctx)
    config = ctx.config
    n = _n_sequences(ctx)
    label = f"{trainer_class.label}-{n}"
    folder, manifest = ensure_anchor_pool(ctx)
    teacher = load_teacher(ctx, folder, manifest)
    model = ctx.new_model(config["seed"])
    summary, init_fit = new_summary(ctx, n, teacher)
    rows = anchor_rows(manifest, config["foster_anchor_start"])
    trainer = trainer_class(config, model, teacher, summary, ctx.train_data.dataset, folder, rows)

    checkpoint = os.path.join(ctx.output_dir, "distill_checkpoint.pt")
    resumed_at = None  # timings["distill"] then covers only the steps after this one
    if config["resume"]:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"--resume: no distillation checkpoint at {checkpoint}; run without --resume first.")
        trainer.load_checkpoint(checkpoint)
        resumed_at = trainer.step
        ctx.logger.info(f"Resumed distillation at outer step {trainer.step} from {checkpoint}")
    if config["device"].type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with ctx.timed("distill"):
        trainer.fit(show_progress=True, checkpoint_path=checkpoint)
    distill_peak = (torch.cuda.max_memory_allocated() / 2**20) if config["device"].type == "cuda" else None

    path = save_synthetic(os.path.join(ctx.output_dir, "synthetic.pt"), summary, _header(ctx, n, folder))
    soft, probs = soft_training_set(summary, teacher, config["foster_targets"], config["device"])
    result = evaluate_training_set(ctx, soft, desc=label)
    table = {"Full": full_row(manifest), label: result["test"]}
    random_result = None
    if config["foster_compare_random"]:
        _, sequences = random_users(ctx, n)
        random_result = evaluate_training_set(ctx, HardSequences(sequences), desc=f"Random-{n}")
        table[f"Random-{n}"] = random_result["test"]
    history = trainer.history
    q_negative = negative_gap_share(history)
    if q_negative is not None and q_negative > 0.5:
        ctx.logger.warning(
            f"BOME's value gap q was negative in {q_negative:.0%} of the outer steps: the inner steps raised "
            "the synthetic loss instead of lowering it. Try a smaller --foster_inner_lr (docs/experiments.md).")
    return {
        "q_negative_share": q_negative,
        "resumed_at_step": resumed_at,
        **result,
        "synthetic": path,
        "exported_atomic": _export(ctx, probs, n),
        "final_entropy": float(mean_entropy(probs[..., 1:])),
        "init_top1_fit": init_fit,
        "distill_peak_cuda_mb": distill_peak,
        "full": {"valid": manifest["valid"], "test": manifest["test"]},
        "random": random_result,
        "history": history[:: max(1, len(history) // 200)],
        "table": table,
    }


def run_eval(ctx):
    """Re-evaluate a saved distilled set (``--synthetic=PATH``) under the same protocol."""
    _require_text_model(ctx)
    path = ctx.config["synthetic"]
    if not path:
        raise ValueError("--method=eval needs --synthetic=PATH (a synthetic.pt written by --method=foster).")
    summary, header = load_synthetic(path, ctx.dataset)
    target_mode = header.get("hyper_parameters", {}).get("foster_targets", "coupled")
    expected_run = os.path.basename(pool_dir(ctx.config, ctx.text_encoder))
    if target_mode == "teacher" and header.get("teacher_run") != expected_run:
        raise ValueError(  # checked before any real-data training this config might start
            f"{path} is labelled by the teacher of real-data run {header.get('teacher_run')!r}, but this "
            f"config's real-data run is {expected_run!r}; evaluate it with the seed and config it was "
            "distilled with, so that the same teacher labels it.")
    folder, manifest = ensure_anchor_pool(ctx)
    teacher = load_teacher(ctx, folder, manifest) if target_mode == "teacher" else None
    soft, probs = soft_training_set(summary, teacher, target_mode, ctx.config["device"])
    n = header["n_sequences"]
    ctx.config["n_sequences"] = n
    result = evaluate_training_set(ctx, soft, desc=f"eval {os.path.basename(path)}")
    return {**result, "synthetic": path, "synthetic_header": {k: v for k, v in header.items() if k != "item_tokens"},
            "exported_atomic": _export(ctx, probs, n),
            "table": {"Full": full_row(manifest), f"synthetic-{n}": result["test"]}}
