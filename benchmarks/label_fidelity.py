"""How much of the teacher's labels each storage keeps, against the size of the set (no training).

    python benchmarks/label_fidelity.py --dataset=amazon-games --data_path=../shared/data \
        --config_files=benchmarks/configs/amazon-games-temporal-cpu.yaml --budgets=5,10,20,50,100

For each N: the run's Random-N draw (``selection_seed``, as every Random-KD-N run draws it),
labelled by the cached real-data model (the teacher), kept as top-``label_topk`` and as text codes
at the same bytes; reports the mean KL(teacher || stored label) per labelled position and the
text-code rank. It trains nothing (the teacher must be cached:
run any small-set method first). Explains the budget curve: the text codes' decoder is a fixed
cost, so at small N the rank, and with it the fidelity, drops. Writes ``<out>/<dataset>.json``.
"""

import dataclasses
import json
import os
import sys

from common import command_of, parse, parser_of  # beside this script
from recbole_foster.model import students
from recbole_foster.labels import compress, expand, label_kl
from recbole_foster.run import prepare, with_method_inputs
from recbole_foster.training_sets import TeacherLabelledSequences


def main(argv):
    parser = parser_of(__doc__)
    parser.add_argument("--budgets", default="5,10,20,50,100")
    parser.add_argument("--out", default="benchmarks/results/label-fidelity")
    args, run_options = parse(parser, argv)
    options = {"dataset": args.dataset, "method": "random_kd", **run_options}
    try:
        budgets = [int(n) for n in args.budgets.split(",") if n]
    except ValueError as error:
        parser.error(str(error))
    ctx = prepare(options)
    ctx = with_method_inputs(ctx)  # the cached teacher (trains it if it is not cached)
    item_text, k = ctx.dataset.item_text_embeddings, int(ctx.config["label_topk"])
    rows = []
    for n in budgets:
        ctx.config["n_sequences"] = n
        ctx = dataclasses.replace(ctx, _random_draw=None)  # draw again for this N, with the run's selection_seed
        _, windows = ctx.random_draw
        labelled = TeacherLabelledSequences(windows, students.next_item_log_probs(ctx.teacher, windows))
        log_probs, mask = labelled.target_log_probs, labelled.label_mask
        topk = compress(log_probs, mask, "topk", k)
        codes = compress(log_probs, mask, "text_code", k, item_text)
        rows.append({"n": n, "labelled_positions": int(mask.sum()), "text_code_rank": int(codes["label_codes"].size(1)),
                     "kl_topk": label_kl(log_probs, expand(topk, log_probs.size(-1))[1], mask),
                     "kl_text_code": label_kl(log_probs, expand(codes, log_probs.size(-1), item_text)[1], mask)})
        print(json.dumps(rows[-1]), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.dataset}.json"), "w") as f:
        json.dump({"dataset": args.dataset, "label_topk": k, "selection_seed": ctx.selection_seed,
                   "command": command_of("label_fidelity.py", argv), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
