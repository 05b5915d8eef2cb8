"""RecBole's Trainer with checkpoints that torch >= 2.6 can load.

RecBole 1.2.1 pickles its ``Config`` object into every checkpoint, and torch >= 2.6 loads with
``weights_only=True``, so ``evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail. We
store only tensors and plain values (the model name instead of the Config), which both RecBole's
own loaders and ``torch.load(weights_only=True)`` accept. Nothing else about training changes.

Under DDP (:mod:`recbole_foster.distributed`) RecBole's own wrapping and gradient sync are kept;
only the wrapper is built without ``device_ids`` on CPU (torch refuses them there), and only
global rank 0 writes the checkpoint (RecBole lets every machine's first process write).
"""

import os
import recbole.trainer.trainer as recbole_trainer
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel


def global_rank(config):
    """This process's rank among all machines' (0 in a plain run)."""
    return 0 if config["single_spec"] else int(config["local_rank"]) + int(config["offset"] or 0)


def is_writer(config):
    """Whether this process writes files: the only process of a plain run, global rank 0 of a DDP run."""
    return bool(config["single_spec"]) or global_rank(config) == 0


def ddp_wrapper(config):
    """RecBole's ``Trainer`` wraps the model with ``device_ids=[local_rank]``, which torch refuses
    for a CPU module: on CPU (gloo) the same wrapper without ``device_ids``."""
    if config["single_spec"] or config["device"].type == "cuda":
        return DistributedDataParallel
    return lambda module, device_ids=None, **kwargs: DistributedDataParallel(module, **kwargs)


class CheckpointSafeTrainer(Trainer):
    def __init__(self, config, model):
        # RecBole's ensure_dir checks, then creates: ranks started together race on it
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        wrapper = recbole_trainer.DistributedDataParallel
        recbole_trainer.DistributedDataParallel = ddp_wrapper(config)
        try:
            super().__init__(config, model)
        finally:
            recbole_trainer.DistributedDataParallel = wrapper

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not is_writer(self.config):
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": {"model": self.config["model"], "dataset": self.config["dataset"]},
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
