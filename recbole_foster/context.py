"""The one run context every stage of a run gets (:mod:`recbole_foster.run`, methods, DIET's stages).

Its fields are declared here and nothing else is attached to it. It is built twice, at clear
points: after the data and text embeddings (stages 1-3: ``real_run``, ``teacher`` and
``saved_set`` are still None), then with the method's inputs
(:meth:`~recbole_foster.methods.base.Method.prepare_inputs`) by :meth:`RunContext.with_inputs`.
DIET judges a set on a stage's periods with :meth:`RunContext.for_stage`, a copy whose
validation and test data are the stage's halves. The config is never edited after validation.
"""

import dataclasses
import os
import time
from contextlib import contextmanager
from logging import Logger, getLogger
from typing import Any, Optional

from recbole.utils import init_seed

from recbole_foster import banners
from recbole_foster.config import get_model, get_trainer
from recbole_foster.dataset.sequences import draw_users, user_training_sequences
from recbole_foster.memory import PeakMemory


@dataclasses.dataclass(eq=False, slots=True)
class RunContext:
    """What every stage gets: config, data, the method and its inputs, the Random-N draw, phase timers."""

    config: Any
    dataset: Any
    train_data: Any
    valid_data: Any
    test_data: Any
    output_dir: str
    text_encoder: Optional[str] = None  # the encoder that embedded the item texts (None: no text)
    memory: Optional[PeakMemory] = None
    method: Any = None  # the Method (recbole_foster.methods.base) the run runs
    timings: dict = dataclasses.field(default_factory=dict)
    input_notes: dict = dataclasses.field(default_factory=dict)  # what input checking found
    logger: Logger = dataclasses.field(default_factory=getLogger)
    # the method's inputs (Method.prepare_inputs), set by with_inputs
    real_run: Any = None
    teacher: Any = None
    saved_set: Any = None
    # DIET's stage view (for_stage): phases not timed, the fresh models it builds kept for the test split
    record_phases: bool = True
    built_models: Optional[list] = None
    # filled on first use, shared by the copies
    _selection_data: Any = None  # read and set by recbole_foster.evaluation.selection_data
    _candidates: Any = None
    _random_draw: Any = None
    evaluations_announced: int = 0

    def __post_init__(self):
        if self.memory is None:
            self.memory = PeakMemory(self.config["device"])

    def with_inputs(self, real_run=None, teacher=None, saved_set=None):
        """This context with the method's inputs (stage 4)."""
        return dataclasses.replace(self, real_run=real_run, teacher=teacher, saved_set=saved_set)

    def for_stage(self, selection, report):
        """A copy that sees ``selection`` as validation data and ``report`` as test data, times no
        phase and keeps the models it builds in ``built_models``."""
        return dataclasses.replace(self, test_data=report, _selection_data=selection, record_phases=False,
                                   built_models=[])

    @contextmanager
    def timed(self, phase):
        """Adds the phase's seconds to ``timings[phase]`` and its peak memory to ``memory.peaks``."""
        if not self.record_phases:
            yield
            return
        banners.phase_started(self, phase)
        self.memory.start()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start
            self.memory.record(phase)

    @property
    def n_sequences(self):
        return int(self.config["n_sequences"])

    @property
    def candidates(self):
        """Every training user's training window: ``(user ids, (users, MAX_ITEM_LIST_LENGTH) items)``."""
        if self._candidates is None:
            self._candidates = user_training_sequences(self.train_data.dataset, self.config["MAX_ITEM_LIST_LENGTH"])
        return self._candidates

    @property
    def selection_seed(self):
        """Which users a run draws or selects: ``selection_seed``, by default ``seed``."""
        seed = self.config["selection_seed"]
        return self.config["seed"] if seed is None else int(seed)

    @property
    def random_draw(self):
        """The run's Random-N users and windows, drawn once with ``selection_seed`` (default ``seed``).

        A seed of its own lets the spread over *which* users are drawn be measured without
        changing the real-data run (whose key includes ``seed``).
        """
        if self._random_draw is None:
            self._random_draw = draw_users(*self.candidates, self.n_sequences, self.selection_seed)
        return self._random_draw

    def new_model(self, seed):
        """A freshly initialised model of the configured class (seeded)."""
        init_seed(seed, self.config["reproducibility"])
        model = get_model(self.config["model"])(self.config, self.train_data.dataset).to(self.config["device"])
        if self.built_models is not None:
            self.built_models.append(model)
        return model

    def new_trainer(self, model, checkpoint_dir=None):
        trainer = get_trainer(self.config["MODEL_TYPE"], self.config["model"])(self.config, model)
        if checkpoint_dir is not None:
            os.makedirs(checkpoint_dir, exist_ok=True)
            trainer.saved_model_file = os.path.join(checkpoint_dir, os.path.basename(trainer.saved_model_file))
        return trainer
