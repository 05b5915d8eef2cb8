"""``--method=generate_kd``: sequences the teacher writes itself, kept with the teacher's labels.

Each of the N sequences starts from the first item of one of the run's Random-N users and is
continued item by item by sampling the teacher's next-item distribution (temperature
``generate_temperature``; items already in the sequence are excluded, as a user rarely consumes
an item twice). Every position is then labelled by the teacher, like Random-KD, and the labels
are kept as ``label_storage`` says. Why it could beat real windows at equal storage: every one
of the N x L positions is filled (real windows of short histories are mostly padding) and the
sequences follow the teacher's view of the data, so each stored label agrees with its input.
"""

import torch

from recbole_foster.methods.selection import TeacherLabelled, save_and_judge, teacher_labelled


@torch.no_grad()
def teacher_generated_sequences(teacher, first_items, length, temperature, generator):
    """(m, length) item ids: ``first_items`` (m,) continued by sampling the teacher."""
    teacher.eval()
    device = next(teacher.parameters()).device
    seqs = torch.zeros(len(first_items), length, dtype=torch.long, device=device)
    seqs[:, 0] = first_items.to(device)
    for t in range(1, length):
        hidden = teacher.encode(seqs[:, :t])[:, -1]
        scores = teacher.scores(hidden) / temperature
        scores[:, 0] = float("-inf")
        scores.scatter_(1, seqs[:, :t], float("-inf"))
        probs = torch.softmax(scores, dim=-1).cpu()
        seqs[:, t] = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)
    return seqs.cpu()


class GenerateKD(TeacherLabelled):
    name, label = "generate_kd", "Generate-KD"
    summary = "N sequences sampled from the teacher, with the teacher's labels (label_storage)"
    models = "TextSASRec"

    def run(self, ctx):
        config = ctx.config
        users, windows = ctx.random_draw
        generator = torch.Generator().manual_seed(ctx.selection_seed)
        with ctx.timed("select"):
            sequences = teacher_generated_sequences(ctx.teacher, windows[:, 0], config["MAX_ITEM_LIST_LENGTH"],
                                                    float(config["generate_temperature"]), generator)
        return save_and_judge(ctx, self.row_label(len(sequences)), sequences, users,
                              *teacher_labelled(ctx, sequences))
