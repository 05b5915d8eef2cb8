"""DIET's FOSTER baseline: FOSTER distilled from scratch, at every stage, on everything seen so far.

Optional (``diet_baselines`` with ``foster``; off by default, since it is one whole distillation
per stage). At stage s it is exactly a ``--method=foster`` run restricted to the rows seen: the
teacher is Full-s, whose epochs are recorded as the anchor trajectory (as the real-data run
records them for a normal FOSTER run), the warm start draws ``diet_memory_size`` users' windows
from the rows seen (``selection_seed``), and the label mode is ``foster_targets``. A label mode
whose labels come from the teacher stores them top-k, so the set is self-contained like DIET's.
"""

import os

import numpy as np
import torch

from recbole_foster.dataset.sequences import draw_users, user_training_sequences
from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import DistillationLoop
from recbole_foster.label_modes import label_mode_of
from recbole_foster.methods.distillation import summary_for
from recbole_foster.real_run import AnchorRecordingTrainer, RealRun, best_epoch


def trajectory_trainer(ctx, model, folder):
    """RecBole's trainer that also saves the model after every validated epoch (FOSTER's anchors);
    DIET resumes whole stages, so it keeps no within-stage resume state."""
    return AnchorRecordingTrainer(ctx.config, model, folder, resumable=False)


def distil_seen(ctx, plan, stage, teacher, trainer, size, work_dir):
    """The FOSTER summary of the rows of stages 0..``stage`` as a training set (SoftSequences).

    ``teacher`` is Full-s, trained by ``trainer`` (a :func:`trajectory_trainer`)."""
    config = ctx.config
    rows = torch.as_tensor(np.sort(plan.rows_until(stage)), dtype=torch.long)
    seen = plan.train.copy(plan.train.inter_feat[rows])
    manifest = {"checkpoints": trainer.anchor_rows,
                "best_epoch": best_epoch(trainer.anchor_rows, bigger=config["valid_metric_bigger"] is not False)}
    real_run = RealRun(trainer.anchor_folder, manifest, trained_now=True)
    label_mode = label_mode_of(config)
    users, windows = user_training_sequences(seen, plan.max_len)
    _, warm_start = draw_users(users, windows, size, ctx.selection_seed)
    summary, _ = summary_for(config, ctx.dataset, teacher, warm_start, label_mode, ctx.logger)
    distiller = DistillationLoop(config, ctx.new_model(config["seed"]), teacher, summary, seen, real_run,
                                 real_run.anchors(config["foster_anchor_start"]), label_mode, BomeSolver)
    checkpoint = os.path.join(work_dir, "foster.pt")
    distiller.run(show_progress=False, checkpoint_path=checkpoint)
    if os.path.exists(checkpoint):
        os.remove(checkpoint)
    stored = None
    if label_mode.needs_teacher:
        stored = label_mode.stored_labels(summary, teacher, config["device"], "topk", config["label_topk"])
    soft, _ = label_mode.training_set(summary, teacher, config["device"], stored)
    return soft
