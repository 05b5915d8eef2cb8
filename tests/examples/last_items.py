"""A method written outside the package, the example of docs/extending.md.

``--method=tests.examples.last_items:LastItems`` keeps the N training users with the longest
histories (most items in their window) and trains on their next items, like Random-N.
"""

from recbole_foster.labels import LabelStorage, register_storage
from recbole_foster.methods import Method
from recbole_foster.methods.selection import save_and_judge
from recbole_foster.training_sets import HardSequences


class LastItems(Method):
    name = "last_items"
    label = "Longest"
    summary = "the n_sequences users with the longest windows, next-item labels"
    models = "student"
    uses_teacher = False  # builds its set without the teacher; a model trains on it alone

    def check(self, config):
        if config["MAX_ITEM_LIST_LENGTH"] < 2:
            from recbole_foster.cli import CLIError

            raise CLIError("--method=last_items needs windows of at least 2 items.")

    def run(self, ctx):
        users, windows = ctx.candidates
        longest = (windows > 0).sum(1).argsort(descending=True, stable=True)[: ctx.n_sequences]
        return save_and_judge(ctx, self.row_label(ctx.n_sequences), windows[longest], users[longest],
                              HardSequences(windows[longest]))


@register_storage
class Top1Storage(LabelStorage):
    """Keeps only each position's most likely item and its probability (the rest spread evenly):
    a label storage written outside the package, selected with ``--label_storage=top1``."""

    name = "top1"
    lossy = True
    summary = "the most likely item per position, the rest spread evenly"

    def compress(self, log_probs, mask, k=None, item_text=None, **options):
        values, items = log_probs[mask].float().max(dim=-1)
        return {"label_mask": mask.cpu(), "label_top1_probs": values.exp().half().cpu().unsqueeze(1),
                "label_top1_items": items.int().cpu().unsqueeze(1)}

    def expand_rows(self, stored, n_items, item_text=None):
        import math

        import torch

        probs, items = stored["label_top1_probs"].float(), stored["label_top1_items"].long()
        rest = (1.0 - probs).clamp_min(1e-12) / (n_items - 2)
        rows = torch.log(rest).expand(len(probs), n_items).clone()
        rows.scatter_(1, items, torch.log(probs.clamp_min(1e-12)))
        rows[:, 0] = -math.inf
        return rows

    def owns(self, stored):
        return "label_top1_probs" in stored
