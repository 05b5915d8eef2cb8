"""The distillation loop FOSTER and TD3 share; a solver makes each outer step's bilevel update.

The loop owns everything the two methods have in common (paper Alg. 2):

* the problem: the synthetic summary and its optimizer, the label mode, the item subsets
  (a fresh uniform draw per call, or the fixed K-means subset), and the real-data loss
  f = BCE + w_fm * feature matching (teacher) + beta * L_DH on a fresh real batch;
* the schedule: step 0 starts from ``foster_start`` (an anchor, or a random init), then every R
  steps a ``foster_reset`` (to a random anchor, a fresh init, or never);
* the bookkeeping: step count, history, progress bar, checkpoints and resumption.

A solver (:class:`recbole_foster.distill.bome.BomeSolver`, FOSTER's first-order BOME;
:class:`recbole_foster.distill.td3.TD3Solver`, TD3's RaT-BPTT) implements

* ``label``: its name on the progress bar;
* ``outer_step(loop) -> dict``: one update of the model and/or the synthetic factors, returning
  the step's record (f, its parts, ...; the loop adds ``step``);
* ``reset()``: the loop has just moved the model to another point (drop optimizer moments);
* ``state_dict()`` / ``load_state_dict(state)``: its part of a checkpoint.

It is a plain class, not a RecBole ``Trainer``: it trains no model on a dataloader, validates
nothing and keeps no best epoch, so ``Trainer.fit``'s contract (returning the best validation
score and result) would have nothing to return.
"""

import os

import torch
import torch.nn.functional as F
from tqdm import tqdm

from recbole_foster.distill.dh import dh_loss
from recbole_foster.distill.synthetic import sample_items
from recbole_foster.training_sets import fits_on

RESET_MODES = ("anchor", "random", "none")
START_MODES = ("anchor", "random")
ITEM_SAMPLING_MODES = ("otf", "kmeans")
# (history key, progress-bar name, format) of what the progress bar shows when a step reports it
_PROGRESS_FIELDS = [("f", "f", ".3f"), ("q", "q", ".2e"), ("lambda", "lam", ".2f"),
                    ("entropy", "H", ".2f"), ("dh", "dh", ".3f")]


def kmeans_item_subset(item_factor, k, seed):
    """Fixed subset for the K-means ablation: the item nearest to each of k centroids."""
    from scipy.cluster.vq import kmeans2
    from scipy.spatial import cKDTree

    points = item_factor[1:].double().numpy()
    centroids, _ = kmeans2(points, k, minit="++", seed=seed, iter=10)
    _, nearest = cKDTree(points).query(centroids)
    return torch.tensor(sorted(set(nearest.tolist())), dtype=torch.long) + 1


def record_of(values, **others):
    """A step's record: ``values`` (name -> 0-d tensor) as floats, read in one device sync (a
    CUDA step would otherwise wait for the device once per number), plus ``others`` as they are."""
    numbers = torch.stack([v.detach().float().reshape(()) for v in values.values()]).tolist()
    return {**dict(zip(values, numbers)), **others}


class DistillationLoop:
    """Distil ``summary`` with ``solver_class``'s outer steps; :meth:`run` to ``foster_outer_steps``."""

    def __init__(self, config, model, teacher, summary, real_dataset, real_run, anchor_rows, label_mode,
                 solver_class):
        self.config, self.model, self.summary, self.label_mode = config, model, summary, label_mode
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.real_run, self.anchor_rows = real_run, anchor_rows
        self.n_items = model.n_items
        self.device = config["device"]

        self.steps = config["foster_outer_steps"]
        self.reset_mode = config["foster_reset"]
        self.start_mode = config["foster_start"]
        self.reset_interval = config["foster_reset_interval"]
        self.n_sampled = config["n_sampled_items"]
        self.fm_weight = config["foster_fm_weight"]
        self.dh_pairs = config["foster_dh_pairs"]
        self.real_batch_size = config["foster_real_batch_size"]
        self.n_negatives = config["foster_negatives"]
        self.checkpoint_every = config["foster_checkpoint_every"]
        if self.reset_mode not in RESET_MODES:
            raise ValueError(f"foster_reset must be one of {RESET_MODES}, got {self.reset_mode!r}.")
        if self.start_mode not in START_MODES:
            raise ValueError(f"foster_start must be one of {START_MODES}, got {self.start_mode!r}.")
        if config["foster_item_sampling"] not in ITEM_SAMPLING_MODES:
            raise ValueError(f"foster_item_sampling must be one of {ITEM_SAMPLING_MODES}.")

        self.synthetic_optimizer = torch.optim.AdamW(
            summary.trainable_parameters(), lr=config["foster_synthetic_lr"],
            weight_decay=config["foster_synthetic_weight_decay"],
        )
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.fixed_items = None
        if config["foster_item_sampling"] == "kmeans":
            subset = kmeans_item_subset(summary.item_factor.cpu(), self.n_sampled, config["seed"])
            self.fixed_items = subset.to(self.device)

        # Real training samples (prefix -> next item), as RecBole's SequentialDataset built them,
        # copied to the device once when they fit there: each step then indexes them in place
        # instead of copying its batch from the host.
        feat = real_dataset.inter_feat
        real = [feat[model.ITEM_SEQ], feat[model.ITEM_SEQ_LEN], feat[model.POS_ITEM_ID]]
        device = torch.device(self.device)
        if all(fits_on(t, device) for t in real):
            real = [t.to(device) for t in real]
        self.real_seq, self.real_len, self.real_pos = real
        self.model.eval()  # no dropout while distilling: the solvers compare deterministic losses
        self.solver = solver_class(config, model)
        self.step = 0
        self.history = []
        self.current_anchor = None

    # ----- the problem both solvers solve -----
    def sample_subset(self):
        """The items of one step: a fresh uniform draw (or the fixed K-means subset)."""
        if self.fixed_items is not None:
            return self.fixed_items
        return sample_items(self.n_items, self.n_sampled, self.generator, self.device)

    def soft_batch(self, items):
        """(input log-probs, target log-probs or None) of the synthetic data over ``items``, as
        the label mode makes them (e.g. the teacher's predictions on the current inputs)."""
        return self.label_mode.soft_batch(self.summary, items, self.teacher)

    def real_batch(self):
        rows = torch.randint(len(self.real_seq), (self.real_batch_size,), generator=self.generator)
        rows = rows.to(self.real_seq.device)
        return tuple(t[rows].to(self.device) for t in (self.real_seq, self.real_len, self.real_pos))

    def outer_loss(self, items, model, dh_weight):
        """f = BCE (sampled negatives) + w_fm * feature matching + ``dh_weight`` * L_DH of
        ``model`` on a fresh real batch, with its parts (detached 0-d tensors: the solver reads
        every number of a step with one device sync, :func:`record_of`)."""
        seq, seq_len, pos = self.real_batch()
        hidden = model.encode(seq)
        last = model.gather_indexes(hidden, seq_len - 1)
        neg = torch.randint(1, self.n_items, (len(pos), self.n_negatives), generator=self.generator).to(self.device)
        bce = model.bce_loss(last, pos, neg)
        with torch.no_grad():
            teacher_hidden = self.teacher.encode(seq)
        mask = seq > 0
        fm = F.mse_loss(hidden[mask], teacher_hidden[mask])
        total = bce + self.fm_weight * fm
        dh = torch.zeros((), device=total.device)
        if dh_weight > 0:
            dh = dh_loss(self.teacher, self.summary.probabilities(items), items, self.dh_pairs, self.generator)
            total = total + dh_weight * dh
        return total, {"bce": bce.detach(), "fm": fm.detach(), "dh": dh.detach()}

    # ----- the schedule -----
    def reset_model(self, mode):
        """Trajectory-anchored reset to a random anchor (``anchor``) or a fresh init (``random``)."""
        if mode == "anchor":
            row = self.anchor_rows[int(torch.randint(len(self.anchor_rows), (1,), generator=self.generator))]
            self.model.load_state_dict(self.real_run.load_anchor(row, self.device))
            self.current_anchor = row["epoch"]
        else:
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self.model.apply(self.model._init_weights)
            self.current_anchor = "random"
        self.solver.reset()

    def maybe_reset(self):
        """Step 0 starts from ``foster_start``; then every R steps a ``foster_reset`` (unless none)."""
        if self.step == 0:
            self.reset_model(self.start_mode)
        elif self.reset_mode != "none" and self.step % self.reset_interval == 0:
            self.reset_model(self.reset_mode)

    def outer_step(self):
        """Reset if due, let the solver update, count the step; returns the step's record."""
        self.maybe_reset()
        record = {"step": self.step, **self.solver.outer_step(self)}
        self.step += 1
        return record

    # ----- checkpoints -----
    def state(self):
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "summary": self.summary.state_dict(),
            **self.solver.state_dict(),
            "synthetic_optimizer": self.synthetic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "current_anchor": str(self.current_anchor),
            "history": self.history,
        }

    def save_checkpoint(self, path):
        tmp = path + ".tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path):
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.summary.load_state_dict(state["summary"])
        self.solver.load_state_dict(state)
        self.synthetic_optimizer.load_state_dict(state["synthetic_optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        anchor = state["current_anchor"]
        self.current_anchor = int(anchor) if anchor.lstrip("-").isdigit() else anchor
        self.history = state["history"]

    def run(self, show_progress=True, checkpoint_path=None, stop_after=None):
        """Outer steps up to ``foster_outer_steps`` (from ``self.step``: a loaded checkpoint resumes);
        returns the history. ``checkpoint_path``: saved every ``foster_checkpoint_every`` steps and
        at the end; ``stop_after`` ends after that many steps of this call (to test resumption)."""
        self.model.eval()
        progress = tqdm(total=self.steps, initial=self.step, desc=f"{self.solver.label} outer steps",
                        disable=not show_progress, mininterval=1)
        done = 0
        while self.step < self.steps:
            record = self.outer_step()
            self.history.append(record)
            progress.update(1)
            progress.set_postfix({name: format(record[key], spec) for key, name, spec in _PROGRESS_FIELDS
                                  if key in record})
            done += 1
            if checkpoint_path and (self.step % self.checkpoint_every == 0 or self.step == self.steps):
                self.save_checkpoint(checkpoint_path)
            if stop_after is not None and done >= stop_after:
                break
        progress.close()
        return self.history
