"""Input checks of ``--method=diet`` that the generic value checks cannot make (run before data loading).

The data-dependent ones (a memory larger than the first stage's windows, an empty judging half)
are :meth:`recbole_foster.diet.stages.StagePlan.check`, before anything is trained or written.
"""

from recbole_foster.cli import CLIError

BASELINE_NAMES = ("full", "finetune", "reservoir_kd", "foster")


def check_diet_config(config):
    protocol = config["eval_protocol"] or "loo"
    if protocol != "global_temporal":
        raise CLIError(f"--method=diet streams the training period in time stages: it needs "
                       f"--eval_protocol=global_temporal (this run: {protocol}).")
    stages = config["diet_stages"]
    if stages < 2:
        raise CLIError(f"--diet_stages must be at least 2 (a first stage and one update), got {stages}.")
    fraction = config["diet_update_fraction"]
    if fraction != "stream" and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 <= fraction <= 1):
        raise CLIError(f"--diet_update_fraction must be a fraction in [0, 1] or stream (the new stage's share of "
                       f"the rows seen), got {fraction!r}.")
    storage = config["diet_label_storage"]
    if storage not in ("topk", "text_code"):
        raise CLIError(f"--diet_label_storage must be topk or text_code (how the memories keep their labels), "
                       f"got {storage!r}.")
    baselines = config["diet_baselines"]
    if not isinstance(baselines, (list, tuple)) or any(b not in BASELINE_NAMES for b in baselines):
        raise CLIError(f"--diet_baselines must be a list of {', '.join(BASELINE_NAMES)} "
                       f"(e.g. \"['full','finetune']\"), got {baselines!r}.")
    if "foster" in baselines and config["model"] != "TextSASRec":
        raise CLIError(f"--diet_baselines with foster needs --model=TextSASRec (the distillation code is written "
                       f"for it); got --model={config['model']}.")
    if (config["distilled_student_init"] or "fresh") != "fresh":
        raise CLIError("--method=diet judges its memory with fresh models only (its sets are self-contained); "
                       "drop --distilled_student_init.")
