"""One training step on a small set of real windows: hard labels vs stored soft labels.

    python benchmarks/small_set_step.py --windows=20,100 --catalogs=1682,16874

What judging a small set costs per step (``evaluation.train_and_select`` runs up to
``distilled_steps`` of them per seed), for hard next-item labels (the floor: one full-catalog
softmax per trained position) and for soft labels read two ways: from the flat table of
probabilities that :class:`~recbole_foster.training_sets.TeacherLabelledSequences` builds once,
and by gathering the dense (m, L - 1, n_items) labels at every step, as it did before. Windows
hold 3-14 real items (amazon-games' windows are short), over a catalog of random text
embeddings (what the texts are does not change the cost). The variants are timed interleaved in
one process, ``--repeats`` rounds each, so a shared machine slows them alike; the JSON records
the load average. Writes ``<out>/small-set-step.{json,png}``.
"""

import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from recbole_foster.model import students
from recbole_foster.model.text_sasrec import TextSASRec
from recbole_foster import FosterConfig
from recbole_foster.training_sets import HardSequences, TeacherLabelledSequences

sys.path.insert(0, os.path.dirname(__file__))
from common import command_of, figure, parser_of, save, write_results  # noqa: E402
from efficiency import FakeCatalog  # noqa: E402


class DenseGatherLabels(TeacherLabelledSequences):
    """The previous loss: every step gathers the batch's rows of the dense label tensor."""

    def loss(self, model, rows):
        seqs = self.item_seqs[rows]
        targets = self.target_log_probs[rows][..., 1:]
        hidden, used = students.target_hidden(model, seqs, has_target=seqs[:, 1:] > 0)
        log_pred = F.log_softmax(students.scores(model, hidden[used])[:, 1:], dim=-1)
        return F.kl_div(log_pred, targets[used], reduction="none", log_target=True).sum(-1).mean()


VARIANTS = {"hard labels": lambda seqs, labels: HardSequences(seqs),
            "soft labels, flat table": TeacherLabelledSequences,
            "soft labels, dense gather (before)": DenseGatherLabels}


def short_windows(m, length, n_items, seed=0):
    generator = torch.Generator().manual_seed(seed)
    seqs = torch.zeros(m, length, dtype=torch.long)
    for row in range(m):
        n = int(torch.randint(3, 15, (1,), generator=generator))
        seqs[row, :n] = torch.randint(1, n_items, (n,), generator=generator)
    return seqs


def seconds_per_step(config, catalog, training_set, steps):
    torch.manual_seed(0)
    model = TextSASRec(config, catalog)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = torch.randperm(len(training_set))
    for step in range(steps + 1):  # the first step warms up
        if step == 1:
            start = time.perf_counter()
        loss = training_set.loss(model, rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def plot(results, path):
    cases = [(c["windows"], c["catalog"]) for c in results["cases"]]
    fig, ax = figure((7, 3.5))
    width = 0.8 / len(VARIANTS)
    for i, name in enumerate(VARIANTS):
        values = [c["s_per_step"][name] for c in results["cases"]]
        ax.bar([x + i * width for x in range(len(cases))], values, width, label=name)
    ax.set_xticks([x + width for x in range(len(cases))], [f"{m} windows\n{n} items" for m, n in cases])
    ax.set_ylabel("seconds per training step")
    save(fig, path, f"small-set training step, 1 thread ({results['machine']})", legend={"fontsize": 8})


def main(argv):
    parser = parser_of(__doc__, dataset=None)
    parser.add_argument("--windows", default="20,100")
    parser.add_argument("--catalogs", default="1682,16874")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--text_dim", type=int, default=384, help="all-MiniLM-L6-v2's; TinyBERT's is 312")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = FosterConfig(model="TextSASRec", dataset="ml-100k", config_dict={"device": "cpu"})  # the model's settings
    dim = args.text_dim
    length = config["MAX_ITEM_LIST_LENGTH"]
    cases = []
    for n_items in [int(n) + 1 for n in args.catalogs.split(",")]:
        catalog = FakeCatalog(n_items, dim)
        for m in [int(m) for m in args.windows.split(",")]:
            seqs = short_windows(m, length, n_items)
            labels = torch.log_softmax(3 * torch.randn(m, length - 1, n_items), -1)
            labels[..., 0] = float("-inf")
            timings = {name: [] for name in VARIANTS}
            for _ in range(args.repeats):
                for name, make in VARIANTS.items():
                    timings[name].append(seconds_per_step(config, catalog, make(seqs, labels), args.steps))
            cases.append({"windows": m, "catalog": n_items - 1,
                          "trained_positions": int(((seqs[:, 1:] > 0) & (seqs[:, :-1] > 0)).sum()),
                          "s_per_step": {name: min(t) for name, t in timings.items()}, "all_timings": timings})
            print(json.dumps(cases[-1]["s_per_step"] | {"windows": m, "catalog": n_items - 1}), flush=True)
    results = {"command": command_of("small_set_step.py", argv),
               "s_per_step_is": f"fastest of {args.repeats} interleaved rounds of {args.steps} steps (after a warm-up step)",
               "threads": 1, "load_average_at_end": os.getloadavg(),
               "machine": platform.processor() or platform.machine(), "cases": cases}
    write_results(args.out, "small-set-step", results, plot)


if __name__ == "__main__":
    main(sys.argv[1:])
