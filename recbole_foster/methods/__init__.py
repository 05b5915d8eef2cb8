"""Stage 5 of a run: the method that builds (or re-reads) a small training set, or trains on all data.

``METHODS`` is the one registry of ``--method`` names: the command line, ``--help``,
``benchmarks/paper_table.py``, ``benchmarks/ablation.py`` and the docs all read it. A runner
takes the run's :class:`~recbole_foster.run.RunContext` (data, the real-data run, the Random-N
draw) and returns the part of results.json it owns.
"""

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # how the method's rows are named in tables ("FOSTER" -> "FOSTER-20")
    runner: str  # "module:function", imported when the method runs
    summary: str  # one line for --help and the docs
    small_set: bool = True  # builds a set of n_sequences sequences (False: full, eval)
    models: str = "student"  # which --model it runs with: any | student | causal | TextSASRec (MODEL_SUPPORT)

    def run(self, ctx):
        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)(ctx)

    def row_label(self, n):
        return f"{self.label}-{n}" if self.small_set and n else self.label


# What each ``models`` value admits (checked by validation.check_model_for_method before data loading).
MODEL_SUPPORT = {
    "any": "any RecBole or recbole_foster model",
    "student": "a model that trains on small sets: SASRec, GRU4Rec, NARM, BERT4Rec or their text forms "
               "TextSASRec, TextGRU4Rec, TextNARM, TextBERT4Rec",
    "causal": "a left-to-right model (its per-position states rank the candidates): SASRec, GRU4Rec, NARM, "
              "TextSASRec, TextGRU4Rec, TextNARM",
    "TextSASRec": "TextSASRec (the distillation and generation code is written for it)",
}

_M = "recbole_foster.methods."
METHODS = {m.name: m for m in [
    Method("full", "Full", _M + "full:run_full", "train on all real training data (also the teacher)",
           small_set=False, models="any"),
    Method("random", "Random", _M + "selection:run_random", "n_sequences random real user windows, next-item labels"),
    Method("random_kd", "Random-KD", _M + "selection:run_random_kd",
           "the same windows trained on the teacher's soft next-item labels (needs the teacher)"),
    Method("kcenter", "K-Center", _M + "selection:run_coreset", "coreset: greedy k-center on the teacher's user states",
           models="causal"),
    Method("dealrec", "DEALRec", _M + "selection:run_coreset", "coreset: DEALRec influence + effort score strata",
           models="causal"),
    Method("goracs", "GORACS", _M + "selection:run_coreset", "coreset: GORACS optimal-transport match to validation",
           models="causal"),
    Method("kcenter_kd", "K-Center-KD", _M + "selection:run_kcenter_kd",
           "K-Center's windows (coverage of the teacher's user states) with the teacher's labels (label_storage)",
           models="causal"),
    Method("generate_kd", "Generate-KD", _M + "generation:run_generate_kd",
           "N sequences sampled from the teacher, with the teacher's labels (label_storage)",
           models="TextSASRec"),
    Method("td3", "TD3", _M + "distillation:run_td3",
           "the FOSTER summary distilled by TD3's RaT-BPTT (second order through a window)",
           models="TextSASRec"),
    Method("foster", "FOSTER", _M + "distillation:run_foster",
           "distil n_sequences synthetic soft sequences (first-order BOME; the paper's method)",
           models="TextSASRec"),
    Method("diet", "DIET", "recbole_foster.diet.pipeline:run_diet",
           "a streaming memory of real windows with stored labels, updated stage by stage over time by "
           "influence-aware addressing, beside Full-s, Fine-tune and Reservoir-KD (global_temporal only)",
           small_set=False, models="causal"),
    Method("eval", "Saved set", _M + "saved_set:run_eval", "train on a saved set (--synthetic=PATH) and report",
           small_set=False),
]}
