"""--method=kcenter|dealrec|goracs: same CLI, same evaluation, same results.json as Random-N."""

import os

import pytest

from recbole_foster import real_run as real_run_module
from recbole_foster.methods import METHODS
from recbole_foster.methods import selection
from recbole_foster.run import prepare, run, with_method_inputs
from tests.toy_data import as_argv, toy_options


@pytest.fixture(scope="module")
def random_result(toy_data_root, tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coreset-random")
    return run(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp, method="random")))


@pytest.mark.slow
@pytest.mark.parametrize("method,label", [("kcenter", "K-Center-4"), ("dealrec", "DEALRec-4"), ("goracs", "GORACS-4")])
def test_coreset_method_selects_judges_and_exports(method, label, random_result, toy_data_root, tiny_bert_dir,
                                                   tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method=method, coreset_lissa_depth=20,
                          export_atomic=str(tmp_path / "atomic"))
    results = run(as_argv(options))
    users = results["selected_users"]
    assert len(users) == len(set(users)) == 4
    assert set(results["table"]) == {"Full", label}
    # one protocol: the same evaluation seeds and the same Full run as Random-N
    assert [s["seed"] for s in results["per_seed"]] == [s["seed"] for s in random_result["per_seed"]]
    assert results["table"]["Full"] == random_result["table"]["Full"]
    assert "select" in results["timings"]
    inter = os.path.join(results["exported_atomic"], f"toy-{method}4.inter")
    rows = [line.split("\t") for line in open(inter).read().splitlines()[1:]]
    assert {r[0] for r in rows} == set(users)
    # toy users walk item ids upwards by one: an exported sequence keeps that order
    for user in users:
        items = [int(r[1][1:]) for r in rows if r[0] == user]
        assert len(items) >= 2 and all(b == a % 30 + 1 for a, b in zip(items, items[1:]))


@pytest.mark.slow
def test_asking_for_more_sequences_than_users_is_a_clear_error(toy_data_root, tiny_bert_dir, tmp_path):
    options = toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="kcenter", n_sequences=500)
    with pytest.raises(ValueError, match="only 40 users"):
        run(as_argv(options))


class UntrainedRealRun:
    """Stands in for the real-data run: its teacher is an untrained model, nothing is trained."""

    manifest = {"test": {"ndcg@10": 0.0}, "teacher": "teacher.pt"}
    name = "untrained"

    def __init__(self, folder):
        self.folder = folder
        open(f"{folder}/teacher.pt", "wb").close()

    def load_teacher(self, new_model):
        return new_model().eval()


@pytest.mark.parametrize("method", ["dealrec", "goracs"])
def test_gradient_based_coresets_run_on_the_pipelines_teacher(method, toy_data_root, tiny_bert_dir, tmp_path,
                                                              monkeypatch):
    """DEALRec's influence and GORACS's gradient norms differentiate the real-data model: the
    teacher the pipeline hands to the method must allow that (no training, no evaluation here)."""
    ctx = prepare(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method=method, coreset_lissa_depth=5))
    monkeypatch.setattr(real_run_module, "ensure_real_run", lambda ctx: UntrainedRealRun(str(tmp_path)))
    monkeypatch.setattr(selection, "evaluate_training_set", lambda ctx, sequences, desc: {"test": {}})
    ctx = with_method_inputs(ctx)
    result = METHODS[method].run(ctx)
    assert len(result["selected_users"]) == len(set(result["selected_users"])) == 4
