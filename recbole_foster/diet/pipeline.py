"""``--method=diet``: the stage loop (docs/diet.md).

For each stage s (1-based in results.json):

1. stage models: Full-s (fresh model, every row seen so far), Fine-tune (the previous Fine-tune
   model, the new rows only) and DIET's model (the previous DIET model, the new rows with the
   memory replayed). At stage 1 the three are one model trained on stage 1's rows;
2. memories: DIET's (stage 1: the M most influential stage-1 windows; later: influence-aware
   addressing, :mod:`.addressing`), labelled by DIET's model; Reservoir-KD's (Algorithm R over the
   stream, :mod:`.reservoir`), labelled by the Fine-tune model; optionally FOSTER distilled from
   scratch on every row seen, taught by Full-s (:mod:`.foster_baseline`);
3. judging on the period after the stage (:mod:`.stages`), with each method's cost;
4. the stage's state written to ``stages/<s>/`` (:mod:`.state`), so a rerun continues there.

After the last stage every method is scored once on the test split, the final memory is saved as
``set.pt`` (``--method=eval --synthetic=.../set.pt`` trains on it) and ``stages.png`` is drawn.
"""

import os
import shutil
import time

import numpy as np
import torch
from tqdm import tqdm

from recbole_foster.diet.addressing import address, update_fraction, within_budget
from recbole_foster.diet.foster_baseline import distil_seen, trajectory_trainer
from recbole_foster.diet.influence import influence_parameters, labelled_scores, query_gradient, window_scores
from recbole_foster.diet.memory import Memory, trained_positions
from recbole_foster.diet.plot import draw_stages
from recbole_foster.diet.ranking import model_context, summary as rank_summary
from recbole_foster.diet.refine import refine_labels
from recbole_foster.diet.reservoir import reservoir_resize, reservoir_update
from recbole_foster.diet.stages import StagePlan
from recbole_foster.diet.state import StageStore, fingerprint
from recbole_foster.diet.training import Cost, evaluate, fit, judge_set
from recbole_foster.evaluation import train_and_select
from recbole_foster.console import banner
from recbole_foster.distill.artifacts import save_windows
from recbole_foster.labels import get_storage, stored_bytes
from recbole_foster.methods.distillation import Foster
from recbole_foster.methods.set_files import common_header, describe_set
from recbole_foster.results import jsonable, metric_subset

BASELINES = ("full", "finetune", "reservoir_kd", "foster")  # in the order they are run and reported


def memory_tag(settings):
    """What a memory's row is called after: its size in windows (``diet_memory_size``), or its share
    of the training rows seen (``diet_memory_share``, e.g. ``1%``)."""
    share = float((settings["diet_memory_share"] if "diet_memory_share" in settings else 0) or 0)
    return f"{100 * share:g}%" if share else str(int(settings["diet_memory_size"]))


def _cpu_state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Stage:
    """What one stage works with (its rows, candidate windows, judging halves) and what it makes."""

    def __init__(self, plan, s, test_data):
        self.index, self.number, self.last = s, s + 1, s == plan.n_stages - 1
        self.selection, self.report = plan.loaders(s)
        self.test = test_data if self.last else None
        self.rows = plan.rows(s)
        self.new_data = plan.train_loader(self.rows)
        cand_rows, self.cand_users, self.cand_windows = plan.windows(s)
        self.cand_rows = torch.as_tensor(cand_rows, dtype=torch.long)
        self.seen_before = sum(len(plan.rows(i)) for i in range(s))
        self.models, self.cost, self.best, self.trained_on = {}, {}, {}, {}
        self.replay_weight = None
        self.trajectory = None  # Full-s's trainer when it records the epochs FOSTER resets to


class DietRun:
    """One DIET run over the stages of :class:`~recbole_foster.diet.stages.StagePlan`."""

    def __init__(self, ctx, label="DIET"):
        config = ctx.config
        self.ctx, self.config = ctx, config
        self.size, self.k = int(config["diet_memory_size"]), int(config["label_topk"])
        self.share = float(config["diet_memory_share"] or 0)  # 0: the fixed size
        self.refine_steps = int(config["diet_refine_steps"] or 0)
        self.rank_models = list(config["diet_rank_models"] or [])
        self._rank_configs = {}
        self.seed, self.n_items = int(config["seed"]), int(ctx.dataset.item_num)
        self.baselines = [b for b in BASELINES if b in list(config["diet_baselines"])]
        self.plan = StagePlan(ctx)
        # how the memories keep their labels (the same for DIET's memory and Reservoir-KD's)
        self.storage = get_storage(config["diet_label_storage"])
        self.item_text = getattr(ctx.dataset, "item_text_embeddings", None)
        # a budget of top-k labels for every position of a full memory, written by one model per stage
        self.fit_options = self.storage.fit_options(self.size * (int(config["MAX_ITEM_LIST_LENGTH"]) - 1),
                                                    self.item_text, self.k, n_writers=self.plan.n_stages)
        tag = memory_tag(config)
        self.labels = {"diet": f"{label}-{tag}", "diet_refined": f"{label}-{tag} refined", "diet_model": "DIET model",
                       "full": "Full-s", "finetune": "Fine-tune", "reservoir_kd": f"Reservoir-KD-{tag}",
                       "foster": Foster().row_label(tag)}
        self.work_dir = os.path.join(ctx.output_dir, "stages", ".work")
        self.progress = None

    def size_at(self, s):
        """Windows the memories hold after stage ``s`` (0-based): ``diet_memory_size``, or
        ``round(diet_memory_share x`` the training rows of stages 0..s``)`` (at least 1)."""
        if not self.share:
            return self.size
        return max(1, int(round(self.share * len(self.plan.rows_until(s)))))

    def labelled(self, model, st, picks):
        """A memory of the candidate windows ``picks`` of stage ``st``, labelled by ``model``."""
        return Memory.labelled(model, st.cand_windows[picks], st.cand_users[picks], st.cand_rows[picks], st.number,
                               self.k, self.storage, self.item_text, self.fit_options)

    def new_model(self, state=None):
        model = self.ctx.new_model(self.seed)
        if state is not None:
            model.load_state_dict(state)
        return model

    def _step(self, name):
        if self.progress is not None:
            self.progress.set_postfix_str(name)

    def _wants(self, *names):
        return any(name in self.baselines for name in names)

    # ----- one stage -----
    def stage(self, s, prev, progress=None):
        """Stage ``s`` (0-based) from the previous stage's state; returns ``(state, result)``."""
        self.progress = progress
        st = Stage(self.plan, s, self.ctx.test_data)
        self._train_models(st, prev)
        memory, record = self._update_memory(st, prev)
        refined = None
        if self.refine_steps:
            refined, record["refinement"] = self._refine(st, memory)
        reservoir = self._update_reservoir(st, prev) if self._wants("reservoir_kd") else None
        foster = self._distil_foster(st) if self._wants("foster") else None
        methods = self._judge(st, memory, reservoir, foster, refined)
        ranking = self._rank(st, memory, reservoir, refined, methods) if self.rank_models else None

        state = {"models": {key: _cpu_state(model) for key, model in st.models.items() if key != "shared"},
                 "memory": memory.state()}
        if reservoir is not None:
            state.update(reservoir=reservoir[0].state(), reservoir_filled=reservoir[1], reservoir_seen=reservoir[2])
        plan = self.plan
        result = {
            "stage": st.number,
            "slice": {"start": None if s == 0 else plan.ends[s - 1], "end": plan.ends[s]},
            "judged_on": "validation period" if st.last else f"slice {st.number + 1}",
            "train_rows": len(st.rows), "rows_seen": st.seen_before + len(st.rows),
            "targets_seen": plan.targets_seen(s),
            "period_rows": {"selection": len(st.selection.dataset), "report": len(st.report.dataset)},
            "replay_weight": st.replay_weight,
            "memory_size": self.size_at(s),
            "memory": record,
            "methods": methods,
            "ranking": ranking,
        }
        return state, jsonable(result)

    def _fit(self, st, key, model, data, rows, **kwargs):
        """Train one stage model, recording its cost, best selection metrics and rows trained on."""
        st.cost[key] = Cost(self.ctx.memory)
        with st.cost[key].measure():
            st.best[key] = fit(self.ctx, model, data, st.selection, self.work_dir, **kwargs)
        st.models[key], st.trained_on[key] = model, rows

    def _train_models(self, st, prev):
        """Full-s (fresh, every row seen), Fine-tune (previous Fine-tune, new rows), DIET's model
        (previous DIET model, new rows + memory replay). Stage 1: one model is all three. Full-s records
        its epochs when FOSTER distils from it."""
        self._step("stage models")
        ctx, plan = self.ctx, self.plan
        trajectory = None
        if self._wants("foster"):
            trajectory = os.path.join(self.work_dir, "anchors")
            shutil.rmtree(trajectory, ignore_errors=True)
        if st.index == 0:  # Full-1, Fine-tune-1 and DIET's model-1 are the same training: done once
            model = self.new_model()
            trainer = trajectory_trainer(ctx, model, trajectory) if trajectory else None
            self._fit(st, "shared", model, st.new_data, len(st.rows), trainer=trainer)
            for key in ("full", "finetune", "diet"):
                st.models[key], st.cost[key], st.best[key] = model, st.cost["shared"], st.best["shared"]
                st.trained_on[key] = len(st.rows)
            st.trajectory = trainer
            return
        if self._wants("full", "foster"):
            every = plan.rows_until(st.index)
            model = self.new_model()
            st.trajectory = trajectory_trainer(ctx, model, trajectory) if trajectory else None
            self._fit(st, "full", model, plan.train_loader(every), len(every), trainer=st.trajectory)
        if self._wants("finetune", "reservoir_kd"):
            self._fit(st, "finetune", self.new_model(prev["models"]["finetune"]), st.new_data, len(st.rows))
        memory = Memory.from_state(prev["memory"])
        st.replay_weight = float(self.config["diet_replay_weight"]) * st.seen_before / max(1, len(st.rows))
        self._fit(st, "diet", self.new_model(prev["models"]["diet"]), st.new_data, len(st.rows) + len(memory),
                  replay=memory.training_set(self.n_items, self.item_text), weight=st.replay_weight)

    def _update_memory(self, st, prev):
        """Stage 1: the M most influential windows; later: influence-aware addressing (:mod:`.addressing`).
        Returns ``(memory, record)``; the record says what was chosen or replaced and why."""
        self._step("DIET memory (influence)")
        model = st.models["diet"]
        st.cost["memory"] = Cost(self.ctx.memory)
        with st.cost["memory"].measure():
            names = influence_parameters(model)
            toward_next = query_gradient(model, st.selection.dataset, names)
            scores, new_gradient = window_scores(model, st.cand_windows, toward_next, names)

            def label(picks):
                return self.labelled(model, st, picks)

            # equal storage with M random windows in expectation (Reservoir-KD's): see addressing
            size = self.size_at(st.index)
            budget = int(round(size * self.plan.mean_trained_positions(st.index)))
            sizes = trained_positions(st.cand_windows)
            if st.index == 0:
                picks = within_budget(torch.argsort(scores, descending=True, stable=True), sizes, size, budget)
                memory = label(picks)
                record = {"initial_rows": st.cand_rows[picks].tolist(), "initial_scores": scores[picks].tolist()}
            else:
                previous = Memory.from_state(prev["memory"])
                if new_gradient is None:  # an empty stage: nothing to align with, nothing replaced
                    memory_scores = torch.zeros(len(previous))
                else:
                    memory_scores = labelled_scores(model, previous.windows,
                                                    previous.target_log_probs(self.n_items, self.item_text),
                                                    new_gradient, names)
                generator = torch.Generator().manual_seed(self.seed * 100 + st.number)
                fraction = update_fraction(self.config["diet_update_fraction"], len(st.rows),
                                           st.seen_before + len(st.rows))
                # a growing memory (diet_memory_share): the entries it had share the budget pro rata
                grow = size - len(previous)
                kept_budget = budget if grow <= 0 else int(round(budget * len(previous) / size))
                memory, record = address(previous, memory_scores, st.cand_rows, scores, label, fraction,
                                         self.config["diet_addressing"], generator, sizes, kept_budget)
                record["update_fraction"] = fraction
                if grow > 0:
                    memory, record["added_rows"], record["added_scores"] = self._grow(
                        memory, st, scores, sizes, grow, budget, label)
        return memory, {**record, "parameters": names, "position_budget": budget,
                        "labelled_positions": int(trained_positions(memory.windows).sum())}

    @staticmethod
    def _grow(memory, st, scores, sizes, grow, budget, label):
        """``memory`` with up to ``grow`` more entries: the most influential new windows not in it that fit
        what it leaves of the position budget."""
        in_memory = set(memory.rows.tolist())
        free = torch.tensor([r not in in_memory for r in st.cand_rows.tolist()], dtype=torch.bool)
        order = torch.argsort(scores, descending=True, stable=True)
        order = order[free[order]]
        left = budget - int(trained_positions(memory.windows).sum())
        picks = within_budget(order, sizes, min(grow, len(order)), left)
        if len(picks) == 0:
            return memory, [], []
        return memory.extended(label(picks)), st.cand_rows[picks].tolist(), scores[picks].tolist()

    def _refine(self, st, memory):
        """DIET's memory with its labels refined on the stage's training windows (:mod:`.refine`)."""
        self._step("refine labels")
        if len(st.cand_windows) == 0:  # an empty stage: no training rows to refine toward
            return memory, {"steps": 0}
        config = self.config
        st.cost["refine"] = Cost(self.ctx.memory)
        with st.cost["refine"].measure():
            generator = torch.Generator().manual_seed(self.seed * 100 + 70 + st.number)
            refined, record = refine_labels(
                self.ctx.new_model(self.seed + 7000 + st.number), memory, st.cand_windows, self.refine_steps,
                float(config["diet_refine_lr"]), float(config["distilled_lr"]),
                int(config["distilled_batch_size"]), generator, float(config["distilled_weight_decay"] or 0),
                desc=f"stage {st.number}: refine labels")
        return refined, {**record, "seconds": st.cost["refine"].seconds}

    def _update_reservoir(self, st, prev):
        """Reservoir-KD: Algorithm R over the stream; the windows written get the Fine-tune model's
        labels. Returns ``(reservoir, filled, seen)``."""
        self._step("reservoir")
        reservoir, filled, seen = None, 0, 0
        st.cost["reservoir"] = Cost(self.ctx.memory)
        with st.cost["reservoir"].measure():
            if prev is not None:
                reservoir = Memory.from_state(prev["reservoir"])
                filled, seen = int(prev["reservoir_filled"]), int(prev["reservoir_seen"])
            generator = torch.Generator().manual_seed(self.seed * 100 + 50 + st.number)
            if self.share:  # a uniform sample of the stream at the memory's size of this stage
                size = self.size_at(st.index)
                rng = np.random.default_rng(self.seed * 100 + 50 + st.number)
                keep, picks = reservoir_resize(0 if reservoir is None else len(reservoir), seen, len(st.cand_rows),
                                               size, rng)
                seen, filled = seen + len(st.cand_rows), size
                if reservoir is not None:
                    reservoir = reservoir.select(keep)
                written = self.labelled(st.models["finetune"], st, picks) if len(picks) else None
                reservoir = written if reservoir is None else reservoir.extended(written)
                return reservoir, filled, seen
            slots, picks, filled, seen = reservoir_update(self.size, filled, seen, len(st.cand_rows), generator)
            if len(picks):
                written = self.labelled(st.models["finetune"], st, picks)
                reservoir = written if reservoir is None else reservoir.replaced(slots, written,
                                                                                 torch.arange(len(picks)))
        return reservoir, filled, seen

    def _distil_foster(self, st):
        """FOSTER from scratch on every row seen, taught by Full-s (:mod:`.foster_baseline`)."""
        self._step("FOSTER (from scratch)")
        st.cost["foster"] = Cost(self.ctx.memory)
        with st.cost["foster"].measure():
            soft = distil_seen(self.ctx, self.plan, st.index, st.models["full"], st.trajectory,
                               self.size_at(st.index), self.work_dir)
        return soft

    def _judge(self, st, memory, reservoir, foster, refined=None):
        """Every method's row: its numbers on the report half (and the test split after the last
        stage) and its costs (:meth:`_cost_fields`)."""
        ctx, targets_seen = self.ctx, self.plan.targets_seen(st.index)
        cost, methods = st.cost, {}

        def model_row(key, model_key, update):
            self._step(f"judge {self.labels[key]}")
            judge = Cost(ctx.memory)
            with judge.measure():
                best = st.best.get(model_key)
                row = {"kind": "model", "trained_on_rows": st.trained_on[model_key],
                       "selection": metric_subset(best) if best else None,
                       "report": metric_subset(evaluate(ctx, st.models[model_key], st.report))}
                if st.test is not None:
                    row["test"] = metric_subset(evaluate(ctx, st.models[model_key], st.test))
            methods[self.labels[key]] = {**row, **self._cost_fields(update, judge, update.seconds)}

        def set_row(key, training_set, update, size_fields):
            self._step(f"judge {self.labels[key]}")
            judge = Cost(ctx.memory)
            with judge.measure():
                row = judge_set(ctx, training_set, st.selection, st.report, st.test,
                                desc=f"stage {st.number}: {self.labels[key]}")
            one_model = judge.seconds / len(row["per_seed"])
            methods[self.labels[key]] = {"kind": "set", **size_fields, **row, "seconds_per_fresh_model": one_model,
                                         **self._cost_fields(update, judge, update.seconds + one_model)}

        def memory_fields(kept):
            return {"windows": len(kept), "labelled_positions": kept.n_labels(),
                    "size_share": kept.n_labels() / max(1, targets_seen),
                    "label_storage": kept.storage, "label_bytes": stored_bytes(kept.stored())}

        set_row("diet", memory.training_set(self.n_items, self.item_text), cost["diet"].plus(cost["memory"]),
                memory_fields(memory))
        if refined is not None:
            set_row("diet_refined", refined.training_set(self.n_items, self.item_text),
                    cost["diet"].plus(cost["memory"], *([cost["refine"]] if "refine" in cost else [])),
                    memory_fields(refined))
        model_row("diet_model", "diet", cost["diet"])
        if self._wants("full"):
            model_row("full", "full", cost["full"])
        if self._wants("finetune"):
            model_row("finetune", "finetune", cost["finetune"])
        if reservoir is not None:
            set_row("reservoir_kd", reservoir[0].training_set(self.n_items, self.item_text),
                    cost["finetune"].plus(cost["reservoir"]),
                    memory_fields(reservoir[0]))
        if foster is not None:
            positions = int(foster.log_probs.shape[0] * (foster.log_probs.shape[1] - 1))
            set_row("foster", foster, cost["full"].plus(cost["foster"]),
                    {"windows": len(foster), "labelled_positions": positions,
                     "size_share": positions / max(1, targets_seen)})
        return methods

    def _rank(self, st, memory, reservoir, refined, methods):
        """The architecture-ranking check (:mod:`.ranking`): every model of ``diet_rank_models`` trained
        on each memory and on every row seen (Full-s), judged on the report half. The run's own model
        reuses what the stage already trained (Full-s, and each set's first evaluation seed)."""
        ctx, run_model = self.ctx, self.config["model"]
        sets = {self.labels["diet"]: memory}
        if refined is not None:
            sets[self.labels["diet_refined"]] = refined
        if reservoir is not None:
            sets[self.labels["reservoir_kd"]] = reservoir[0]

        def numbers(report, seconds, reused):
            return {"ndcg@10": report["ndcg@10"], "recall@10": report["recall@10"], "seconds": seconds,
                    "reused": reused}

        full, loader = {}, None
        for name in self.rank_models:
            self._step(f"ranking: {name} on Full-s")
            reuse = methods.get("Full-s") if name == run_model else None
            if reuse is not None:
                full[name] = numbers(reuse["report"], reuse["update_seconds"] + reuse["judge_seconds"], True)
                continue
            view = model_context(ctx, name, self._rank_configs)
            loader = loader or self.plan.train_loader(self.plan.rows_until(st.index))
            cost = Cost(ctx.memory)
            with cost.measure():
                model = view.new_model(self.seed)
                fit(view, model, loader, st.selection, self.work_dir)
                report = evaluate(view, model, st.report)
            full[name] = numbers(report, cost.seconds, False)
        rows = {}
        for label, kept in sets.items():
            training_set = kept.training_set(self.n_items, self.item_text)
            per_model = {}
            for name in self.rank_models:
                self._step(f"ranking: {name} on {label}")
                if name == run_model:
                    row = methods[label]
                    per_model[name] = numbers(row["per_seed"][0]["report"], row["seconds_per_fresh_model"], True)
                    continue
                view = model_context(ctx.for_stage(st.selection, st.report), name, self._rank_configs)
                cost = Cost(ctx.memory)
                with cost.measure():
                    _, report, _ = train_and_select(view, training_set, int(self.seed) + 1000,
                                                    desc=f"stage {st.number}: {name} on {label}")
                per_model[name] = numbers(report, cost.seconds, False)
            rows[label] = rank_summary(per_model, full)
        return {"models": list(self.rank_models), "full": full, "sets": rows}

    @staticmethod
    def _cost_fields(update, judge, stage_seconds):
        """``update_seconds``: keeping the method current this stage (training its model; for a set,
        the model that labels it plus the memory's update and labels); ``stage_seconds``: what a
        model of the stage costs with the method (a model: its training; a set: the update plus one
        fresh model trained on the set); ``judge_seconds``: scoring it (a set: every evaluation
        seed's fresh model); ``peak_mem_mb``: the larger peak of update and judging."""
        return {"update_seconds": update.seconds, "stage_seconds": stage_seconds, "judge_seconds": judge.seconds,
                "peak_mem_mb": round(max(update.peak_mb, judge.peak_mb), 1)}

    # ----- the whole run -----
    def run(self):
        ctx, plan = self.ctx, self.plan
        plan.check(self.size_at(0))  # before anything is trained or written
        store = StageStore(ctx.output_dir, fingerprint(self.config, ctx.text_encoder))
        done = store.finished()
        stages = [store.load_result(stage) for stage in done]
        state = store.load_state(done[-1]) if done else None
        if done:
            ctx.logger.info(f"DIET: continuing after stage {done[-1]} from {store.folder}")
        labels = [self.labels[key] for key in ("diet", "diet_model", *self.baselines)]
        banner(f"DIET: {plan.n_stages} time stages of the training period",
               f"rows per stage: {', '.join(str(len(plan.rows(s))) for s in range(plan.n_stages))}; each stage is "
               "judged on the period after it (report half; the selection half picks best states), the test split "
               "once at the end.",
               f"rows: {', '.join(labels)}; memory addressing: {self.config['diet_addressing']}.",
               f"each finished stage is kept in {store.folder}"
               + (f"; continuing after stage {done[-1]}." if done else "; a rerun continues after the last one."))
        stop_after = int(self.config["diet_stop_after"] or 0)
        start = time.perf_counter()
        peak = 0.0
        progress = tqdm(range(len(done), plan.n_stages), desc="DIET stages", total=plan.n_stages, initial=len(done))
        for s in progress:
            state, result = self.stage(s, state, progress)
            self._accumulate(result, stages[-1] if stages else None)
            store.save(s + 1, state, result)
            state, result = store.load_state(s + 1), store.load_result(s + 1)  # what a resumed run reads
            stages.append(result)
            scores = ", ".join(f"{label} {row['report']['ndcg@10']:.4f}" for label, row in result["methods"].items())
            ctx.logger.info(f"DIET stage {s + 1}/{plan.n_stages}, NDCG@10 on the {result['judged_on']} (report half): "
                            f"{scores}")
            peak = max([peak] + [row["peak_mem_mb"] for row in result["methods"].values()])
            if stop_after and s + 1 == stop_after and s + 1 < plan.n_stages:
                break
        progress.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)  # RecBole's best-epoch checkpoints, already loaded
        ctx.timings["diet"] = time.perf_counter() - start
        ctx.memory.peaks["diet"] = peak
        plot = draw_stages(stages, os.path.join(ctx.output_dir, "stages.png"))
        outcome = {"stages": stages, "stages_plot": plot, "diet": self._settings(),
                   "resumed_after_stage": done[-1] if done else None}
        if len(stages) < plan.n_stages:
            return {**outcome, **self._stopped(stages[-1])}
        return {**outcome, **self._final(stages[-1], Memory.from_state(state["memory"]))}

    @staticmethod
    def _accumulate(result, previous):
        for label, row in result["methods"].items():
            before = previous["methods"][label]["cumulative_seconds"] if previous else 0.0
            row["cumulative_seconds"] = before + row["stage_seconds"]

    def _settings(self):
        return {k: self.config[k] for k in self.config.final_config_dict if k.startswith("diet_")}

    def _stopped(self, last):
        number = last["stage"]
        self.ctx.logger.info(f"DIET: stopped after stage {number} (diet_stop_after); rerun to continue")
        table = {f"{label} (stage {number}, report half)": row["report"] for label, row in last["methods"].items()}
        return {"stopped_after_stage": number, "valid": {}, "test": {}, "table": table}

    def _final(self, last, memory):
        """The test numbers of the last stage, and the final memory saved as a set file."""
        ctx = self.ctx
        token = ctx.dataset.field2id_token[ctx.dataset.uid_field]
        users = [token[u] for u in memory.users.tolist()]
        header = {**common_header(ctx, len(memory)), "method": ctx.config["method"], "label_storage": memory.storage,
                  "diet_stages": self.plan.n_stages}
        path = save_windows(os.path.join(ctx.output_dir, "set.pt"), memory.windows, header, memory.stored())
        diet = last["methods"][self.labels["diet"]]
        table = {"Full": ctx.real_run.manifest["test"],
                 **{label: row["test"] for label, row in last["methods"].items()}}
        return {"n_sequences": len(memory), "valid": diet["selection"], "test": diet["test"], "table": table,
                "label_storage": memory.storage,
                "selected_users": users, **describe_set(ctx, path, needs_teacher=False)}

