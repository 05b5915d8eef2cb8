"""The architecture-ranking check (``diet_rank_models``): does a memory order models as all the data does?

DIET's purpose is cheaper model iteration: compare architectures on the memory instead of on all
data seen. Per stage, each listed RecBole sequential model is trained once on every memory (a
fresh model, ``distilled_*`` settings, the first evaluation seed) and once on every training row
seen so far (Full-s: RecBole's trainer, ``diet_epochs``), best state on the selection half; their
NDCG@10 on the report half gives two orders of the models. Reported per memory: Kendall's tau
(``scipy.stats.kendalltau``) between the orders, whether the best model is the same (top-1), and
the seconds to train and evaluate each model on the memory against on Full-s's data, and their ratio.

A model of another class gets the run's own settings rebuilt for it (:func:`model_config`: the
same user files and overrides over that model's defaults), and shares the run's dataset.
"""

import dataclasses

from scipy.stats import kendalltau

from recbole_foster.config import FosterConfig


def model_config(config, name):
    """The run's config for model ``name``: the same user settings (files, overrides, method
    defaults) over ``name``'s defaults, and the keys the run resolved after building its config
    (keys only the run's model reads come along unused)."""
    if name == config["model"]:
        return config
    other = FosterConfig(model=name, dataset=config["dataset"], config_dict=dict(config.external_config_dict),
                         method_files=config.method_files)
    for key, value in config.final_config_dict.items():  # the run keys resolved after building (output_dir...)
        if key not in other.final_config_dict:
            other.final_config_dict[key] = value
    return other


def model_context(ctx, name, cache):
    """``ctx`` with the config of model ``name`` (built once per name in ``cache``)."""
    if name == ctx.config["model"]:
        return ctx
    if name not in cache:
        cache[name] = model_config(ctx.config, name)
    return dataclasses.replace(ctx, config=cache[name])


def agreement(on_set, on_full, metric="ndcg@10"):
    """Kendall's tau (and its p-value) between the models' ``metric`` on a set and on Full-s, and
    whether both name the same best model. ``on_set``/``on_full``: ``{model: {metric: value}}``."""
    models = [m for m in on_full if m in on_set]
    if len(models) < 2:
        return {"tau": None, "p_value": None, "top1_agree": None, "n_models": len(models)}
    full = [on_full[m][metric] for m in models]
    small = [on_set[m][metric] for m in models]
    tau, p_value = kendalltau(small, full)
    best_full = models[max(range(len(models)), key=lambda i: full[i])]
    best_set = models[max(range(len(models)), key=lambda i: small[i])]
    nan = tau != tau  # constant values: kendalltau has no tau
    return {"tau": None if nan else float(tau), "p_value": None if nan else float(p_value),
            "top1_agree": best_full == best_set, "best_full": best_full, "best_set": best_set,
            "n_models": len(models)}


def summary(per_model, full):
    """One memory's row: per model its numbers, the agreement with Full-s, and the iteration cost
    (seconds summed over the models, on the memory and on Full-s, and Full-s's / the memory's)."""
    seconds = sum(r["seconds"] for r in per_model.values())
    full_seconds = sum(full[m]["seconds"] for m in per_model)
    return {"per_model": per_model, **agreement(per_model, full), "seconds": seconds, "full_seconds": full_seconds,
            "speedup": full_seconds / seconds if seconds else None}
