"""The anchor pool: checkpoints along the real-data training trajectory (FOSTER Sec. 3.2).

Training TextSASRec on all real data once gives three things: the Full baseline, the teacher for
feature matching and the DH regulariser, and the trajectory FOSTER resets to. As in MTT's
``buffer.py`` the trajectory is recorded separately from distillation and reused from disk by
every later run with the same data, model and training config.

A pool folder holds ``epoch_<k>.pt`` state dicts (plain tensors, ``torch.load(weights_only=True)``)
and ``manifest.json`` (one row per checkpoint: epoch, step, validation metric, file; plus the
teacher file and the Full run's metrics, written last, so a half-written pool is never reused).
"""

import fcntl
import hashlib
import json
import os

import torch

from recbole_foster.trainer import CheckpointSafeTrainer

# Config keys that do not change what the real-data run learns; everything else is in the key.
_IRRELEVANT_KEYS = {
    "method", "n_sequences", "output_dir", "resume", "synthetic", "export_atomic", "show_progress",
    "state", "checkpoint_dir", "eval_batch_size", "device", "gpu_id", "use_gpu", "worker",
    "anchor_dir", "selection_seed", "log_wandb", "wandb_project", "save_dataset", "save_dataloaders",
    "dataset_save_path", "dataloaders_save_path", "text_cache_dir", "text_batch_size",
}


def pool_key(config, text_encoder_used):
    """Hash of every config value that affects the real-data training run."""
    relevant = {
        k: v for k, v in config.final_config_dict.items()
        if k not in _IRRELEVANT_KEYS and not k.startswith(("foster_", "td3_", "coreset_", "distilled_"))
    }
    relevant["text_encoder_used"] = text_encoder_used
    blob = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pool_dir(config, text_encoder_used):
    root = config["anchor_dir"] or os.path.join("saved", "anchors")
    return os.path.join(root, config["dataset"], f"{config['model']}-seed{config['seed']}-{pool_key(config, text_encoder_used)}")


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


class AnchorRecordingTrainer(CheckpointSafeTrainer):
    """RecBole training that also saves the model's state dict after every validated epoch."""

    def __init__(self, config, model, anchor_folder):
        super().__init__(config, model)
        self.anchor_folder = anchor_folder
        os.makedirs(anchor_folder, exist_ok=True)
        self.anchor_rows = []
        self._epoch = -1

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._epoch = epoch_idx
        self._batches_per_epoch = len(train_data)
        return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        file = f"epoch_{self._epoch}.pt"
        torch.save(self.model.state_dict(), os.path.join(self.anchor_folder, file))
        self.anchor_rows.append({
            "epoch": self._epoch,
            "step": (self._epoch + 1) * self._batches_per_epoch,
            "valid_metric": self.config["valid_metric"],
            "valid_score": float(score),
            "file": file,
        })
        return score, result


def ensure_anchor_pool(ctx):
    """Train on all real data recording the trajectory, or reuse a complete pool from disk.

    Returns ``(folder, manifest)``; the manifest holds the Full run's valid/test metrics.
    """
    folder = pool_dir(ctx.config, ctx.text_encoder)
    os.makedirs(folder, exist_ok=True)
    # Runs started side by side (e.g. one per method) must not train the same pool twice: the
    # first takes the lock and trains, the others wait for it and then reuse its pool.
    with open(os.path.join(folder, ".lock"), "w") as lock:
        if not _try_lock(lock):
            ctx.logger.info(f"Another run is training the anchor pool {folder}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = load_manifest(folder)
        if manifest is not None:
            ctx.logger.info(f"Reusing the real-data run and its anchor pool from {folder}")
            return folder, manifest
        return folder, _record_anchor_pool(ctx, folder)


def _try_lock(file):
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _record_anchor_pool(ctx, folder):
    """The Full run: train, test, save the teacher, then write the manifest (last)."""
    config = ctx.config
    model = ctx.new_model(config["seed"])
    trainer = AnchorRecordingTrainer(config, model, folder)
    trainer.saved_model_file = os.path.join(folder, "best.pth")
    with ctx.timed("train"):
        _, best_valid = trainer.fit(ctx.train_data, ctx.valid_data, saved=True,
                                    show_progress=config["show_progress"])
    with ctx.timed("eval"):
        test = trainer.evaluate(ctx.test_data, load_best_model=True, show_progress=False)
    torch.save(trainer.model.state_dict(), os.path.join(folder, "teacher.pt"))
    best_epoch = max(trainer.anchor_rows, key=lambda r: r["valid_score"])["epoch"]
    manifest = {
        "complete": True,
        "dataset": config["dataset"],
        "model": config["model"],
        "seed": config["seed"],
        "text_encoder": ctx.text_encoder,
        "teacher": "teacher.pt",
        "best_epoch": best_epoch,
        "checkpoints": trainer.anchor_rows,
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "train_seconds": ctx.timings.get("train"),
    }
    write_manifest(folder, manifest)
    os.remove(trainer.saved_model_file)  # teacher.pt holds the same weights as a plain state dict
    return manifest
