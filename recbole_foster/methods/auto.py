"""``--method=auto --budget_bytes=B``: the self-contained set that validates best within B bytes.

For each kind in ``auto_storages`` (``hard``: Random-N; ``topk`` / ``text_code``: Random-KD-N with
its teacher labels stored, ``label_topk``; ``label_model``: Random-KD-N labelled by one stored
label model, ``label_model_rank``) the largest N of ``auto_sizes`` whose saved set fits in B is
that kind's candidate. Bytes are measured, not estimated: each set is built (the same Random-N
users for every kind) and saved, largest N first, until one fits; a set over budget is dropped
with a log line. A labelled set is never smaller than its windows alone (the hard set of the
same users), so a size whose windows already exceed the budget is skipped before any teacher
labels are computed or a label model is fitted. ``popularity`` (the recent best-seller list of ``--method=popularity``, no model)
is one more candidate when it fits. Every trained candidate is judged
with the same evaluation seeds, the best *validation* NDCG@10 is kept, and only its test is
reported (the others' test metrics, computed by the shared evaluation, are not read). results.json
and the log hold the table of candidates: their bytes and validation NDCG@10, and why the choice
was made.
"""

import os
import shutil

from recbole_foster.cli import CLIError
from recbole_foster.dataset.sequences import draw_users
from recbole_foster.distill.artifacts import save_windows
from recbole_foster.evaluation import evaluate_training_set
from recbole_foster.labels import get_storage
from recbole_foster.methods.base import SELF_CONTAINED, Method
from recbole_foster.methods.popularity import LIST_FILE, best_recent_list, evaluate_list, save_best_list, shares_of
from recbole_foster.methods.selection import PROPERTIES, _user_tokens, teacher_labelled
from recbole_foster.methods.set_files import common_header
from recbole_foster.training_sets import HardSequences

KINDS = ("popularity", "hard", "topk", "text_code", "label_model")
CANDIDATES_DIR = "candidates"


def _list_of(config, key):
    value = config[key]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _score(value):
    return "-" if value is None else f"{value:.4f}"


class Auto(Method):
    name, label = "auto", "Auto"
    summary = ("the self-contained set (a popularity list, Random-N, or Random-KD-N with stored labels) "
               "that validates best within budget_bytes")
    small_set, exports = False, False
    config_file = os.path.join(PROPERTIES, "auto.yaml")

    def output_name(self, config):
        return f"auto-{config['budget_bytes']}"

    def label_storage(self, config):
        return get_storage("hard")  # every candidate is self-contained

    def check(self, config):
        budget = config["budget_bytes"]
        if budget is None:
            raise CLIError("--method=auto needs --budget_bytes=B (the most bytes the chosen set may take).")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise CLIError(f"--budget_bytes must be a positive integer, got {budget!r}.")
        kinds, sizes = _list_of(config, "auto_storages"), _list_of(config, "auto_sizes")
        if not kinds or any(k not in KINDS for k in kinds):
            raise CLIError(f"--auto_storages must list some of {', '.join(KINDS)}, got {config['auto_storages']!r}.")
        if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise CLIError(f"--auto_sizes must list positive integers, got {config['auto_sizes']!r}.")
        if "popularity" in kinds:
            shares_of(config)

    def check_data(self, ctx):
        pass  # sizes above the number of training users are skipped

    def banner_lines(self, ctx):
        config = ctx.config
        return self.label, [self.summary, f"budget {config['budget_bytes']} bytes; kinds {_list_of(config, 'auto_storages')}, "
                                          f"N in {_list_of(config, 'auto_sizes')}; chosen on validation NDCG@10"]

    def evaluated_sets(self, config, n):
        return ["each candidate"]

    def _build(self, ctx, kind, n, folder):
        """``(training set, saved path, user tokens)`` of the Random-N set of ``kind``."""
        users, sequences = draw_users(*ctx.candidates, n, ctx.selection_seed)
        header = {**common_header(ctx, n_sequences=n), "method": "random" if kind == "hard" else "random_kd",
                  "label_storage": kind}
        if kind == "hard":
            training_set, stored = HardSequences(sequences), None
        else:
            training_set, stored, _, _ = teacher_labelled(ctx, sequences, storage=kind)
        path = save_windows(os.path.join(folder, f"{kind}-{n}", "set.pt"), sequences, header, stored)
        return training_set, path, _user_tokens(ctx, users)

    def _windows_bytes(self, ctx, n, folder, known):
        """Bytes of the hard set of the N users every kind draws: a lower bound of any kind's set."""
        if n not in known:
            _, path, _ = self._build(ctx, "hard", n, os.path.join(folder, "windows-only"))
            known[n] = os.path.getsize(path)
            shutil.rmtree(os.path.dirname(path))
        return known[n]

    def _popularity(self, ctx, folder, budget, table):
        """The recent best-seller list as a candidate (None when it does not fit). Every dataset this
        package loads has timestamps (the data check requires TIME_FIELD), so the list can always be made."""
        best, _ = best_recent_list(ctx)
        os.makedirs(os.path.join(folder, "popularity"), exist_ok=True)
        path = os.path.join(folder, "popularity", LIST_FILE)
        size = save_best_list(ctx, path, best)
        if size > budget:
            ctx.logger.info(f"auto: popularity takes {size} bytes > budget {budget}: dropped")
            table.append({"candidate": "popularity", "bytes": size, "valid_ndcg@10": None, "status": "over budget"})
            shutil.rmtree(os.path.dirname(path))
            return None
        valid = best["valid"]
        return {"candidate": "popularity", "kind": "popularity", "n": None, "bytes": size, "path": path,
                "items": best["items"], "valid_ndcg@10": valid["ndcg@10"],
                "result": {"valid": valid, "test": None, "eval_seeds": [], "recent_share": best["share"]}}

    def run(self, ctx):
        config, budget = ctx.config, int(ctx.config["budget_bytes"])
        n_users = len(ctx.candidates[0])
        sizes = sorted({n for n in _list_of(config, "auto_sizes") if n <= n_users}, reverse=True)
        folder = os.path.join(ctx.output_dir, CANDIDATES_DIR)
        table, candidates, windows_bytes = [], [], {}
        for kind in _list_of(config, "auto_storages"):
            if kind == "popularity":
                candidate = self._popularity(ctx, folder, budget, table)
                candidates += [candidate] if candidate else []
                continue
            for n in sizes:  # largest first: the first that fits is the kind's candidate
                if kind != "hard" and self._windows_bytes(ctx, n, folder, windows_bytes) > budget:
                    table.append({"candidate": f"{kind}@{n}", "bytes": windows_bytes[n], "valid_ndcg@10": None,
                                  "status": "over budget (its windows alone)"})
                    continue
                training_set, path, user_tokens = self._build(ctx, kind, n, folder)
                size = os.path.getsize(path)
                if kind == "hard":
                    windows_bytes[n] = size
                if size <= budget:
                    candidates.append({"candidate": f"{kind}@{n}", "kind": kind, "n": n, "bytes": size,
                                       "path": path, "training_set": training_set, "users": user_tokens})
                    break
                ctx.logger.info(f"auto: {kind}@{n} takes {size} bytes > budget {budget}: dropped")
                table.append({"candidate": f"{kind}@{n}", "bytes": size, "valid_ndcg@10": None, "status": "over budget"})
                shutil.rmtree(os.path.dirname(path))
        shutil.rmtree(os.path.join(folder, "windows-only"), ignore_errors=True)
        if not candidates:
            shutil.rmtree(folder, ignore_errors=True)
            smallest = min(table, key=lambda r: r["bytes"])
            at_least = "at least " if smallest["status"] != "over budget" else ""
            raise CLIError(f"--budget_bytes={budget} is below every candidate: the smallest, {smallest['candidate']}, "
                           f"takes {at_least}{smallest['bytes']} bytes (lower --auto_sizes or raise the budget).")
        for c in candidates:
            if c["kind"] != "popularity":  # the list was judged on validation when it was made
                c["result"] = evaluate_training_set(ctx, c.pop("training_set"), desc=f"auto {c['candidate']}")
                c["valid_ndcg@10"] = c["result"]["valid"]["ndcg@10"]
        best = max(candidates, key=lambda c: (c["valid_ndcg@10"], -c["bytes"]))
        for c in candidates:
            table.append({"candidate": c["candidate"], "bytes": c["bytes"], "valid_ndcg@10": c["valid_ndcg@10"],
                          "status": "chosen" if c is best else "fits"})
        why = (f"{best['candidate']} ({best['bytes']} bytes) has the best validation NDCG@10 "
               f"({best['valid_ndcg@10']:.4f}) of the {len(candidates)} candidate(s) within {budget} bytes")
        lines = ["| candidate | bytes | valid NDCG@10 | |", "|---|---|---|---|"] + [
            f"| {r['candidate']} | {r['bytes']} | {_score(r['valid_ndcg@10'])} | {r['status']} |" for r in table]
        print("\n".join(["", f"auto: {why}.", *lines]))
        ctx.logger.info(f"auto: {why}")
        result = best["result"]
        if best["kind"] == "popularity":  # only now is the list's test read
            result["test"] = evaluate_list(config, ctx.test_data, best["items"], ctx.dataset.item_num)
            result["per_seed"] = [{"seed": None, "valid": result["valid"], "test": result["test"], "steps": 0}]
        chosen = os.path.join(ctx.output_dir, LIST_FILE if best["kind"] == "popularity" else "set.pt")
        shutil.copyfile(best["path"], chosen)
        label = self.label
        storage = "hard" if best["kind"] == "popularity" else best["kind"]
        return {
            "valid": result["valid"], "test": result["test"], "per_seed": result["per_seed"],
            "eval_seeds": result["eval_seeds"], "n_sequences": best["n"], "label_storage": storage,
            "chosen": best["candidate"], "why": why, "budget_bytes": budget, "candidates": table,
            "selected_users": best.get("users"), "set_file": chosen, "family": SELF_CONTAINED,
            "artifact_bytes": os.path.getsize(chosen),
            "table": {"Full": ctx.real_run.manifest["test"], label: result["test"]},
        }
