"""Transitional names of the distillation loop, for callers written before it had solvers.

``FosterDistillTrainer(config, model, teacher, summary, real_dataset, real_run, anchor_rows,
label_mode)`` is ``DistillationLoop(..., BomeSolver)`` (TD3's is in :mod:`recbole_foster.distill.td3`),
and ``fit`` is ``run`` returning the summary. New code builds
:class:`~recbole_foster.distill.loop.DistillationLoop` with a solver and calls ``run``; this module
goes once no caller is left.
"""

from recbole_foster.distill.bome import BomeSolver
from recbole_foster.distill.loop import (  # noqa: F401 - names callers import from here
    ITEM_SAMPLING_MODES, RESET_MODES, START_MODES, DistillationLoop, kmeans_item_subset)


class LegacyLoop(DistillationLoop):
    solver_class = None

    def __init__(self, config, model, teacher, summary, real_dataset, real_run, anchor_rows, label_mode):
        super().__init__(config, model, teacher, summary, real_dataset, real_run, anchor_rows, label_mode,
                         self.solver_class)

    @property
    def inner_model(self):
        """BOME's inner copy; TD3's learner is the model itself."""
        return getattr(self.solver, "inner_model", self.model)

    def fit(self, show_progress=True, checkpoint_path=None, stop_after=None):
        self.run(show_progress=show_progress, checkpoint_path=checkpoint_path, stop_after=stop_after)
        return self.summary


class FosterDistillTrainer(LegacyLoop):
    solver_class = BomeSolver
