"""One run of ``run_foster.py``: build config and data, run a method, write ``results.json``.

Methods share one protocol: the same RecBole split, the same TextSASRec evaluation model and
full-ranking metrics, so their numbers can sit in one table.
"""

import json
import logging
import os
import resource
import sys
import time
from logging import getLogger

import torch
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed

from recbole_foster.cli import CLIError, parse_args
from recbole_foster.config import FosterConfig, get_model, get_trainer
from recbole_foster.data import DatasetError, attach_item_text_embeddings, create_dataset
from recbole_foster.distill.anchors import ensure_anchor_pool

DEFAULTS = {"dataset": "ml-100k", "method": "foster", "model": "TextSASRec"}
REPORTED_METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10", "hit@10"]
PLUGIN_KEYS = ["method", "selection_seed", "n_sequences", "output_dir", "resume", "synthetic", "export_atomic", "anchor_dir"]



def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


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
    """What every method gets: config, data, loaders, logger, output folder and phase timers."""

    def __init__(self, config, dataset, train_data, valid_data, test_data, output_dir, text_encoder=None):
        self.config, self.dataset = config, dataset
        self.text_encoder = text_encoder
        self.train_data, self.valid_data, self.test_data = train_data, valid_data, test_data
        self.output_dir = output_dir
        self.logger = getLogger()
        self.timings = {}

    def timed(self, phase):
        context = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                context.timings[phase] = context.timings.get(phase, 0.0) + time.perf_counter() - self.start

        return _Timer()

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


def metric_subset(result):
    return {k: float(result[k]) for k in REPORTED_METRICS if k in result}


def run_full(ctx):
    """Train on all real training data; model selection on valid; full-ranking test.

    The run records the anchor trajectory as it goes and is reused from disk when the same
    data/model/training config was trained before (it is also FOSTER's teacher).
    """
    folder, manifest = ensure_anchor_pool(ctx)
    return {
        "valid": metric_subset(manifest["valid"]),
        "test": metric_subset(manifest["test"]),
        "anchor_pool": folder,
        "reused_from_disk": "train" not in ctx.timings,
    }


def _methods():
    from recbole_foster import methods

    return {"full": run_full, "foster": methods.run_foster, "random": methods.run_random,
            "random_kd": methods.run_random_kd, "td3": methods.run_td3, "eval": methods.run_eval,
            "kcenter": methods.run_coreset, "dealrec": methods.run_coreset, "goracs": methods.run_coreset}


# Methods that build or select a small training set of ``n_sequences`` sequences
SMALL_SET_METHODS = ("foster", "td3", "random", "random_kd", "kcenter", "dealrec", "goracs")
METHODS = ("full", "eval") + SMALL_SET_METHODS


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def format_table(rows):
    """Markdown table of {name: metrics dict}."""
    header = "| method | " + " | ".join(REPORTED_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(REPORTED_METRICS) + 1)]
    for name, metrics in rows.items():
        cells = []
        for k in REPORTED_METRICS:
            v, std = metrics.get(k), metrics.get(k + "_std")
            cells.append("-" if v is None else (f"{v:.4f}" if std is None else f"{v:.4f} ± {std:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prepare(options):
    """Config, data, splits and text embeddings for ``options``: the :class:`RunContext`."""
    method = options.get("method", DEFAULTS["method"])
    if method not in METHODS:
        raise CLIError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}.")
    config = build_config(options)
    for key in PLUGIN_KEYS:
        if key not in config.final_config_dict:
            config.final_config_dict[key] = None
    config["method"] = method
    if method in SMALL_SET_METHODS and config["n_sequences"] is None:
        config["n_sequences"] = 20
    output_dir = config["output_dir"] or default_output_dir(config)
    config["output_dir"] = output_dir
    os.makedirs(output_dir, exist_ok=True)

    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    text_encoder = None
    start = time.perf_counter()
    if getattr(config.model_class, "requires_item_text", False):
        text_encoder = attach_item_text_embeddings(config, dataset, show_progress=True)
        for split in (train_data, valid_data, test_data):  # the splits are copies of dataset
            split.dataset.item_text_embeddings = dataset.item_text_embeddings
            split.dataset.text_encoder_used = text_encoder
    ctx = RunContext(config, dataset, train_data, valid_data, test_data, output_dir, text_encoder)
    ctx.timings["embed"] = time.perf_counter() - start
    return ctx


def run(argv):
    """Run ``run_foster.py`` with ``argv`` (without the program name); returns the results dict."""
    start = time.perf_counter()
    ctx = prepare(parse_args(argv))
    config, method, output_dir, text_encoder = ctx.config, ctx.config["method"], ctx.output_dir, ctx.text_encoder
    outcome = _methods()[method](ctx)
    timings = dict(ctx.timings)
    timings.setdefault("train", 0.0)
    timings.setdefault("eval", 0.0)
    timings["total"] = time.perf_counter() - start

    results = {
        "dataset": config["dataset"],
        "method": method,
        "model": config["model"],
        "n_sequences": config["n_sequences"] if method != "full" else None,
        "seed": config["seed"],
        "text_encoder": text_encoder,
        **outcome,
        "timings": timings,
        "peak_mem_mb": peak_memory_mb(config["device"]),
        "device": str(config["device"]),
        "config": jsonable(config.final_config_dict),
    }
    path = os.path.join(output_dir, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    rows = outcome.get("table") or {method: results["test"]}
    print(f"\nTest metrics on {config['dataset']} (full ranking over all items):")
    print(format_table(rows))
    print(f"results: {path}")
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except (CLIError, DatasetError) as error:
        logging.getLogger().error(str(error))
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
