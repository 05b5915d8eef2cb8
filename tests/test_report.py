"""What a run shows a person: report.png, the plot command, phase banners, the table legend, --verbose."""

import json
import struct

import pytest

from recbole_foster.legend import table_legend
from recbole_foster.plot import combined_rows
from recbole_foster.plot import main as plot_main
from recbole_foster.report import write_report
from recbole_foster.run import main, prepare
from tests.toy_data import as_argv, toy_options

METRICS = {"recall@10": 0.07, "ndcg@10": 0.033, "recall@20": 0.117, "ndcg@20": 0.044, "mrr@10": 0.021, "hit@10": 0.07}


def small_set(scale):
    row = {k: v * scale for k, v in METRICS.items()}
    row.update({f"{k}_std": v * 0.05 for k, v in row.items()})
    return row


def foster_results(seed=2020, scale=0.4):
    history = [{"step": s, "f": 5.0 / (s + 1) + 1, "q": 0.1 - 0.002 * s, "lambda": 0.5, "entropy": 0.6 - 0.001 * s,
                "anchor": 2} for s in range(0, 100, 5)]
    return {"dataset": "ml-100k", "method": "foster", "model": "TextSASRec", "n_sequences": 20, "seed": seed,
            "eval_seeds": [3020, 3021, 3022], "test": small_set(scale), "history": history,
            "table": {"Full": dict(METRICS), "FOSTER-20": small_set(scale), "Random-20": small_set(0.38)}}


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_of_a_distillation_run_has_bars_and_curves(tmp_path):
    path = write_report(foster_results(), str(tmp_path))
    assert path == str(tmp_path / "report.png")
    width, height = png_size(path)
    assert width > 1000 and height > 800  # metrics on top, four history panels below


def test_report_q_share_is_results_json_share_over_every_step_not_the_plotted_subsample():
    from recbole_foster.distill.bome import negative_gap_share
    from recbole_foster.report import HISTORY_PANELS, _pyplot, draw_history

    history = [{"step": s, "q": -1.0 if s % 4 == 0 else 1.0} for s in range(100)]  # 25% of all steps
    shown = history[::2]  # the subsample results.json keeps: 50% of its points are negative
    share = negative_gap_share(history)
    assert share == 0.25
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(HISTORY_PANELS))
    try:
        draw_history(axes, {"foster": shown}, share)
        q_axis = axes[[key for key, _, _ in HISTORY_PANELS].index("q")]
        assert q_axis.get_title().endswith("q < 0 in 25% of steps")  # the log's number, results.json's
        draw_history(axes, {"foster": shown})  # an older results.json without q_negative_share
        assert q_axis.get_title().endswith("q < 0 in 50% of plotted steps")
    finally:
        plt.close(fig)


def test_report_of_a_run_without_history_or_table(tmp_path):
    results = {"dataset": "toy", "method": "full", "model": "SASRec", "n_sequences": None, "seed": 1, "test": METRICS}
    width, height = png_size(write_report(results, str(tmp_path)))
    assert width > 800 and height < 700  # one panel


def test_plot_draws_several_runs_and_merges_their_shared_full_row(tmp_path, capsys):
    paths = []
    for seed, scale in ((2020, 0.4), (2021, 0.45)):
        folder = tmp_path / f"foster-20/seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(foster_results(seed, scale)))
        paths.append(str(folder / "results.json"))
    out = tmp_path / "cmp" / "runs.png"
    assert plot_main([*paths, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and png_size(out)[0] > 1000
    rows = combined_rows([(p, json.load(open(p))) for p in paths])
    # Full and Random-20 are the same in both runs (drawn once); FOSTER-20 differs (named by its run)
    assert list(rows) == ["Full", "FOSTER-20", "Random-20", "FOSTER-20 (foster-20/seed2021)"]


def test_plot_rejects_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        plot_main([str(tmp_path / "nope.json")])
    assert stopped.value.code == 2 and "no such file" in capsys.readouterr().err


def test_table_legend_names_every_row_and_the_spread():
    class Config(dict):
        pass

    config = Config(model="TextSASRec", n_sequences=20, distilled_eval_seeds=3, synthetic=None)
    legend = table_legend(foster_results()["table"], config)
    assert "Full       TextSASRec trained on all real training data" in legend
    assert "FOSTER-20  distil 20 synthetic soft sequences" in legend
    assert "Random-20  20 random real user windows" in legend
    assert "± = standard deviation over the 3 evaluation seeds" in legend
    kd = table_legend({"Random-KD-5": small_set(1)}, config)
    assert "Random-KD-5  the same windows trained on the teacher's soft next-item labels" in kd


@pytest.mark.parametrize("verbose", [False, True])
def test_recbole_config_dump_only_with_verbose(verbose, toy_data_root, tiny_bert_dir, tmp_path, monkeypatch):
    import recbole_foster.run as run_module

    logged = []

    class Recorder:
        def __getattr__(self, level):
            return lambda message, *a, **k: logged.append((level, message))

    monkeypatch.setattr(run_module, "getLogger", lambda *a: Recorder())
    ctx = prepare(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="full", verbose=str(verbose)))
    dumped = any(message is ctx.config for _, message in logged)
    assert dumped is verbose


@pytest.mark.slow
def test_default_pipeline_prints_banners_legend_and_writes_report(toy_data_root, tiny_bert_dir, tmp_path, capsys):
    assert main(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path))) == 0
    out = capsys.readouterr().out
    order = ["== Item text embeddings", "== Real-data run (Full, teacher, anchors): training", "cached at",
             "== FOSTER-4", "== Evaluation: FOSTER-4", "== Evaluation: Random-4", "| Full |", "Rows:",
             "± = standard deviation over the 2 evaluation seeds", "report: ", "results: "]
    positions = [out.index(marker) for marker in order]
    assert positions == sorted(positions), out
    assert out.rstrip().splitlines()[-1] == f"results: {tmp_path / 'out' / 'results.json'}"
    assert png_size(tmp_path / "out" / "report.png")[0] > 1000
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["empty_item_texts"] == 2 and results["malformed_lines_dropped"] == {}
    # a second run reuses the real-data run and says where from
    assert main(as_argv(toy_options(toy_data_root, tiny_bert_dir, tmp_path, method="random"))) == 0
    assert "== Real-data run (Full, teacher, anchors): reused" in capsys.readouterr().out
