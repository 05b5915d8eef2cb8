"""``--method=foster|td3``: distil a synthetic summary, save it, judge it (and Random-N beside it).

The summary starts from the run's Random-N users (``foster_init: real``), so the comparison with
Random-N measures what distillation adds to the sequences it starts from. Its labels follow the
configured :mod:`label mode <recbole_foster.label_modes>`.
"""

import math
import os

import torch

from recbole_foster.distill.artifacts import hard_sequences, save_synthetic
from recbole_foster.distill.bome import negative_gap_share
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text, mean_entropy
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.label_modes import label_mode_of
from recbole_foster.methods import METHODS
from recbole_foster.methods.set_files import common_header, describe_set, export_set
from recbole_foster.stored_labels import compress
from recbole_foster.training_sets import HardSequences
from recbole_foster.validation import CHECKPOINT_FILE

INITS = ("real", "random")


def run_foster(ctx):
    """Distil ``n_sequences`` synthetic sequences with FOSTER, then judge them (and Random-N)."""
    from recbole_foster.distill.trainer import FosterDistillTrainer

    return distill_and_evaluate(ctx, FosterDistillTrainer)


def run_td3(ctx):
    """The same summary distilled by TD3's RaT-BPTT (second order through a window)."""
    from recbole_foster.distill.td3 import TD3DistillTrainer

    return distill_and_evaluate(ctx, TD3DistillTrainer)


def new_summary(ctx, label_mode):
    """A Tucker summary of ``n_sequences`` sequences, warm-started from the run's Random-N draw.

    ``foster_init: real`` fits the factors to the Random-N users' windows, then lets the label
    mode fit its labels (``separate``/``fixed``: the teacher's predictions for those users);
    ``random`` is TD3's random init. Returns ``(summary, top-1 agreement of the warm start or None)``.
    """
    config, n = ctx.config, ctx.n_sequences
    if config["foster_init"] not in INITS:
        raise ValueError(f"foster_init must be one of {INITS}, got {config['foster_init']!r}.")
    summary = SyntheticSummary(
        item_factor_from_text(ctx.dataset.item_text_embeddings).to(config["device"]), n,
        config["foster_seq_len"] or config["MAX_ITEM_LIST_LENGTH"],
        config["foster_user_rank"], config["foster_time_rank"], config["foster_temperature"],
        separate_targets=label_mode.separate_targets,
    ).to(config["device"])
    if config["foster_init"] == "random":
        return summary, None
    _, sequences = ctx.random_draw
    width = summary.seq_len
    init = torch.zeros(n, width, dtype=torch.long)
    init[:, : min(width, sequences.size(1))] = sequences[:, :width]
    generator = torch.Generator().manual_seed(config["seed"])
    fit = summary.fit_to_sequences(init, generator=generator)
    ctx.logger.info(f"Synthetic data initialised from {n} real users' sequences (top-1 fit {fit:.3f})")
    kl = label_mode.init_targets(summary, ctx.teacher, init.to(config["device"]),
                                 config["foster_target_fit_steps"], generator)
    if kl is not None:
        ctx.logger.info(f"Synthetic targets initialised from the teacher's predictions (KL {kl:.3f})")
    return summary, fit


def set_header(ctx, label_mode, storage):
    """What a saved summary records besides its tensors (see :mod:`recbole_foster.distill.artifacts`)."""
    keys = [k for k in ctx.config.final_config_dict if k.startswith(("foster_", "td3_"))] + ["n_sampled_items"]
    return {**common_header(ctx), "method": ctx.config["method"], "label_mode": label_mode.name,
            "label_storage": storage, "hyper_parameters": {k: ctx.config[k] for k in keys}}


def export_soft_set(ctx, soft, probs, stored=None, teacher_assisted=False):
    """``--export_atomic=DIR``: a distilled set as RecBole atomic files (results.json fields).

    The sequences are the top-1 (``foster_export_mode: sample``: a draw) of each position's
    distribution ``probs``; each position after the first keeps its label (the summary's next-position
    distribution the soft set trains on) in the soft-labels sidecar: the stored labels as stored,
    otherwise truncated to the top ``label_topk`` with the rest spread evenly (stored_labels' top-k).
    A teacher-assisted set exports no labels (the teacher makes them during training).
    """
    if not ctx.config["export_atomic"]:
        return export_set(ctx, None, None)
    items = hard_sequences(probs, ctx.config["foster_export_mode"], ctx.config["seed"])
    if not stored and not teacher_assisted:
        targets = soft.log_probs if soft.target_log_probs is None else soft.target_log_probs
        targets = torch.cat([torch.full_like(targets[..., :1], -math.inf), targets], dim=-1)  # padding column
        mask = torch.ones(targets.shape[:2], dtype=torch.bool)
        mask[:, 0] = False  # position 0 is never a target
        stored = compress(targets, mask, "topk", min(int(ctx.config["label_topk"]), targets.size(-1) - 2))
    users = [f"synthetic_{u}" for u in range(len(items))]
    return export_set(ctx, items, users, None if teacher_assisted else stored, teacher_assisted)


def distill_and_evaluate(ctx, trainer_class):
    """Distil with ``trainer_class`` (resumable), save the set, judge it (and Random-N)."""
    config, n = ctx.config, ctx.n_sequences
    label = METHODS[config["method"]].row_label(n)
    label_mode = label_mode_of(config)
    summary, init_fit = new_summary(ctx, label_mode)
    trainer = trainer_class(config, ctx.new_model(config["seed"]), ctx.teacher, summary, ctx.train_data.dataset,
                            ctx.real_run, ctx.real_run.anchors(config["foster_anchor_start"]), label_mode)

    checkpoint = os.path.join(ctx.output_dir, CHECKPOINT_FILE)
    resumed_at = None  # timings["distill"] then covers only the steps after this one
    if config["resume"]:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"--resume: no distillation checkpoint at {checkpoint}; run without --resume first.")
        trainer.load_checkpoint(checkpoint)
        resumed_at = trainer.step
        ctx.logger.info(f"Resumed distillation at outer step {trainer.step} from {checkpoint}")
    with ctx.timed("distill"):
        trainer.fit(show_progress=True, checkpoint_path=checkpoint)

    # Labels of a teacher-labelled summary are kept as label_storage says; the other modes carry
    # their labels in the summary itself.
    storage, stored = "summary", None
    item_text = getattr(ctx.dataset, "item_text_embeddings", None)
    if label_mode.needs_teacher:
        storage = config["label_storage"]
        if storage != "teacher":  # the teacher labels the set at training time: nothing to store
            stored = label_mode.stored_labels(summary, ctx.teacher, config["device"], storage, config["label_topk"],
                                              item_text)
    path = save_synthetic(os.path.join(ctx.output_dir, "synthetic.pt"), summary, set_header(ctx, label_mode, storage),
                          stored, standalone=bool(config["set_standalone"]))
    soft, probs = label_mode.training_set(summary, ctx.teacher, config["device"], stored, item_text)
    result = evaluate_training_set(ctx, soft, desc=label)
    table = {"Full": ctx.real_run.manifest["test"], label: result["test"]}
    random_result = None
    if config["foster_compare_random"]:
        random_label = METHODS["random"].row_label(n)
        random_result = evaluate_training_set(ctx, HardSequences(ctx.random_draw[1]), desc=random_label)
        table[random_label] = random_result["test"]
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
        "label_mode": label_mode.name,
        "label_storage": storage,
        **describe_set(ctx, path, needs_teacher=storage == "teacher"),
        "synthetic": path,
        **export_soft_set(ctx, soft, probs, stored, teacher_assisted=storage == "teacher"),
        "final_entropy": float(mean_entropy(probs[..., 1:])),
        "init_top1_fit": init_fit,
        "full": ctx.real_run.full_metrics,
        "random": random_result,
        "history": history[:: max(1, len(history) // 200)],
        "table": table,
    }
