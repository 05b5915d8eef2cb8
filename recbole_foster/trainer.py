"""RecBole's Trainer with checkpoints that torch >= 2.6 can load.

RecBole 1.2.1 pickles its ``Config`` object into every checkpoint, and torch >= 2.6 loads with
``weights_only=True``, so ``evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail. We
store only tensors and plain values (the model name instead of the Config), which both RecBole's
own loaders and ``torch.load(weights_only=True)`` accept. Nothing else about training changes.
"""

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color


class CheckpointSafeTrainer(Trainer):
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
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
