"""--method=diet (issue 17): time stages, memory, addressing, reservoir, resumable stage loop."""

import json
import math
import os
import sys

import numpy as np
import pytest
import torch
from tqdm import tqdm

from recbole_foster.cli import CLIError
from recbole_foster.coreset.signals import _per_sample_grads, looped_grads, sequence_losses
from recbole_foster.diet.addressing import address, n_replaced, plan_update, update_fraction, within_budget
from recbole_foster.diet.influence import (
    _per_sample_labelled_grads, influence_parameters, labelled_scores, labelled_window_losses, window_scores,
)
from recbole_foster.diet.memory import Memory, memory_code_rank, trained_positions
from recbole_foster.diet.pipeline import DietRun
from recbole_foster.diet.refine import memory_log_probs, refine_labels, soft_cross_entropy
from recbole_foster.diet.reservoir import reservoir_resize, reservoir_update
from recbole_foster.diet.stages import StagePlan, stage_bounds, stage_of, windows_of
from recbole_foster.diet.state import StageStore
from recbole_foster.evaluation import selection_data
from recbole_foster.labels import stored_bytes
from recbole_foster.run import main, prepare, run
from tests.toy_data import WORDS, as_argv, assert_one_error_line, toy_options

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import diet as diet_benchmark  # noqa: E402  (benchmarks/diet.py)

MAX_LEN = 5  # short windows: each user has several, and histories cross stage boundaries


def make_stream_dataset(root, name="stream", n_users=60, n_items=30, seed=0):
    """Users active at interleaved times over 0..9999 (unlike tests/toy_data.py, where users follow
    each other in time), each walking item ids in a run (i -> i + 1), so models learn quickly."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(1, n_users + 1):
            times = np.sort(rng.choice(np.arange(10000), size=int(rng.integers(8, 25)), replace=False))
            start = int(rng.integers(1, n_items + 1))
            for k, t in enumerate(times):
                f.write(f"u{u}\ti{(start + k - 1) % n_items + 1}\t{int(t)}\n")
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        for i in range(1, n_items + 1):
            f.write(f"i{i}\t{' '.join(rng.choice(WORDS, size=3))} {i}\n")
    return root


@pytest.fixture(scope="module")
def stream_root(tmp_path_factory):
    return make_stream_dataset(str(tmp_path_factory.mktemp("stream")))


def diet_options(root, bert_dir, tmp_path, **overrides):
    options = {"dataset": "stream", "method": "diet", "eval_protocol": "global_temporal",
               "MAX_ITEM_LIST_LENGTH": MAX_LEN, "diet_memory_size": 4, "diet_epochs": 2, "label_topk": 5}
    return toy_options(root, bert_dir, tmp_path, **{**options, **overrides})


@pytest.fixture(scope="module")
def ctx(stream_root, tiny_bert_dir, tmp_path_factory):
    """A prepared run (config, data split, text embeddings) on the stream dataset; nothing trained."""
    tmp = tmp_path_factory.mktemp("diet_ctx")
    return prepare(diet_options(stream_root, tiny_bert_dir, tmp))


def decoded_rows(dataset, rows):
    feat = dataset.inter_feat
    times = feat[dataset.time_field][torch.as_tensor(rows, dtype=torch.long)].double()
    lengths = feat[dataset.item_list_length_field][torch.as_tensor(rows, dtype=torch.long)]
    hist_times = feat[dataset.time_field + dataset.config["LIST_SUFFIX"]][torch.as_tensor(rows, dtype=torch.long)]
    return times, [h[:n].double() for h, n in zip(hist_times, lengths)]


# ----- stages -----
def test_stage_split_never_leaks_later_interactions(ctx):
    plan = StagePlan(ctx)
    train = ctx.train_data.dataset
    assert plan.n_stages == 4 and plan.ends[-1] == ctx.dataset.cut_points[0]
    all_rows = np.sort(np.concatenate(plan.train_rows))
    assert np.array_equal(all_rows, np.arange(len(train)))  # the stages partition the run's training rows
    sizes = [len(plan.rows(s)) for s in range(plan.n_stages)]
    assert max(sizes) - min(sizes) <= 2  # quantiles: equal numbers of rows (up to ties)
    crossing = 0
    for s in range(plan.n_stages):
        start = -math.inf if s == 0 else plan.ends[s - 1]
        end = plan.ends[s]
        # what each model of the stage trains on: the stage's rows, and (Full-s) every row up to it
        for rows in (plan.rows(s), plan.rows_until(s)):
            loader = plan.train_loader(rows)
            times, hist = decoded_rows(loader.dataset, np.arange(len(loader.dataset)))
            assert len(times) == len(rows)
            assert bool((times < end).all())
            assert all(bool((h <= t).all()) for h, t in zip(hist, times))
        times, hist = decoded_rows(train, plan.rows(s))
        assert bool((times >= start).all()) and bool((times < end).all())
        crossing += sum(bool((h < start).any()) for h in hist)
        # judged on the next slice (or the validation split), never on what it trained on
        dataset, rows = plan.period(s)
        period_times, _ = decoded_rows(dataset, rows)
        assert bool((period_times >= end).all())
        if s + 1 < plan.n_stages:
            assert bool((period_times < plan.ends[s + 1]).all())
        else:
            assert dataset is ctx.valid_data.dataset and len(rows) == len(dataset)
    assert crossing > 0  # histories do reach back into earlier stages (allowed: a row is a prefix)


def test_stage_bounds_are_quantiles_and_ties_can_empty_a_stage():
    times = np.arange(100, dtype=float)
    bounds = stage_bounds(times, 4)
    assert np.allclose(bounds, np.quantile(times, [0.25, 0.5, 0.75]))
    assert np.bincount(stage_of(times, bounds)).tolist() == [25, 25, 25, 25]
    tied = np.array([1.0] * 60 + list(range(2, 42)), dtype=float)
    counts = np.bincount(stage_of(tied, stage_bounds(tied, 4)), minlength=4)
    assert counts.sum() == 100 and 0 in counts.tolist()  # half-open slices: a tie cannot be cut


def test_windows_are_history_plus_target_last_max_len_items(ctx):
    plan = StagePlan(ctx)
    train = ctx.train_data.dataset
    rows = plan.rows(1)
    _, windows = windows_of(train, rows, MAX_LEN)
    feat = train.inter_feat
    for row, window in zip(rows.tolist(), windows):
        n = int(feat[train.item_list_length_field][row])
        items = feat[train.item_id_list_field][row, :n].tolist() + [int(feat[train.iid_field][row])]
        expected = items[-MAX_LEN:] + [0] * (MAX_LEN - len(items[-MAX_LEN:]))
        assert window.tolist() == expected


def test_selection_and_report_halves_split_each_period_by_user(ctx):
    plan = StagePlan(ctx)
    for s in range(plan.n_stages):
        dataset, rows = plan.period(s)
        selection, report = plan.halves_of(s)
        assert np.array_equal(np.sort(np.concatenate([selection, report])), np.sort(rows))
        uid = dataset.inter_feat[dataset.uid_field]
        assert not set(uid[selection].tolist()) & set(uid[report].tolist())
        assert len(selection) and len(report)
    sel_loader, report_loader = plan.loaders(0)
    view = ctx.for_stage(sel_loader, report_loader)
    assert selection_data(view) is sel_loader and view.test_data is report_loader  # what evaluation reads
    assert ctx.test_data is not report_loader and view.built_models == []  # a copy: the run's context is unchanged
    view.new_model(3)
    assert len(view.built_models) == 1
    with pytest.raises(AttributeError):
        view.anything_else = 1  # declared fields only


# ----- addressing -----
@pytest.mark.parametrize("size,fraction", [(4, 0.25), (20, 0.25), (10, 0.25), (10, 0.5), (7, 1.0), (5, 0.0)])
def test_addressing_replaces_round_fraction_lowest_scoring_entries(size, fraction):
    generator = torch.Generator().manual_seed(size)
    scores = torch.randn(size, generator=generator)
    candidates = torch.randn(30, generator=generator)
    slots, picks = plan_update(scores, candidates, fraction, "influence")
    count = round(fraction * size)
    assert len(slots) == len(picks) == count == n_replaced(size, fraction, "influence")
    assert set(slots.tolist()) == set(torch.argsort(scores)[:count].tolist())  # the lowest-scoring
    assert set(picks.tolist()) == set(torch.argsort(candidates, descending=True)[:count].tolist())
    everything, _ = plan_update(scores, candidates, fraction, "all")
    assert sorted(everything.tolist()) == list(range(size))
    drawn, drawn_picks = plan_update(scores, candidates, fraction, "random", torch.Generator().manual_seed(1))
    assert len(drawn) == count and len(set(drawn.tolist())) == count and torch.equal(drawn_picks, picks)


def test_stream_update_fraction_is_the_new_stages_share_of_the_rows_seen():
    assert update_fraction("stream", 25, 100) == 0.25 and update_fraction("stream", 0, 0) == 0.0
    assert update_fraction(0.5, 25, 100) == 0.5 and update_fraction(1, 25, 100) == 1.0
    # a reservoir of 20 over 300 rows seen, 100 of them new, holds 20 x 100 / 300 new windows in expectation
    assert n_replaced(20, update_fraction("stream", 100, 300), "influence") == round(20 / 3)


def test_addressing_never_takes_a_window_twice_nor_more_than_there_are():
    scores, candidates = torch.tensor([0.3, -1.0, 0.2, 0.1]), torch.tensor([5.0, 4.0, 3.0])
    slots, picks = plan_update(scores, candidates, 1.0, "all", excluded=torch.tensor([True, False, False]))
    assert slots.tolist() == [1, 3] and picks.tolist() == [1, 2]  # lowest entries <- best candidates
    slots, picks = plan_update(scores, candidates[:0], 0.5, "influence")
    assert len(slots) == len(picks) == 0


def test_a_position_budget_keeps_the_best_windows_that_fit():
    order, sizes = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([19, 19, 5, 1, 2])
    assert within_budget(order, sizes, 3, None).tolist() == [0, 1, 2]
    # budget 24: 19 fits (2 slots still need >= 1 each); then 5 would leave nothing for the last slot
    assert within_budget(order, sizes, 3, 24).tolist() == [0, 3, 4]
    assert within_budget(order, sizes, 3, 25).tolist() == [0, 2, 3]
    assert within_budget(order, sizes, 2, 3).tolist() == [3, 4]  # only the small ones fit
    # a full set is found whenever one fits (the reserve is over the candidates still to come)
    assert within_budget(order, torch.tensor([1, 3, 3, 2, 2]), 3, 5).tolist() == [0, 3, 4]
    # addressing: what the kept entries hold counts against the budget; unfilled slots stay
    memory_scores, memory_sizes = torch.tensor([0.5, -1.0, 0.2]), torch.tensor([10, 3, 4])
    slots, picks = plan_update(memory_scores, torch.tensor([3.0, 2.0, 1.0]), 0.67, "influence",
                               memory_sizes=memory_sizes, candidate_sizes=torch.tensor([9, 2, 1]), budget=16)
    assert slots.tolist() == [1, 2] and picks.tolist() == [1, 2]  # 10 kept: 6 left, 9 does not fit
    slots, picks = plan_update(memory_scores, torch.tensor([3.0]), 0.34, "influence",
                               memory_sizes=memory_sizes, candidate_sizes=torch.tensor([9]), budget=16)
    assert len(slots) == len(picks) == 0  # 14 kept, 2 left: nothing fits, nothing is replaced
    # a slot that no pick fills keeps its entry, and its positions count: never over the budget
    memory_sizes = torch.tensor([10, 1, 4])
    slots, picks = plan_update(memory_scores, torch.tensor([3.0, 2.0]), 0.67, "influence",
                               memory_sizes=memory_sizes, candidate_sizes=torch.tensor([3, 10]), budget=16)
    assert len(slots) == len(picks) == 0  # replacing the 1-position entry by 3 positions would hold 17
    slots, picks = plan_update(memory_scores, torch.tensor([3.0, 2.0]), 0.67, "influence",
                               memory_sizes=memory_sizes, candidate_sizes=torch.tensor([2, 10]), budget=16)
    assert slots.tolist() == [1] and picks.tolist() == [0]  # one of the two slots can be refilled: 10 + 4 + 2
    assert int(memory_sizes.sum() - memory_sizes[slots].sum()) + 2 <= 16


def labelled_memory(ctx, model, windows, stage=1):
    n = len(windows)
    return Memory.labelled(model, windows, torch.arange(n), torch.arange(n) + 100, stage, 5)


def test_memory_labels_are_stored_topk_and_replacing_copies_whole_entries(ctx):
    model = ctx.new_model(1)
    plan = StagePlan(ctx)
    rows, users, windows = plan.windows(0)
    memory = Memory.labelled(model, windows[:4], users[:4], torch.as_tensor(rows[:4]), 1, 5)
    stored = memory.stored()
    assert stored["label_topk_probs"].dtype == torch.float16 and stored["label_topk_probs"].shape[1] == 5
    log_probs = memory.target_log_probs(ctx.dataset.item_num)
    mask = memory.label_mask
    assert torch.allclose(log_probs[mask].exp().sum(-1), torch.ones(int(mask.sum())), atol=1e-3)
    assert memory.training_set(ctx.dataset.item_num).loss(model, torch.arange(4)).item() >= -1e-4
    other = Memory.labelled(ctx.new_model(2), windows[4:8], users[4:8], torch.as_tensor(rows[4:8]), 2, 5)
    mixed = memory.replaced(torch.tensor([1, 3]), other, torch.tensor([0, 2]))
    for name in ("windows", "users", "rows", "added", "topk_probs", "topk_items"):
        kept, new, theirs = (getattr(m, name) if hasattr(m, name) else m.labels[name] for m in (mixed, memory, other))
        assert torch.equal(kept[[0, 2]], new[[0, 2]])
        assert torch.equal(kept[[1, 3]], theirs[[0, 2]])
    assert Memory.from_state(mixed.state()).equals(mixed)


def test_text_code_memory_keeps_each_stages_decoder_while_an_entry_of_that_stage_is_kept(ctx):
    plan = StagePlan(ctx)
    rows, users, windows = plan.windows(0)
    text, n_items = ctx.dataset.item_text_embeddings, ctx.dataset.item_num
    size, max_len, k = 4, windows.size(1), 5
    rank = memory_code_rank(size, max_len, text.size(1), k, n_stages=2)
    first = Memory.labelled(ctx.new_model(1), windows[:4], users[:4], torch.as_tensor(rows[:4]), 1, k, "text_code",
                            text, {"rank": rank})
    second = Memory.labelled(ctx.new_model(2), windows[4:8], users[4:8], torch.as_tensor(rows[4:8]), 2, k,
                             "text_code", text, {"rank": rank})
    assert first.storage == "text_code" and set(first.decoders) == {1} and first.labels["codes"].dtype == torch.float16
    topk = Memory.labelled(ctx.new_model(1), windows[:4], users[:4], torch.as_tensor(rows[:4]), 1, k)
    full_memory_topk_bytes = size * (max_len - 1) * k * (2 + 4)
    positions = size * (max_len - 1)
    assert 2 * (positions * rank + 2 * rank * text.size(1)) + positions <= full_memory_topk_bytes
    mixed = first.replaced(torch.tensor([1, 3]), second, torch.tensor([0, 2]))
    assert set(mixed.decoders) == {1, 2}
    # each entry is decoded with the decoder of the stage that wrote it
    expected = torch.cat([first.target_log_probs(n_items, text)[[0, 2]], second.target_log_probs(n_items, text)[[0, 2]]])
    got = mixed.target_log_probs(n_items, text)[[0, 2, 1, 3]]
    mask = mixed.label_mask[[0, 2, 1, 3]]
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)
    assert not torch.allclose(first.target_log_probs(n_items, text)[mask[:4]], topk.target_log_probs(n_items)[mask[:4]])
    gone = mixed.replaced(torch.tensor([0, 2]), second, torch.tensor([1, 3]))
    assert set(gone.decoders) == {2}  # no entry of stage 1 left: its decoder goes too
    assert Memory.from_state(mixed.state()).equals(mixed)
    with pytest.raises(ValueError, match="item text embeddings"):
        mixed.target_log_probs(n_items)


def test_per_sample_gradients_with_stored_labels_match_a_loop(ctx):
    model = ctx.new_model(3)
    plan = StagePlan(ctx)
    _, _, windows = plan.windows(0)
    memory = labelled_memory(ctx, ctx.new_model(4), windows[:5])
    targets = memory.target_log_probs(ctx.dataset.item_num)
    names = influence_parameters(model)
    assert names == ["item_embedding.projection.weight"]
    model.eval()
    grads = _per_sample_labelled_grads(model, memory.windows, targets, names)[names[0]]
    param = dict(model.named_parameters())[names[0]]
    for i in range(5):
        loss = labelled_window_losses(model, memory.windows[i:i + 1], targets[i:i + 1])[0]
        expected, = torch.autograd.grad(loss, param)
        assert torch.allclose(grads[i], expected, atol=1e-6)
    direction = torch.randn(param.numel(), generator=torch.Generator().manual_seed(0))
    # a window is scored by its summed loss: mean-loss gradient x trained positions
    positions = trained_positions(memory.windows).float()
    assert len(set(positions.tolist())) > 1  # windows of different lengths, or the weighting is untested
    scores = labelled_scores(model, memory.windows, targets, direction, names, batch_size=2)
    assert torch.allclose(scores, (grads.flatten(1) @ direction) * positions, atol=1e-5)
    hard_scores, gradient = window_scores(model, windows[:6], direction, names, batch_size=4)
    hard_sum = [torch.autograd.grad(sequence_losses(model, windows[i:i + 1])[0] * trained_positions(windows[i:i + 1])[0],
                                    param)[0].flatten() for i in range(6)]
    assert torch.allclose(hard_scores, torch.stack(hard_sum) @ direction, atol=1e-5)
    # the returned gradient is that of the mean loss per position over the windows
    assert torch.allclose(gradient, torch.stack(hard_sum).sum(0) / trained_positions(windows[:6]).sum(), atol=1e-6)
    # the loop that recurrent models (vmap cannot batch nn.GRU) use gives the same gradients
    looped = looped_grads(model, labelled_window_losses, names, memory.windows, targets)
    assert torch.allclose(looped, grads.flatten(1), atol=1e-6)
    hard = _per_sample_grads(model, windows[:6], names)[names[0]].flatten(1)
    assert torch.allclose(looped_grads(model, sequence_losses, names, windows[:6]), hard, atol=1e-6)


def test_an_empty_stage_leaves_the_memory_unchanged(ctx, tmp_path):
    """Stage 2 with no rows: nothing to train on, nothing to align with, no entry rewritten."""
    diet = DietRun(ctx)
    diet.work_dir = str(tmp_path / "work")
    diet.plan.train_rows[1] = diet.plan.train_rows[1][:0]
    progress = tqdm(disable=True)
    state1, _ = diet.stage(0, None, progress)
    state2, result2 = diet.stage(1, state1, progress)
    assert Memory.from_state(state2["memory"]).equals(Memory.from_state(state1["memory"]))
    assert Memory.from_state(state2["reservoir"]).equals(Memory.from_state(state1["reservoir"]))
    assert result2["memory"]["replaced_slots"] == [] and result2["train_rows"] == 0
    for key in ("diet", "finetune"):  # no new data: the continual models are unchanged too
        assert all(torch.equal(state2["models"][key][k], state1["models"][key][k]) for k in state1["models"][key])
    # and the unit: addressing with no candidates is the identity
    memory = Memory.from_state(state1["memory"])
    same, record = address(memory, torch.randn(len(memory)), torch.zeros(0, dtype=torch.long), torch.zeros(0),
                           lambda picks: pytest.fail("nothing to label"), 0.5, "influence")
    assert same.equals(memory) and record["replaced_slots"] == []


# ----- reservoir -----
def test_reservoir_fills_first_then_keeps_a_uniform_sample():
    slots, picks, filled, seen = reservoir_update(5, 0, 0, 3, torch.Generator().manual_seed(0))
    assert slots.tolist() == [0, 1, 2] and picks.tolist() == [0, 1, 2] and (filled, seen) == (3, 3)
    counts = torch.zeros(40)
    for trial in range(1500):
        holder = list(range(5))  # the first 5 of 40 items
        generator = torch.Generator().manual_seed(trial)
        filled, seen = 5, 5
        for chunk in (15, 20):  # two stages of the stream
            slots, picks, filled, seen = reservoir_update(5, filled, seen, chunk, generator)
            for slot, pick in zip(slots.tolist(), picks.tolist()):
                holder[slot] = seen - chunk + pick
        assert len(set(holder)) == 5
        counts[holder] += 1
    assert torch.allclose(counts / 1500, torch.full((40,), 5 / 40), atol=0.04)  # each item with p = M / n


# ----- state -----
def test_a_stage_of_another_config_is_refused(tmp_path):
    store = StageStore(str(tmp_path), "key-a")
    store.save(1, {"x": torch.zeros(2)}, {"stage": 1})
    assert store.finished() == [1] and torch.equal(store.load_state(1)["x"], torch.zeros(2))
    assert not [name for name in os.listdir(tmp_path / "stages") if name.startswith(".")]  # no temporary left
    with pytest.raises(CLIError, match="another config"):
        StageStore(str(tmp_path), "key-b").finished()


# ----- bad input: exit 2, one line, nothing written -----
BAD = {
    "loo protocol": ({"eval_protocol": "loo"}, r"--method=diet .* needs --eval_protocol=global_temporal"),
    "one stage": ({"diet_stages": "1"}, r"--diet_stages must be at least 2"),
    "zero stages": ({"diet_stages": "0"}, r"--diet_stages must be a positive integer"),
    "memory larger than the candidates": (
        {"diet_memory_size": "500"}, r"--diet_memory_size=500 but the first of 4 stages has only \d+ training rows"),
    "fraction": ({"diet_update_fraction": "1.5"}, r"--diet_update_fraction must be a fraction in \[0, 1\] or stream"),
    "fraction word": ({"diet_update_fraction": "often"}, r"--diet_update_fraction must be a fraction in \[0, 1\] or stream"),
    "addressing": ({"diet_addressing": "oldest"}, r"--diet_addressing must be one of influence, all, random"),
    "baselines": ({"diet_baselines": "['full','oracle']"}, r"--diet_baselines must be a list of full, finetune"),
    "bidirectional model": ({"model": "TextBERT4Rec"}, r"--method=diet needs a left-to-right model"),
    "share": ({"diet_memory_share": "1.5"}, r"--diet_memory_share must be a fraction in \[0, 1\)"),
    "share with text codes": ({"diet_memory_share": "0.1", "diet_label_storage": "text_code"},
                              r"--diet_memory_share needs labels that can grow with the memory"),
    "refining text codes": ({"diet_refine_steps": "5", "diet_label_storage": "text_code"},
                            r"--diet_refine_steps refines top-k labels"),
    "negative refinement": ({"diet_refine_steps": "-1"}, r"--diet_refine_steps must be a whole number >= 0"),
    "one ranked model": ({"diet_rank_models": "['TextSASRec']"}, r"--diet_rank_models needs at least 2 models"),
    "bidirectional ranked model": ({"diet_rank_models": "['TextSASRec','BERT4Rec']"},
                                   r"--diet_rank_models: 'BERT4Rec' is not a left-to-right"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_diet_input_exits_2_with_one_clear_line(name, stream_root, tiny_bert_dir, tmp_path, capsys):
    overrides, pattern = BAD[name]
    options = diet_options(stream_root, tiny_bert_dir, tmp_path, **overrides)
    options["output_dir"] = str(tmp_path / "out" / "run")
    assert main(as_argv(options)) == 2
    assert_one_error_line(capsys.readouterr().err, pattern)
    assert not (tmp_path / "out").exists()


# ----- end to end -----
LABELS = ("DIET-4", "DIET model", "Full-s", "Fine-tune", "Reservoir-KD-4")


def comparable(stages):
    """A run's per-stage numbers without what differs between two identical runs (seconds, memory)."""
    out = []
    for stage in stages:
        stage = json.loads(json.dumps(stage))
        for row in stage["methods"].values():
            for key in ("update_seconds", "stage_seconds", "judge_seconds", "seconds_per_fresh_model",
                        "cumulative_seconds", "peak_mem_mb"):
                row.pop(key, None)
        out.append(stage)
    return out


@pytest.mark.slow
def test_diet_run_reports_every_method_at_every_stage(ctx, stream_root, tiny_bert_dir, tmp_path):
    results = run(as_argv(diet_options(stream_root, tiny_bert_dir, tmp_path)))
    stages = results["stages"]
    assert [s["stage"] for s in stages] == [1, 2, 3, 4]
    plan = StagePlan(ctx)  # the same data and split as the run's
    assert set(stages[0]["memory"]["initial_rows"]) <= set(plan.rows(0).tolist())
    for stage in stages[1:]:  # a memory entry is always a window the stage has seen
        assert set(stage["memory"]["replacement_rows"]) <= set(plan.rows(stage["stage"] - 1).tolist())
    for stage in stages:
        assert set(stage["methods"]) == set(LABELS)
        for label, row in stage["methods"].items():
            assert 0 <= row["report"]["ndcg@10"] <= 1 and row["update_seconds"] >= 0 and row["peak_mem_mb"] > 0
            assert row["cumulative_seconds"] >= row["update_seconds"]
        assert 0 < stage["methods"]["DIET-4"]["size_share"] < 1
        memory = stage["memory"]  # no more labelled positions than the budget (or than it held before)
        held_before = stages[stage["stage"] - 2]["memory"]["labelled_positions"] if stage["stage"] > 1 else 0
        assert 0 < memory["labelled_positions"] <= max(memory["position_budget"], held_before)
        if stage["stage"] == 1 or memory["replaced_slots"]:  # whatever was written fits the budget
            assert memory["labelled_positions"] <= memory["position_budget"]
        if stage["stage"] > 1:
            assert len(memory["replaced_slots"]) == round(0.25 * 4) == len(memory["replacement_scores"])
            lowest = sorted(range(4), key=lambda i: memory["memory_scores"][i])[:1]
            assert memory["replaced_slots"] == lowest
    assert stages[-1]["judged_on"] == "validation period"
    assert set(results["table"]) == {"Full", *LABELS}
    assert all("ndcg@10" in metrics for metrics in results["table"].values())
    assert results["test"] == results["table"]["DIET-4"] and results["family"] == "self-contained"
    assert os.path.isfile(results["stages_plot"]) and os.path.isfile(tmp_path / "out" / "results.json")
    # the final memory is a set file any run can train on
    again = run(as_argv(toy_options(stream_root, tiny_bert_dir, tmp_path, dataset="stream", method="eval",
                                    eval_protocol="global_temporal", MAX_ITEM_LIST_LENGTH=MAX_LEN,
                                    synthetic=results["set_file"], output_dir=str(tmp_path / "eval"))))
    assert again["label_storage"] == "topk" and again["family"] == "self-contained"
    # the benchmark's table and the targets, from the results
    table = diet_benchmark.markdown(results)
    assert "| 4 | validation period | DIET-4 |" in table and "| Reservoir-KD-4 |" in table
    assert [t["stage"] for t in diet_benchmark.targets(results)] == [1, 2, 3, 4]


def _fake_run(selection, report, seed=2020, addressing="influence"):
    """A DIET results dict with two stages: the memory's and the reservoir's NDCG@10 per stage."""
    def set_row(sel, rep):
        return {"selection": {"ndcg@10": sel}, "report": {"ndcg@10": rep}, "report_std": {"ndcg@10": 0.001},
                "per_seed": [{}, {}, {}], "labelled_positions": 40}
    stages = [{"stage": i + 1, "slice": {"start": i, "end": i + 1}, "memory": {"replaced_slots": [0] * i},
               "methods": {"DIET-4": set_row(sel, rep), "Reservoir-KD-4": set_row(0.5, 0.5)}}
              for i, (sel, rep) in enumerate(zip(selection, report))]
    return {"dataset": "stream", "seed": seed, "stages": stages,
            "diet": {"diet_memory_size": 4, "diet_addressing": addressing, "diet_update_fraction": 0.25}}


def test_diet_benchmark_compares_memories_and_chooses_on_the_selection_half_only():
    first = _fake_run(selection=[0.1, 0.2], report=[0.1, 0.9])
    better_on_selection = _fake_run(selection=[0.1, 0.3], report=[0.1, 0.1], addressing="all")
    rows = diet_benchmark.variant_rows({"influence": first, "all": better_on_selection})
    assert [r["variant"] for r in rows if r["stage"] == 2] == ["Reservoir-KD-4 (reference)", "influence", "all"]
    assert [r["replaced"] for r in rows if r["variant"] == "influence"] == [None, 1]
    assert diet_benchmark.variant_choice(rows) == "all"  # the report half (0.9 vs 0.1) is not looked at
    assert "| 2 | influence | 0.2000 | 0.9000 ± 0.0010 | 1 | 40 |" in diet_benchmark.variant_markdown(rows)
    with pytest.raises(SystemExit, match="not the same dataset, seed and stages"):
        diet_benchmark.variant_rows({"influence": first, "other seed": _fake_run([0.1, 0.2], [0.1, 0.2], seed=1)})


@pytest.mark.slow
def test_diet_memories_can_keep_text_code_labels_within_the_topk_bytes(stream_root, tiny_bert_dir, tmp_path):
    """``diet_label_storage: text_code``: DIET's and Reservoir-KD's memories keep codes over the item
    texts, never more label bytes than top-k of a full memory, and the final set trains a model.
    Also ``diet_update_fraction: stream``: a stage rewrites its share of the rows seen."""
    options = diet_options(stream_root, tiny_bert_dir, tmp_path, diet_label_storage="text_code",
                           diet_baselines="['finetune','reservoir_kd']", diet_update_fraction="stream")
    results = run(as_argv(options))
    budget = 4 * (MAX_LEN - 1) * 5 * (2 + 4)  # top-5 labels at every position of 4 windows
    for stage in results["stages"][1:]:
        memory, share = stage["memory"], stage["train_rows"] / stage["rows_seen"]
        assert memory["update_fraction"] == pytest.approx(share)
        assert 0 < len(memory["replaced_slots"]) <= round(4 * share)  # fewer only if the position budget binds
    for stage in results["stages"]:
        for label in ("DIET-4", "Reservoir-KD-4"):
            row = stage["methods"][label]
            mask_bytes = row["windows"] * (MAX_LEN - 1)  # one bool per position, as in a top-k memory
            assert row["label_storage"] == "text_code" and 0 < row["label_bytes"] - mask_bytes <= budget
    assert results["label_storage"] == "text_code"
    again = run(as_argv(toy_options(stream_root, tiny_bert_dir, tmp_path, dataset="stream", method="eval",
                                    eval_protocol="global_temporal", MAX_ITEM_LIST_LENGTH=MAX_LEN,
                                    synthetic=results["set_file"], output_dir=str(tmp_path / "eval"))))
    assert again["label_storage"] == "text_code" and 0 <= again["test"]["ndcg@10"] <= 1


@pytest.mark.slow
def test_a_recurrent_model_runs_diet(stream_root, tiny_bert_dir, tmp_path):
    """TextGRU4Rec: RecBole's GRU4Rec trainer, and per-sample gradients one window at a time."""
    options = diet_options(stream_root, tiny_bert_dir, tmp_path, model="TextGRU4Rec", diet_stages=2,
                           diet_baselines="['finetune']")
    for key in ("inner_size", "n_layers", "n_heads", "hidden_size"):  # TextSASRec's toy settings
        options.pop(key)
    results = run(as_argv(options))
    assert set(results["stages"][1]["methods"]) == {"DIET-4", "DIET model", "Fine-tune"}
    assert len(results["stages"][1]["memory"]["replaced_slots"]) == 1


@pytest.mark.slow
def test_foster_baseline_and_the_all_addressing_ablation(stream_root, tiny_bert_dir, tmp_path):
    results = run(as_argv(diet_options(stream_root, tiny_bert_dir, tmp_path, diet_stages=2, diet_addressing="all",
                                       diet_baselines="['full','foster']", foster_seq_len=MAX_LEN)))
    for stage in results["stages"]:
        assert set(stage["methods"]) == {"DIET-4", "DIET model", "Full-s", "FOSTER-4"}
        foster = stage["methods"]["FOSTER-4"]
        assert foster["kind"] == "set" and foster["update_seconds"] > stage["methods"]["Full-s"]["update_seconds"]
    assert sorted(results["stages"][1]["memory"]["replaced_slots"]) == [0, 1, 2, 3]  # all: every entry rewritten
    assert "FOSTER-4" in results["table"]


@pytest.mark.slow
def test_a_resumed_run_gives_the_uninterrupted_result(stream_root, tiny_bert_dir, tmp_path):
    whole = run(as_argv(diet_options(stream_root, tiny_bert_dir, tmp_path, output_dir=str(tmp_path / "whole"))))
    options = diet_options(stream_root, tiny_bert_dir, tmp_path, output_dir=str(tmp_path / "parts"))
    stopped = run(as_argv({**options, "diet_stop_after": "1"}))
    assert stopped["stopped_after_stage"] == 1 and len(stopped["stages"]) == 1
    assert sorted(os.listdir(tmp_path / "parts" / "stages")) == ["1"]
    resumed = run(as_argv(options))
    assert resumed["resumed_after_stage"] == 1
    assert comparable(resumed["stages"]) == comparable(whole["stages"])
    assert resumed["table"] == whole["table"]
    for stage in ("1", "4"):
        a = torch.load(tmp_path / "whole" / "stages" / stage / "state.pt", weights_only=True)
        b = torch.load(tmp_path / "parts" / "stages" / stage / "state.pt", weights_only=True)
        assert Memory.from_state(a["memory"]).equals(Memory.from_state(b["memory"]))
        assert all(torch.equal(a["models"]["diet"][k], b["models"]["diet"][k]) for k in a["models"]["diet"])


# ----- memory share, label refinement, architecture ranking -----
def test_a_memory_share_sizes_the_memory_by_the_training_rows_seen(stream_root, tiny_bert_dir, tmp_path):
    share_ctx = prepare(diet_options(stream_root, tiny_bert_dir, tmp_path, diet_memory_share="0.05"))
    diet = DietRun(share_ctx)
    sizes = [diet.size_at(s) for s in range(diet.plan.n_stages)]
    assert sizes == [max(1, round(0.05 * len(diet.plan.rows_until(s)))) for s in range(diet.plan.n_stages)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # it grows with the stream
    assert diet.labels["diet"] == "DIET-5%" and diet.labels["reservoir_kd"] == "Reservoir-KD-5%"


def test_a_resized_reservoir_is_a_uniform_sample_of_the_stream():
    keep, picks = reservoir_resize(5, 50, 30, 8, np.random.default_rng(0))
    assert len(keep) + len(picks) == 8 and len(set(keep.tolist())) == len(keep) and keep.max() < 5
    counts = np.zeros(40)
    for trial in range(3000):
        rng = np.random.default_rng(trial)
        held = np.sort(rng.permutation(20)[:4])  # a uniform 4 of the first 20 items
        keep, picks = reservoir_resize(4, 20, 20, 6, rng)  # 6 of all 40
        sample = list(held[keep.numpy()]) + list(20 + picks.numpy())
        assert len(sample) == 6
        counts[sample] += 1
    assert np.allclose(counts / 3000, 6 / 40, atol=0.03)  # each item with p = size / n, old or new


def test_refined_labels_change_keep_bytes_and_items(ctx):
    plan = StagePlan(ctx)
    rows, users, windows = plan.windows(0)
    memory = Memory.labelled(ctx.new_model(1), windows[:6], users[:6], torch.as_tensor(rows[:6]), 1, 5)
    refined, record = refine_labels(ctx.new_model(2), memory, windows, 5, 0.1, 0.005, 8,
                                    torch.Generator().manual_seed(0))
    assert stored_bytes(refined.stored()) == stored_bytes(memory.stored())
    for name in memory.labels:
        assert refined.labels[name].dtype == memory.labels[name].dtype
        assert refined.labels[name].shape == memory.labels[name].shape
    assert torch.equal(refined.labels["topk_items"], memory.labels["topk_items"]) and torch.equal(refined.windows, memory.windows)
    mask = memory.label_mask
    assert not torch.equal(refined.labels["topk_probs"][mask], memory.labels["topk_probs"][mask])
    assert float(refined.labels["topk_probs"][mask].float().sum(-1).max()) <= 1.01  # still distributions
    assert record["steps"] == 5 and record["mean_abs_change"] > 0
    # the soft loss the refinement differentiates has the model gradient of the memory's KL loss
    model = ctx.new_model(3)
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    kl = memory.training_set(ctx.dataset.item_num).loss(model, torch.arange(6))
    probs = memory.labels["topk_probs"][mask].float()
    ce = soft_cross_entropy(memory_log_probs(model, memory.windows, mask), memory.labels["topk_items"][mask].long() - 1,
                            probs, (1 - probs.sum(1)).clamp_min(1e-12))
    for a, b in zip(torch.autograd.grad(kl, params, allow_unused=True), torch.autograd.grad(ce, params, allow_unused=True)):
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


RANK_MODELS = "['TextSASRec','TextGRU4Rec','TextNARM','SASRec']"


@pytest.mark.slow
def test_share_refinement_and_ranking_check_end_to_end_and_resume(stream_root, tiny_bert_dir, tmp_path, monkeypatch):
    """A 2-stage run with a 5% memory, 3 refinement steps and 4 ranked models, stopped and resumed."""
    import recbole_foster.diet.pipeline as pipeline

    seen = []

    def spy(model, memory, windows, *args, **kwargs):
        seen.append(windows.clone())
        return refine_labels(model, memory, windows, *args, **kwargs)

    monkeypatch.setattr(pipeline, "refine_labels", spy)
    options = diet_options(stream_root, tiny_bert_dir, tmp_path, diet_stages=2, diet_memory_share="0.05",
                           diet_refine_steps=3, diet_rank_models=RANK_MODELS, diet_baselines="['full','reservoir_kd']",
                           distilled_steps=20, distilled_eval_every=10)
    stopped = run(as_argv({**options, "diet_stop_after": "1"}))
    assert stopped["stopped_after_stage"] == 1
    results = run(as_argv(options))
    assert results["resumed_after_stage"] == 1 and len(seen) == 2
    plan = StagePlan(prepare(diet_options(stream_root, tiny_bert_dir, tmp_path / "plan", diet_stages=2)))
    for stage, windows in zip(results["stages"], seen):  # refinement reads the stage's training windows only
        assert torch.equal(windows, plan.windows(stage["stage"] - 1)[2])
    for stage in results["stages"]:
        s = stage["stage"] - 1
        size = max(1, round(0.05 * len(plan.rows_until(s))))
        methods = stage["methods"]
        assert stage["memory_size"] == size and methods["Reservoir-KD-5%"]["windows"] == size
        assert 0 < methods["DIET-5%"]["windows"] <= size
        refined, memory = methods["DIET-5% refined"], methods["DIET-5%"]
        assert refined["label_bytes"] == memory["label_bytes"] and refined["windows"] == memory["windows"]
        assert stage["memory"]["refinement"]["steps"] == 3
        ranking = stage["ranking"]
        assert ranking["models"] == ["TextSASRec", "TextGRU4Rec", "TextNARM", "SASRec"]
        assert set(ranking["sets"]) == {"DIET-5%", "DIET-5% refined", "Reservoir-KD-5%"}
        for row in ranking["sets"].values():
            assert row["n_models"] == 4 and set(row["per_model"]) == set(ranking["models"])
            assert row["tau"] is None or -1 <= row["tau"] <= 1
            assert isinstance(row["top1_agree"], bool) and row["seconds"] > 0 and row["full_seconds"] > 0
            assert row["speedup"] == pytest.approx(row["full_seconds"] / row["seconds"])
        # the run's own model is not trained twice: its numbers are the stage's own
        assert ranking["full"]["TextSASRec"]["ndcg@10"] == methods["Full-s"]["report"]["ndcg@10"]
        assert ranking["sets"]["DIET-5%"]["per_model"]["TextSASRec"]["ndcg@10"] == \
            memory["per_seed"][0]["report"]["ndcg@10"]
    assert os.path.isfile(results["stages_plot"])
    table = diet_benchmark.markdown(results)
    assert "Kendall tau" in table and "| DIET-5% refined |" in table
