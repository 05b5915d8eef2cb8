"""``--method=foster|td3``: distil a synthetic summary, save it, judge it (and Random-N beside it).

The summary starts from the run's Random-N users (``foster_init: real``), so the comparison with
Random-N measures what distillation adds to the sequences it starts from. Its labels follow the
configured :mod:`label mode <recbole_foster.label_modes>`.
"""

import math
import os

import torch

from recbole_foster.distill.artifacts import hard_sequences, load_synthetic, save_synthetic
from recbole_foster.distill.bome import negative_gap_share
from recbole_foster.distill.synthetic import SyntheticSummary, item_factor_from_text, mean_entropy
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.cli import CLIError
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.distill.td3 import TD3Solver
from recbole_foster.label_modes import MODES, label_mode_of
from recbole_foster.labels import get_storage
from recbole_foster.methods.base import Method
from recbole_foster.methods.selection import PROPERTIES, Random
from recbole_foster.methods.set_files import common_header, describe_set, export_set
from recbole_foster.training_sets import HardSequences

INITS = ("real", "random")
CHECKPOINT_FILE = "distill_checkpoint.pt"  # what a distillation writes into its output folder to resume


class Distillation(Method):
    """Distil ``n_sequences`` synthetic sequences with ``solver_class``'s outer steps, then judge them (and Random-N)."""

    models, resumable = "TextSASRec", True
    config_file = os.path.join(PROPERTIES, "foster.yaml")
    solver_class = None

    def label_storage(self, config):
        """Labels made by the teacher are kept as ``label_storage`` says; the other label modes
        keep theirs in the summary."""
        mode = MODES.get(config["foster_targets"])
        return get_storage(config["label_storage"] if mode is not None and mode.needs_teacher else "summary")

    def check(self, config):
        mode = MODES.get(config["foster_targets"])
        if self.label_storage(config).needs_windows:
            raise CLIError(f"--label_storage={config['label_storage']} labels real windows from their item ids; "
                           f"a distilled summary has none: use it with random_kd, a coreset or generate.")
        if mode is not None and mode.needs_real_init and config["foster_init"] != "real":
            raise CLIError(f"--foster_targets={config['foster_targets']} keeps labels fitted to real users: "
                           f"it needs --foster_init=real, not {config['foster_init']!r}.")
        if config["resume"] is True:
            checkpoint = os.path.join(config["output_dir"], CHECKPOINT_FILE)
            if not os.path.isfile(checkpoint):
                raise CLIError(f"--resume: no distillation checkpoint at {checkpoint}; run without --resume first "
                               "(or pass the --output_dir of the interrupted run).")

    def check_data(self, ctx):
        super().check_data(ctx)
        sampled, catalog = ctx.config["n_sampled_items"], ctx.dataset.item_num - 1
        if sampled is not None and sampled > catalog:
            from recbole_foster.errors import DatasetError

            raise DatasetError(f"--n_sampled_items={sampled} but the catalog has only {catalog} items; "
                               f"choose at most {catalog}.")

    def banner_lines(self, ctx):
        config, n = ctx.config, ctx.n_sequences
        title, lines = super().banner_lines(ctx)
        random = Random().row_label(n)
        start = f"warm start from the {random} users' windows" if config["foster_init"] == "real" else "random start"
        beside = f", and {random} beside it." if config["foster_compare_random"] else "."
        lines.append(f"{config['foster_outer_steps']} outer steps, {start}, labels: foster_targets="
                     f"{config['foster_targets']}; then the set is saved (synthetic.pt) and evaluated{beside}")
        return title, lines

    def evaluated_sets(self, config, n):
        return super().evaluated_sets(config, n) + ([Random().row_label(n)] if config["foster_compare_random"] else [])

    def run(self, ctx):
        return distill_and_evaluate(ctx, self.solver_class, self.row_label(ctx.n_sequences))


class Foster(Distillation):
    name, label = "foster", "FOSTER"
    summary = "distil n_sequences synthetic soft sequences (first-order BOME; the paper's method)"
    solver_class = BomeSolver


class TD3(Distillation):
    name, label = "td3", "TD3"
    summary = "the FOSTER summary distilled by TD3's RaT-BPTT (second order through a window)"
    config_file = os.path.join(PROPERTIES, "td3.yaml")
    solver_class = TD3Solver


def new_summary(ctx, label_mode):
    """:func:`summary_for` the run's Random-N draw and teacher."""
    return summary_for(ctx.config, ctx.dataset, ctx.teacher, ctx.random_draw[1], label_mode, ctx.logger)


def summary_for(config, dataset, teacher, windows, label_mode, logger):
    """A Tucker summary of ``len(windows)`` sequences, warm-started from the real ``windows``.

    ``foster_init: real`` fits the factors to the Random-N users' windows, then lets the label
    mode fit its labels (``separate``/``fixed``: the teacher's predictions for those users);
    ``random`` is TD3's random init. Returns ``(summary, top-1 agreement of the warm start or None)``.
    """
    n = len(windows)
    if config["foster_init"] not in INITS:
        raise ValueError(f"foster_init must be one of {INITS}, got {config['foster_init']!r}.")
    summary = SyntheticSummary(
        item_factor_from_text(dataset.item_text_embeddings).to(config["device"]), n,
        config["foster_seq_len"] or config["MAX_ITEM_LIST_LENGTH"],
        config["foster_user_rank"], config["foster_time_rank"], config["foster_temperature"],
        separate_targets=label_mode.separate_targets,
    ).to(config["device"])
    if config["foster_init"] == "random":
        return summary, None
    sequences = windows
    width = summary.seq_len
    init = torch.zeros(n, width, dtype=torch.long)
    init[:, : min(width, sequences.size(1))] = sequences[:, :width]
    generator = torch.Generator().manual_seed(config["seed"])
    fit = summary.fit_to_sequences(init, generator=generator)
    logger.info(f"Synthetic data initialised from {n} real users' sequences (top-1 fit {fit:.3f})")
    kl = label_mode.init_targets(summary, teacher, init.to(config["device"]),
                                 config["foster_target_fit_steps"], generator)
    if kl is not None:
        logger.info(f"Synthetic targets initialised from the teacher's predictions (KL {kl:.3f})")
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
        stored = get_storage("topk").compress(targets, mask, min(int(ctx.config["label_topk"]), targets.size(-1) - 2))
    users = [f"synthetic_{u}" for u in range(len(items))]
    return export_set(ctx, items, users, None if teacher_assisted else stored, teacher_assisted)


def distill_and_evaluate(ctx, solver_class, label):
    """Distil with ``solver_class`` (resumable), save the set, judge it (and Random-N)."""
    config, n = ctx.config, ctx.n_sequences
    label_mode = label_mode_of(config)
    summary, init_fit = new_summary(ctx, label_mode)
    trainer = DistillationLoop(config, ctx.new_model(config["seed"]), ctx.teacher, summary, ctx.train_data.dataset,
                               ctx.real_run, ctx.real_run.anchors(config["foster_anchor_start"]), label_mode,
                               solver_class)

    checkpoint = os.path.join(ctx.output_dir, CHECKPOINT_FILE)
    resumed_at = None  # timings["distill"] then covers only the steps after this one
    if config["resume"]:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"--resume: no distillation checkpoint at {checkpoint}; run without --resume first.")
        trainer.load_checkpoint(checkpoint)
        resumed_at = trainer.step
        ctx.logger.info(f"Resumed distillation at outer step {trainer.step} from {checkpoint}")
    with ctx.timed("distill"):
        trainer.run(show_progress=True, checkpoint_path=checkpoint)

    # Labels of a teacher-labelled summary are kept as label_storage says; the other modes carry
    # their labels in the summary itself.
    storage, stored = ctx.method.label_storage(config), None
    item_text = getattr(ctx.dataset, "item_text_embeddings", None)
    if label_mode.needs_teacher and not storage.needs_teacher:  # else the teacher labels the set: nothing stored
        stored = label_mode.stored_labels(summary, ctx.teacher, config["device"], storage.name, config["label_topk"],
                                          item_text)
    path = save_synthetic(os.path.join(ctx.output_dir, "synthetic.pt"), summary,
                          set_header(ctx, label_mode, storage.name),
                          stored, standalone=bool(config["set_standalone"]), precision=config["set_precision"])
    if config["set_precision"] != "fp32":  # judge the numbers the file keeps, not the fp32 ones
        summary = load_synthetic(path, ctx.dataset)[0].to(config["device"])
    soft, probs = label_mode.training_set(summary, ctx.teacher, config["device"], stored, item_text)
    result = evaluate_training_set(ctx, soft, desc=label)
    table = {"Full": ctx.real_run.manifest["test"], label: result["test"]}
    random_result = None
    if config["foster_compare_random"]:
        random_label = Random().row_label(n)
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
        "label_storage": storage.name,
        **describe_set(ctx, path, needs_teacher=storage.needs_teacher),
        "synthetic": path,
        **export_soft_set(ctx, soft, probs, stored, teacher_assisted=storage.needs_teacher),
        "final_entropy": float(mean_entropy(probs[..., 1:])),
        "init_top1_fit": init_fit,
        "full": ctx.real_run.full_metrics,
        "random": random_result,
        "history": history[:: max(1, len(history) // 200)],
        "table": table,
    }
