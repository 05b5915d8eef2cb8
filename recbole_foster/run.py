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
from logging import getLogger

import yaml
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed

from recbole_foster import banners, legend, report, validation
from recbole_foster.cli import CLIError, HelpRequested, parse_args, usage
from recbole_foster.config import FosterConfig
from recbole_foster.context import RunContext
from recbole_foster.dataset import create_dataset
from recbole_foster.distill.artifacts import NotASet
from recbole_foster.errors import DatasetError
from recbole_foster.memory import PeakMemory
from recbole_foster.methods import METHODS, get_method
from recbole_foster.results import REPORTED_METRICS, format_table, jsonable, write_results  # noqa: F401
from recbole_foster.text_embedding import TextEncoderUnavailable, attach_item_text_embeddings

__all__ = ["RunContext", "build_config", "main", "prepare", "run", "with_method_inputs"]

DEFAULTS = {"dataset": "ml-100k", "method": "foster", "model": "TextSASRec"}
DEFAULT_N_SEQUENCES = 20
PLUGIN_KEYS = ["method", "selection_seed", "n_sequences", "output_dir", "resume", "synthetic", "export_atomic",
               "anchor_dir"]


def build_config(options):
    """``(FosterConfig, method)`` from parsed CLI options (plugin defaults < the method's YAML < your
    YAML files < CLI), with every run key resolved (method name, n_sequences, output_dir), so that
    nothing edits the config after validation."""
    options = {**DEFAULTS, **options}
    try:
        method = get_method(options["method"])
    except ValueError as error:
        raise CLIError(str(error)) from None
    options["method"] = method.name
    config_files = [f for f in str(options.pop("config_files", "")).split(",") if f]
    for path in config_files:
        if not os.path.isfile(path):
            raise CLIError(f"--config_files: {path} does not exist.")
    model, dataset = options.pop("model"), options.pop("dataset")
    try:
        config = FosterConfig(model=model, dataset=dataset, config_file_list=config_files, config_dict=options,
                              method_files=[method.config_file])
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise CLIError(f"--config_files: a YAML file cannot be read{line}: {problem}.") from None
    except ValueError as error:  # an unknown --model (get_model says which names exist)
        if "`model`" not in str(error):
            raise
        raise CLIError(f"--model={model}: {error}") from None
    for key in PLUGIN_KEYS:
        if key not in config.final_config_dict:
            config.final_config_dict[key] = None
    if method.small_set:
        if config["n_sequences"] is None:
            config["n_sequences"] = DEFAULT_N_SEQUENCES
        config["n_sequences"] = _positive_int(config, "n_sequences")
    config["output_dir"] = config["output_dir"] or default_output_dir(config, method)
    return config, method


def default_output_dir(config, method=None):
    """``outputs/<dataset>/<model>/<the method's output_name>/seed<seed>``."""
    method = method or METHODS[config["method"]]
    return os.path.join("outputs", config["dataset"], config["model"], method.output_name(config),
                        f"seed{config['seed']}")


def _positive_int(config, key):
    value = config[key]  # RecBole's Config has already parsed "20" into 20
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CLIError(f"--{key} must be a positive integer, got {value!r}.")
    return value


def prepare(options):
    """Stages 1-3: config, dataset and splits, text embeddings. Returns the :class:`RunContext`
    (without the method's inputs: :meth:`RunContext.with_inputs`)."""
    config, method = build_config(options)
    input_notes = validation.validate_run(config, options, method, PLUGIN_KEYS)  # before anything is written
    validation.make_output_dir(config["output_dir"])  # removed again by main() if the run fails before writing

    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    if config["verbose"]:  # RecBole's config dump
        logger.info(config)
    memory = PeakMemory(config["device"])
    memory.start()
    start = time.perf_counter()
    reads_text = method.reads_item_text(config)
    dataset = create_dataset(config, need_item_file=reads_text)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    memory.record("data")
    timings = {"data": time.perf_counter() - start}
    input_notes = {**input_notes, "empty_item_texts": validation.empty_item_texts(config, dataset, reads_text)}
    ctx = RunContext(config, dataset, train_data, valid_data, test_data, config["output_dir"], memory=memory,
                     method=method, timings=timings, input_notes=input_notes, logger=logger)
    method.check_data(ctx)  # before any text embedding or training
    text_encoder = None
    if reads_text:
        banners.embedding_banner(config, dataset)
    with ctx.timed("embed"):
        if reads_text:
            text_encoder = attach_item_text_embeddings(config, dataset, show_progress=True)
            for split in (train_data, valid_data, test_data):  # the splits are copies of dataset
                split.dataset.item_text_embeddings = dataset.item_text_embeddings
                split.dataset.text_encoder_used = text_encoder
                split.dataset.text_embedding_key = dataset.text_embedding_key
    return RunContext(config, dataset, train_data, valid_data, test_data, config["output_dir"], text_encoder,
                      memory, method, timings, input_notes, logger, _candidates=ctx._candidates)


def with_method_inputs(ctx):
    """Stage 4: the context with the method's inputs (real-data run, teacher, saved set)."""
    return ctx.with_inputs(**ctx.method.prepare_inputs(ctx))


def run(argv):
    """Run ``run_foster.py`` with ``argv`` (without the program name); returns the results dict."""
    start = time.perf_counter()
    ctx = prepare(parse_args(argv))
    config, method = ctx.config, ctx.method
    ctx = with_method_inputs(ctx)
    if method.small_set:
        ctx.random_draw  # noqa: B018 - drawn once, before the method
    banners.method_banner(ctx)
    outcome = dict(method.run(ctx))
    n_sequences = outcome.pop("n_sequences", config["n_sequences"] if method.small_set else None)
    timings = dict(ctx.timings)
    timings.setdefault("train", 0.0)
    timings.setdefault("eval", 0.0)
    timings["total"] = time.perf_counter() - start
    peaks = {phase: round(mb, 1) for phase, mb in ctx.memory.peaks.items()}

    results = {
        "dataset": config["dataset"],
        "method": method.name,
        "model": config["model"],
        "n_sequences": n_sequences,
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
    rows = outcome.get("table") or {method.name: results["test"]}
    print(f"\nTest metrics on {config['dataset']} (full ranking over all items):")
    print(format_table(rows))
    print(legend.table_legend(rows, config))
    report.report_after_run(results, ctx.output_dir)  # report.png beside results.json
    print(f"results: {path}")
    return results


def log_to_files_only(message):
    """Keep an error in RecBole's log file without printing it a second time beside ``error:``."""
    root = logging.getLogger()
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except HelpRequested:
        try:
            print(usage(METHODS))
        except BrokenPipeError:  # e.g. `--help | head`
            sys.stderr.close()
        return 0
    except (CLIError, DatasetError, NotASet, TextEncoderUnavailable) as error:
        log_to_files_only(str(error))
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        validation.remove_empty_output_dirs()  # a failed run leaves no empty output folder
    return 0
