"""Stage 4 of a run: the real-data run (MTT's "buffer" role; FOSTER Sec. 3.2).

Training the model on all real data once gives three things: the Full baseline, the teacher
(feature matching, DH, soft labels) and the trajectory FOSTER resets to (the anchor pool). As in
MTT's ``buffer.py`` it is recorded separately from distillation, once per run and before the
method, and reused from disk by every later run whose config would train the same model.

A pool folder holds ``epoch_<k>.pt`` state dicts (plain tensors, ``torch.load(weights_only=True)``)
and ``manifest.json`` (one row per checkpoint: epoch, step, validation metric, file; plus the
teacher file and the Full run's metrics, written last, so a half-written pool is never reused).
While it trains, ``resume.pth`` holds everything needed to continue after the last finished
epoch (weights, optimizer, early-stopping state, random states), so a killed run (a Full on
amazon-games is 1-2 hours on one CPU core) continues where it stopped and ends with the same
weights as an uninterrupted one.

A run that ends at its epoch cap (a *capped* Full, possibly still improving) keeps that state as
``capped_state.pth``, so a later run whose config differs only by a larger ``epochs`` continues it
instead of training from epoch 0 (``real_run_extend``): the result is the one an uninterrupted run
with the larger cap gives. Pools recorded before this kept only weights; ``real_run_extend:
restart_optimizer`` continues those from their last checkpoint with a fresh optimizer, and the
manifest says so (``extended_from``).
"""

import fcntl
import hashlib
import json
import os
import random
import shutil
import time

import numpy as np
import torch

from recbole.utils import init_seed

from recbole_foster import distributed
from recbole_foster.banners import real_run_banner
from recbole_foster.config import method_setting_keys
from recbole_foster.trainer import CheckpointSafeTrainer

# Config keys that cannot change what the real-data run learns or how it picks its best epoch:
# the method and its settings, how results are reported, and where things are stored. Every
# other key (data, filtering, split, model, training, seed, text embedding) is in the cache key,
# so a forgotten key retrains rather than reuses.
NOT_IN_KEY = {
    "method", "n_sequences", "selection_seed", "output_dir", "resume", "synthetic", "export_atomic",
    "n_sampled_items", "metrics", "topk", "metric_decimal_place", "loss_decimal_place", "show_progress",
    "log_wandb", "wandb_project", "state", "verbose", "device", "gpu_id", "use_gpu", "worker",
    "single_spec", "local_rank", "skip_malformed", "eval_batch_size", "checkpoint_dir", "anchor_dir", "text_cache_dir",
    "text_batch_size", "text_encoder", "save_dataset", "save_dataloaders", "dataset_save_path",
    "dataloaders_save_path", "generate_temperature", "set_standalone", "verbose", "real_run_extend",
    "nproc", "world_size", "ip", "port", "offset",  # how many processes: in the key as world_size when > 1
    "set_precision",
}
NOT_IN_KEY_PREFIXES = ("foster_", "td3_", "coreset_", "distilled_", "label_", "diet_")


def pool_key(config, text_encoder_used, **changes):
    """Hash of every config value that can change the real-data run (see ``NOT_IN_KEY``);
    ``changes`` replace config values (the key of a run with another epoch cap)."""
    excluded = NOT_IN_KEY | method_setting_keys(config)
    relevant = {
        k: v for k, v in {**config.final_config_dict, **changes}.items()
        if k not in excluded and not k.startswith(NOT_IN_KEY_PREFIXES)
    }
    relevant["text_encoder_used"] = text_encoder_used
    size = distributed.world_size(config)
    if size > 1:  # DDP sees the data in another order: not the one-process run (whose key stays as it was)
        relevant["world_size"] = size
    blob = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pool_dir(config, text_encoder_used, **changes):
    root = config["anchor_dir"] or os.path.join("saved", "anchors")
    key = pool_key(config, text_encoder_used, **changes)
    return os.path.join(root, config["dataset"], f"{config['model']}-seed{config['seed']}-{key}")


def load_manifest(folder):
    """The manifest of a complete pool in ``folder``, or None."""
    path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    return manifest if manifest.get("complete") else None


def write_manifest(folder, manifest):
    tmp = os.path.join(folder, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(folder, "manifest.json"))


def load_state(folder, file, device="cpu"):
    return torch.load(os.path.join(folder, file), map_location=device, weights_only=True)


RESUME_FILE = "resume.pth"
CAPPED_STATE_FILE = "capped_state.pth"  # the resume state of a run that ended at its epoch cap
EXTENSION_FILE = "extended_from.json"  # while an extension trains: which capped run it continues
# real_run_extend: continue a capped run of the same config with a smaller cap only from its saved
# state ("exact"), also from a weights-only pool with a fresh optimizer ("restart_optimizer"), or never
EXTEND_MODES = ("exact", "restart_optimizer", "never")


class AnchorRecordingTrainer(CheckpointSafeTrainer):
    """RecBole training that also saves the model's state dict after every validated epoch, and
    the state to resume from (``RESUME_FILE``) before every epoch but the first."""

    def __init__(self, config, model, anchor_folder, resumable=True):
        super().__init__(config, model)
        self.anchor_folder, self.resumable = anchor_folder, resumable
        os.makedirs(anchor_folder, exist_ok=True)
        self.anchor_rows = []
        self._epoch = -1
        self.seconds_before_resume = 0.0  # training time of the interrupted run(s) this one continues

    def fit(self, *args, **kwargs):
        self._fit_started = time.perf_counter()
        return super().fit(*args, **kwargs)

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        # Saved here, not after fit: RecBole's fit with start_epoch >= epochs would overwrite best.pth,
        # and a run killed after its last epoch simply replays that epoch (same result).
        if self.resumable and epoch_idx > self.start_epoch:  # the previous epoch is finished: validated, early-stopping updated
            self._save_resume_state(train_data, epoch_idx - 1)
        self._epoch = epoch_idx
        self._batches_per_epoch = len(train_data)
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        self.logger.info(self.progress(epoch_idx, time.perf_counter() - self._fit_started))
        return loss

    def progress(self, epoch_idx, seconds):
        """``epoch i/N`` and an ETA at this run's pace (early stopping may end it sooner)."""
        done, left = epoch_idx + 1 - self.start_epoch, self.epochs - epoch_idx - 1
        eta = seconds / done * left
        return (f"epoch {epoch_idx + 1}/{self.epochs} trained, {seconds:.0f} s so far; "
                f"at most {left} epoch(s) left, ETA {eta // 60:.0f} min {eta % 60:.0f} s at this pace"
                + (" (early stopping may end it sooner)" if left else ""))

    def _save_resume_state(self, train_data, finished_epoch, file=RESUME_FILE):
        if not distributed.is_writer(self.config):
            return
        keys, pos, has_gauss, cached = np.random.get_state()[1:]
        state = {
            "epoch": finished_epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "best_valid_result": None if self.best_valid_result is None
            else {k: float(v) for k, v in self.best_valid_result.items()},
            "anchor_rows": self.anchor_rows,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "seconds": self.seconds_before_resume + time.perf_counter() - self._fit_started,
            "other_parameter": self.model.other_parameter(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)},
            "python_rng": random.getstate(),
            "loader_rng": train_data.generator.get_state() if hasattr(train_data, "generator") else None,
        }
        tmp = os.path.join(self.anchor_folder, file + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, os.path.join(self.anchor_folder, file))

    def save_capped_state(self, train_data):
        """After the last epoch of a run that hit its cap: what a run with a larger cap continues from."""
        self._save_resume_state(train_data, self._epoch, CAPPED_STATE_FILE)

    def resume_if_interrupted(self, train_data):
        """Continue an interrupted run from its ``RESUME_FILE``: the epoch it continues at, or None."""
        return self.resume_from(os.path.join(self.anchor_folder, RESUME_FILE), train_data)

    def resume_from(self, path, train_data):
        """Continue from a saved resume state at ``path``: the epoch it continues at, or None."""
        if not os.path.isfile(path):
            return None
        # random states must stay CPU tensors; load_state_dict moves weights and optimizer state to the device
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.model.load_other_parameter(state.get("other_parameter"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.anchor_rows = state["anchor_rows"]
        self.seconds_before_resume = state["seconds"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        rng = state["numpy_rng"]
        np.random.set_state(("MT19937", rng["keys"].numpy().astype(np.uint32), rng["pos"], rng["has_gauss"],
                             rng["cached"]))
        random.setstate(state["python_rng"])
        if state["loader_rng"] is not None:
            train_data.generator.set_state(state["loader_rng"])
        return self.start_epoch

    def restart_from_checkpoints(self, folder, manifest):
        """Continue a weights-only capped run: its last checkpoint's weights, its early-stopping
        state and trajectory, a fresh optimizer (its moments were not kept). The epoch it continues at."""
        rows = manifest["checkpoints"]
        last = max(rows, key=lambda row: row["epoch"])
        self.model.load_state_dict(load_state(folder, last["file"], self.device))
        self.start_epoch = last["epoch"] + 1
        self.cur_step = sum(1 for row in rows if row["epoch"] > manifest["best_epoch"])  # validations since the best
        self.best_valid_score = next(row["valid_score"] for row in rows if row["epoch"] == manifest["best_epoch"])
        self.best_valid_result = dict(manifest["valid"])
        self.anchor_rows = [dict(row) for row in rows]
        self.seconds_before_resume = manifest["train_seconds"]
        return self.start_epoch

    def save_best_from(self, folder, file, epoch):
        """Write RecBole's best-model file from a pool's state dict: the best an extension starts with."""
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(load_state(folder, file, self.device))
        self._save_checkpoint(epoch, verbose=False)
        self.model.load_state_dict(current)

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        file = f"epoch_{self._epoch}.pt"
        if distributed.is_writer(self.config):  # the ranks hold the same weights: one writes them
            # a new file, not written in place: an extension's first epochs are hard links to a capped run's
            tmp = os.path.join(self.anchor_folder, file + ".tmp")
            torch.save(self.model.state_dict(), tmp)
            os.replace(tmp, os.path.join(self.anchor_folder, file))
        self.anchor_rows.append({
            "epoch": self._epoch,
            "step": (self._epoch + 1) * self._batches_per_epoch,
            "valid_metric": self.config["valid_metric"],
            "valid_score": float(score),
            "file": file,
        })
        return score, result


def best_epoch(rows, bigger=True):
    """The epoch RecBole keeps as best: on a tie the *later* epoch wins (``early_stopping`` uses
    ``>=``), so the teacher (RecBole's best model) and the manifest name the same epoch."""
    best = None
    for row in rows:
        better = best is None or (row["valid_score"] >= best["valid_score"] if bigger
                                  else row["valid_score"] <= best["valid_score"])
        if better:
            best = row
    return best["epoch"]


def training_summary(manifest, epoch_cap, stopping_step):
    """How the Full run ended. ``stopped_by`` is "early stopping" when RecBole's criterion was met
    (``stopping_step`` + 1 validations in a row without reaching the best score: converged in
    RecBole's sense) and "epoch cap" when the run ran out of epochs first (a capped Full, which
    may still have been improving). ``epochs_trained`` is the last validated epoch + 1 (exact with
    RecBole's default ``eval_step`` 1)."""
    best = manifest["best_epoch"]
    since_best = sum(1 for row in manifest["checkpoints"] if row["epoch"] > best)  # validations, as RecBole counts
    return {"epochs_trained": max(row["epoch"] for row in manifest["checkpoints"]) + 1, "epoch_cap": int(epoch_cap),
            "best_epoch": best, "stopping_step": int(stopping_step),
            "stopped_by": "early stopping" if since_best > int(stopping_step) else "epoch cap"}


def anchor_rows(manifest, start_fraction):
    """Checkpoints from ``start_fraction`` of the way to the best epoch up to the best epoch.

    Early checkpoints of a slow (lr 2e-4) run are near-random models whose predictions carry
    little signal; after the best epoch the model only over-fits.
    """
    best = manifest["best_epoch"]
    rows = [r for r in manifest["checkpoints"] if start_fraction * best <= r["epoch"] <= best]
    return rows or [r for r in manifest["checkpoints"] if r["epoch"] == best]


class RealRun:
    """A complete real-data run on disk: Full metrics, the teacher and the anchor trajectory."""

    def __init__(self, folder, manifest, trained_now):
        self.folder, self.manifest, self.trained_now = folder, manifest, trained_now

    @property
    def full_metrics(self):
        """``{"valid": ..., "test": ...}`` of the model trained on all real data."""
        return {"valid": self.manifest["valid"], "test": self.manifest["test"]}

    @property
    def name(self):
        """What a teacher-labelled set records to be re-labelled by the same teacher."""
        return os.path.basename(self.folder)

    def load_teacher(self, new_model):
        """The Full run's best model; ``new_model()`` builds an untrained one of the same class."""
        teacher = new_model()
        teacher.load_state_dict(load_state(self.folder, self.manifest["teacher"], next(teacher.parameters()).device))
        return teacher.eval()

    def anchors(self, start_fraction):
        return anchor_rows(self.manifest, start_fraction)

    def load_anchor(self, row, device):
        return load_state(self.folder, row["file"], device)


def find_capped_run(config, text_encoder_used, need_state=True):
    """The complete run of this config with the largest smaller epoch cap that ended at that cap
    (so a run with this cap would have passed through it) and, with ``need_state``, kept the state
    to continue from: ``(folder, manifest, cap)`` or None. A cap below ``eval_step`` validated on
    another schedule (RecBole uses ``min(eval_step, epochs)``), so it is not this run's beginning."""
    for cap in range(int(config["epochs"]) - 1, max(int(config["eval_step"] or 1), 1) - 1, -1):
        folder = pool_dir(config, text_encoder_used, epochs=cap)
        manifest = load_manifest(folder)
        if manifest is None:
            continue
        if training_summary(manifest, cap, config["stopping_step"])["stopped_by"] != "epoch cap":
            return None  # it stopped early: every larger cap gives that same run, smaller caps are not beginnings of this one
        if not need_state or os.path.isfile(os.path.join(folder, CAPPED_STATE_FILE)):
            return folder, manifest, cap
    return None


def find_real_run(ctx):
    """The complete real-data run of this config on disk, or None (nothing is trained)."""
    folder = pool_dir(ctx.config, ctx.text_encoder)
    manifest = load_manifest(folder)
    return None if manifest is None else RealRun(folder, manifest, trained_now=False)


def ensure_real_run(ctx):
    """Train on all real data recording the trajectory, or reuse a complete run from disk."""
    folder = pool_dir(ctx.config, ctx.text_encoder)
    os.makedirs(folder, exist_ok=True)
    # Runs started side by side (e.g. one per method) must not train the same pool twice: the
    # first takes the lock and trains, the others wait for it and then reuse its pool.
    with open(os.path.join(folder, ".lock"), "w") as lock:
        if not _try_lock(lock):
            ctx.logger.info(f"Another run is training the real-data run {folder}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = load_manifest(folder)
        if manifest is not None:
            _remove_training_files(folder)  # left by a run killed between its manifest and its clean-up
            ctx.logger.info(f"Reusing the real-data run (Full, teacher, anchors) from {folder}")
            real_run_banner(ctx, folder, manifest)  # "reused from ..."
            return RealRun(folder, manifest, trained_now=False)
        real_run_banner(ctx, folder)  # "training ...; cached at ..."
        if distributed.world_size(ctx.config) == 1:
            return RealRun(folder, _record_real_run(ctx, folder), trained_now=True)
        return RealRun(folder, _record_on_several(ctx, folder), trained_now=True)


def _record_on_several(ctx, folder):
    """The Full run trained by ``nproc`` processes (:mod:`recbole_foster.distributed`); global
    rank 0 writes the pool, and this process continues the run on one device."""
    outcome = distributed.launch(ctx, _record_real_run, folder)
    manifest = load_manifest(folder)
    if manifest is None:  # a machine with offset > 0 whose anchor_dir is not rank 0's
        raise distributed.CLIError(f"the real-data run was trained, but rank 0 wrote it on another machine "
                                   f"({folder} is not complete here): run the methods there, or share anchor_dir.")
    if outcome is not None:
        for phase in ("train", "eval"):
            ctx.timings[phase] = ctx.timings.get(phase, 0.0) + outcome["timings"].get(phase, 0.0)
    return manifest


def _try_lock(file):
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _record_real_run(ctx, folder):
    """The Full run: train, test, save the teacher, then write the manifest (last)."""
    config = ctx.config
    model = ctx.new_model(config["seed"])
    if not config["single_spec"]:  # each rank its own dropout stream, as RecBole seeds them (seed + rank)
        init_seed(config["seed"] + distributed.global_rank(config), config["reproducibility"])
    trainer = AnchorRecordingTrainer(config, model, folder)
    trainer.saved_model_file = os.path.join(folder, "best.pth")
    resumed_at = trainer.resume_if_interrupted(ctx.train_data)
    if resumed_at is not None:
        ctx.logger.info(f"Resuming the interrupted real-data run in {folder} at epoch {resumed_at} "
                        f"(delete {RESUME_FILE} there to start it again)")
    else:
        if distributed.is_writer(config):
            _remove_training_files(folder)  # left by an attempt killed before its first resume state
        distributed.barrier(config)
        _extend_capped_run(ctx, trainer, folder)
        distributed.barrier(config)
    with ctx.timed("train"):
        _, best_valid = trainer.fit(ctx.train_data, ctx.valid_data, saved=True,
                                    show_progress=config["show_progress"])
    best = best_epoch(trainer.anchor_rows, bigger=config["valid_metric_bigger"] is not False)
    ended = training_summary({"best_epoch": best, "checkpoints": trainer.anchor_rows}, config["epochs"],
                             config["stopping_step"])["stopped_by"]
    if ended == "epoch cap":
        trainer.save_capped_state(ctx.train_data)  # before evaluate() loads the best weights
    distributed.barrier(config)  # rank 0 has written the best model every rank loads
    with ctx.timed("eval"):
        test = trainer.evaluate(ctx.test_data, load_best_model=True, show_progress=False)
    if not distributed.is_writer(config):
        return None
    torch.save(trainer.model.state_dict(), os.path.join(folder, "teacher.pt"))
    manifest = {
        "complete": True,
        "dataset": config["dataset"],
        "model": config["model"],
        "seed": config["seed"],
        "text_encoder": ctx.text_encoder,
        "teacher": "teacher.pt",
        "best_epoch": best,
        "checkpoints": trainer.anchor_rows,
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "train_seconds": ctx.timings.get("train") + trainer.seconds_before_resume,
        "resumed_at_epoch": resumed_at,
        "extended_from": _read_json(os.path.join(folder, EXTENSION_FILE)),
        **({} if config["single_spec"] else {"world_size": int(config["world_size"])}),
    }
    write_manifest(folder, manifest)
    _remove_training_files(folder)
    return manifest


def _extend_capped_run(ctx, trainer, folder):
    """Start this run where a capped run of the same config with a smaller cap ended (see the
    module docstring), if there is one and ``real_run_extend`` allows it."""
    mode = ctx.config["real_run_extend"] or "exact"
    if mode == "never":
        return
    found = find_capped_run(ctx.config, ctx.text_encoder, need_state=False)
    if found is not None and mode == "exact" and not os.path.isfile(os.path.join(found[0], CAPPED_STATE_FILE)):
        ctx.logger.info(f"The capped real-data run {found[0]} kept only its weights; "
                        "--real_run_extend=restart_optimizer continues it with a fresh optimizer.")
        found = find_capped_run(ctx.config, ctx.text_encoder)  # a smaller capped run that kept its state
    if found is None:
        return
    writer = distributed.is_writer(ctx.config)
    capped_folder, capped, cap = found
    state_file = os.path.join(capped_folder, CAPPED_STATE_FILE)
    if os.path.isfile(state_file):
        start, optimizer = trainer.resume_from(state_file, ctx.train_data), "restored"
    else:
        start, optimizer = trainer.restart_from_checkpoints(capped_folder, capped), "restarted"
    for row in capped["checkpoints"] if writer else ():  # its trajectory is this run's first epochs
        _link_or_copy(os.path.join(capped_folder, row["file"]), os.path.join(folder, row["file"]))
    trainer.save_best_from(capped_folder, capped["teacher"], capped["best_epoch"])
    extension = {"run": os.path.basename(capped_folder), "epoch_cap": cap,
                 "continued_at_epoch": start, "optimizer": optimizer}
    if writer:
        with open(os.path.join(folder, EXTENSION_FILE), "w") as f:
            json.dump(extension, f)
    ctx.logger.info(f"Continuing the capped real-data run {capped_folder} at epoch {start} "
                    f"(optimizer state {optimizer}); its checkpoints are this run's first epochs")


def _link_or_copy(source, target):
    if os.path.exists(target):
        os.remove(target)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _remove_training_files(folder):
    """What only an unfinished run needs: RecBole's best.pth (teacher.pt holds the same weights as
    a plain state dict), the resume state and the note of which capped run it continues."""
    for file in ("best.pth", RESUME_FILE, RESUME_FILE + ".tmp", EXTENSION_FILE):
        if os.path.isfile(os.path.join(folder, file)):
            os.remove(os.path.join(folder, file))
