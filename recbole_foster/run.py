"""One run of ``run_foster.py``: the pipeline, stage by stage (docs/architecture.md).

config -> dataset -> text embeddings -> real-data run -> method -> evaluation -> results.json

Every method shares one protocol (the same RecBole split, evaluation model and full-ranking
metrics) and one real-data run, computed here before the method; the Random-N users are drawn
here once, so Random-N, Random-KD-N and FOSTER's warm start are the same users.
"""

import logging
import os
import sys
import time
from contextlib import contextmanager
from functools import cached_property
from logging import getLogger

import torch
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed

from recbole_foster.cli import CLIError, HelpRequested, parse_args, usage
from recbole_foster.config import FosterConfig, get_model, get_trainer, uses_item_text
from recbole_foster.dataset import create_dataset
from recbole_foster.distill.artifacts import NotASet
from recbole_foster.dataset.sequences import draw_users, user_training_sequences
from recbole_foster.errors import DatasetError
from recbole_foster.memory import PeakMemory
from recbole_foster.methods import METHODS
from recbole_foster.real_run import ensure_real_run, find_real_run
from recbole_foster.results import REPORTED_METRICS, format_table, jsonable, write_results  # noqa: F401
from recbole_foster.text_embedding import attach_item_text_embeddings
from recbole_foster import banners, report, validation  # input checks, phase banners, report.png (issue 14)

DEFAULTS = {"dataset": "ml-100k", "method": "foster", "model": "TextSASRec"}
DEFAULT_N_SEQUENCES = 20
PLUGIN_KEYS = ["method", "selection_seed", "n_sequences", "output_dir", "resume", "synthetic", "export_atomic",
               "anchor_dir"]


def build_config(options):
    """FosterConfig from parsed CLI options (plugin defaults < YAML files < CLI)."""
    options = {**DEFAULTS, **options}
    config_files = [f for f in str(options.pop("config_files", "")).split(",") if f]
    for path in config_files:
        if not os.path.isfile(path):
            raise CLIError(f"--config_files: {path} does not exist.")
    model, dataset = options.pop("model"), options.pop("dataset")
    return FosterConfig(model=model, dataset=dataset, config_file_list=config_files, config_dict=options)


def default_output_dir(config):
    name = config["method"] + (f"-{config['n_sequences']}" if config["n_sequences"] else "")
    return os.path.join("outputs", config["dataset"], config["model"], name, f"seed{config['seed']}")


class RunContext:
    """What every method gets: config, data, the real-data run, the Random-N draw, phase timers."""

    def __init__(self, config, dataset, train_data, valid_data, test_data, output_dir, text_encoder=None,
                 memory=None):
        self.config, self.dataset = config, dataset
        self.text_encoder = text_encoder
        self.train_data, self.valid_data, self.test_data = train_data, valid_data, test_data
        self.output_dir = output_dir
        self.logger = getLogger()
        self.timings = {}
        self.memory = memory or PeakMemory(config["device"])
        self.real_run = None  # set by the pipeline before the method runs
        self.teacher = None
        self.saved_set = None
        self.input_notes = {}  # what input checking found (empty item texts, dropped lines)

    @contextmanager
    def timed(self, phase):
        """Adds the phase's seconds to ``timings[phase]`` and its peak memory to ``memory.peaks``."""
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

    @cached_property
    def candidates(self):
        """Every training user's training window: ``(user ids, (users, MAX_ITEM_LIST_LENGTH) items)``."""
        return user_training_sequences(self.train_data.dataset, self.config["MAX_ITEM_LIST_LENGTH"])

    @property
    def selection_seed(self):
        """Which users a run draws or selects: ``selection_seed``, by default ``seed``."""
        seed = self.config["selection_seed"]
        return self.config["seed"] if seed is None else int(seed)

    @cached_property
    def random_draw(self):
        """The run's Random-N users and windows, drawn once with ``selection_seed`` (default ``seed``).

        A seed of its own lets the spread over *which* users are drawn be measured without
        changing the real-data run (whose key includes ``seed``).
        """
        return draw_users(*self.candidates, self.n_sequences, self.selection_seed)

    def new_model(self, seed):
        """A freshly initialised model of the configured class (seeded)."""
        init_seed(seed, self.config["reproducibility"])
        model_class = get_model(self.config["model"])
        return model_class(self.config, self.train_data.dataset).to(self.config["device"])

    def new_trainer(self, model, checkpoint_dir=None):
        trainer_class = get_trainer(self.config["MODEL_TYPE"], self.config["model"])
        trainer = trainer_class(self.config, model)
        if checkpoint_dir is not None:
            os.makedirs(checkpoint_dir, exist_ok=True)
            trainer.saved_model_file = os.path.join(checkpoint_dir, os.path.basename(trainer.saved_model_file))
        return trainer


def _positive_int(config, key):
    value = config[key]  # RecBole's Config has already parsed "20" into 20
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CLIError(f"--{key} must be a positive integer, got {value!r}.")
    return value


def prepare(options):
    """Stages 1-3: config, dataset and splits, text embeddings. Returns the :class:`RunContext`."""
    method = options.get("method", DEFAULTS["method"])
    if method not in METHODS:
        raise CLIError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}.")
    config = build_config(options)
    for key in PLUGIN_KEYS:
        if key not in config.final_config_dict:
            config.final_config_dict[key] = None
    config["method"] = method
    if METHODS[method].small_set:
        if config["n_sequences"] is None:
            config["n_sequences"] = DEFAULT_N_SEQUENCES
        config["n_sequences"] = _positive_int(config, "n_sequences")
    output_dir = config["output_dir"] or default_output_dir(config)
    config["output_dir"] = output_dir
    input_notes = validation.validate_run(config, options, PLUGIN_KEYS)  # every input, before anything is written
    validation.make_output_dir(output_dir)  # removed again by main() if the run fails before writing to it

    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    if config["verbose"]:  # RecBole's config dump
        logger.info(config)
    memory = PeakMemory(config["device"])
    memory.start()
    start = time.perf_counter()
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    memory.record("data")
    data_seconds = time.perf_counter() - start
    text_encoder = None
    ctx = RunContext(config, dataset, train_data, valid_data, test_data, output_dir, None, memory)
    ctx.timings["data"] = data_seconds
    ctx.input_notes = {**input_notes, "empty_item_texts": validation.empty_item_texts(config, dataset)}
    with ctx.timed("embed"):
        if uses_item_text(config):
            text_encoder = attach_item_text_embeddings(config, dataset, show_progress=True)
            for split in (train_data, valid_data, test_data):  # the splits are copies of dataset
                split.dataset.item_text_embeddings = dataset.item_text_embeddings
                split.dataset.text_encoder_used = text_encoder
                split.dataset.text_embedding_key = dataset.text_embedding_key
    ctx.text_encoder = text_encoder
    return ctx


def prepare_method_inputs(ctx):
    """Stage 4: checks of a saved set, the real-data run, its teacher, the Random-N draw."""
    method = METHODS[ctx.config["method"]]
    if method.name == "eval":
        from recbole_foster.methods.saved_set import check_saved_set

        ctx.saved_set = check_saved_set(ctx)  # before any real-data training
    if method.name == "eval" and not ctx.saved_set.needs_teacher and ctx.config["distilled_student_init"] == "fresh":
        ctx.real_run = find_real_run(ctx)  # a self-contained set needs none; Full is shown if it exists
    else:
        ctx.real_run = ensure_real_run(ctx)
    paper_compatible = ctx.config["distilled_student_init"] == "teacher_embeddings"
    if method.small_set or (method.name == "eval" and (ctx.saved_set.needs_teacher or paper_compatible)):
        # not frozen: the gradient-based coresets differentiate it (the trainers freeze their own use)
        ctx.teacher = ctx.real_run.load_teacher(lambda: ctx.new_model(ctx.config["seed"]))
    if method.small_set:
        ctx.random_draw  # noqa: B018 - drawn once, before the method


def run(argv):
    """Run ``run_foster.py`` with ``argv`` (without the program name); returns the results dict."""
    start = time.perf_counter()
    ctx = prepare(parse_args(argv))
    config, method = ctx.config, ctx.config["method"]
    prepare_method_inputs(ctx)
    banners.method_banner(ctx)
    outcome = METHODS[method].run(ctx)
    timings = dict(ctx.timings)
    timings.setdefault("train", 0.0)
    timings.setdefault("eval", 0.0)
    timings["total"] = time.perf_counter() - start
    peaks = {phase: round(mb, 1) for phase, mb in ctx.memory.peaks.items()}

    results = {
        "dataset": config["dataset"],
        "method": method,
        "model": config["model"],
        "n_sequences": config["n_sequences"] if method != "full" else None,
        "student_init": config["distilled_student_init"],  # teacher_embeddings = paper-compatible, leaks
        "seed": config["seed"],
        "text_encoder": ctx.text_encoder,
        **ctx.input_notes,  # empty_item_texts, malformed_lines_dropped
        **outcome,
        "timings": timings,
        "peak_mem_mb": max(peaks.values()),
        "peak_mem_mb_per_phase": peaks,
        "peak_mem_kind": "cuda allocated" if ctx.memory.cuda else "resident set (VmHWM)",
        "device": str(config["device"]),
        "config": jsonable(config.final_config_dict),
    }
    path = write_results(ctx.output_dir, results)
    rows = outcome.get("table") or {method: results["test"]}
    print(f"\nTest metrics on {config['dataset']} (full ranking over all items):")
    print(format_table(rows))
    print(banners.table_legend(rows, config))
    report.report_after_run(results, ctx.output_dir)  # report.png beside results.json
    print(f"results: {path}")
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except HelpRequested:
        try:
            print(usage())
        except BrokenPipeError:  # e.g. `--help | head`
            sys.stderr.close()
        return 0
    except (CLIError, DatasetError, NotASet) as error:
        if logging.getLogger().handlers:  # RecBole's log, once set up (before, Python would print it twice)
            logging.getLogger().error(str(error))
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        validation.remove_empty_output_dirs()  # a failed run leaves no empty output folder
    return 0
