"""FosterDistillTrainer: FOSTER's outer loop (paper Alg. 2) as a RecBole Trainer.

Each outer step
1. resets the model every R steps to an anchor checkpoint (or to a random init, or never:
   ``foster_reset``); step 0 always starts from ``foster_start`` (an anchor, or a random init);
2. runs T inner steps on a copy of the model over the synthetic data (fresh item subset each
   step) to get theta_T;
3. computes the value gap q = L_in(theta) - L_in(theta_T) and the real-data loss
   f = BCE + w_fm * feature matching (teacher) + beta * L_DH on a fresh item subset;
4. moves the model and the synthetic factors along grad f + lambda * grad q (BOME).
No second-order gradient and no unrolled graph: every backward pass is first order.
"""

import copy
import os

import numpy as np
import torch
import torch.nn.functional as F
from recbole.trainer import Trainer
from tqdm import tqdm

from recbole_foster.distill.bome import bome_direction, value_gap_gradients
from recbole_foster.distill.dh import dh_loss
from recbole_foster.distill.synthetic import mean_entropy, sample_items
from recbole_foster.training_sets import soft_sequence_loss

RESET_MODES = ("anchor", "random", "none")
START_MODES = ("anchor", "random")
# (history key, progress-bar name, format) of what the progress bar shows when a step reports it
_PROGRESS_FIELDS = [("f", "f", ".3f"), ("q", "q", ".2e"), ("lambda", "lam", ".2f"),
                    ("entropy", "H", ".2f"), ("dh", "dh", ".3f")]
ITEM_SAMPLING_MODES = ("otf", "kmeans")


def kmeans_item_subset(item_factor, k, seed):
    """Fixed subset for the K-means ablation: the item nearest to each of k centroids."""
    from scipy.cluster.vq import kmeans2
    from scipy.spatial import cKDTree

    points = item_factor[1:].double().numpy()
    centroids, _ = kmeans2(points, k, minit="++", seed=seed, iter=10)
    _, nearest = cKDTree(points).query(centroids)
    return torch.tensor(sorted(set(nearest.tolist())), dtype=torch.long) + 1


class FosterDistillTrainer(Trainer):
    label = "FOSTER"

    def __init__(self, config, model, teacher, summary, real_dataset, real_run, anchor_rows, label_mode):
        super().__init__(config, model)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.summary = summary
        self.inner_model = copy.deepcopy(model)
        self.real_run, self.anchor_rows = real_run, anchor_rows
        self.label_mode = label_mode
        self.n_items = model.n_items
        self.device = config["device"]

        self.steps = config["foster_outer_steps"]
        self.inner_steps = config["foster_inner_steps"]
        self.reset_mode = config["foster_reset"]
        self.start_mode = config["foster_start"]
        self.reset_interval = config["foster_reset_interval"]
        self.n_sampled = config["n_sampled_items"]
        self.eta = config["foster_eta"]
        self.fm_weight = config["foster_fm_weight"]
        self.dh_weight = config["foster_dh_weight"]
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

        self.optimizer = self._build_optimizer(
            params=self.model.parameters(), learning_rate=config["foster_model_lr"], weight_decay=0.0
        )
        self.synthetic_optimizer = torch.optim.AdamW(
            summary.trainable_parameters(), lr=config["foster_synthetic_lr"],
            weight_decay=config["foster_synthetic_weight_decay"],
        )
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.fixed_items = None
        if config["foster_item_sampling"] == "kmeans":
            self.fixed_items = kmeans_item_subset(summary.item_factor.cpu(), self.n_sampled, config["seed"]).to(self.device)

        # Real training samples (prefix -> next item), as RecBole's SequentialDataset built them.
        feat = real_dataset.inter_feat
        self.real_seq = feat[model.ITEM_SEQ]
        self.real_len = feat[model.ITEM_SEQ_LEN]
        self.real_pos = feat[model.POS_ITEM_ID]
        self.step = 0
        self.history = []

    # ----- pieces of one outer step -----
    def sample_subset(self):
        if self.fixed_items is not None:
            return self.fixed_items
        return sample_items(self.n_items, self.n_sampled, self.generator, self.device)

    def soft_batch(self, items):
        """(input log-probs, target log-probs or None) of the synthetic data over ``items``, as
        the label mode makes them (e.g. the teacher's predictions on the current inputs)."""
        return self.label_mode.soft_batch(self.summary, items, self.teacher)

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
        self.optimizer.state.clear()

    def maybe_reset(self):
        """Step 0 starts from ``foster_start``; then every R steps a ``foster_reset`` (unless none)."""
        if self.step == 0:
            self.reset_model(self.start_mode)
        elif self.reset_mode != "none" and self.step % self.reset_interval == 0:
            self.reset_model(self.reset_mode)

    def inner_solve(self):
        """theta_T: T Adam steps on the synthetic data from the current theta (on a copy)."""
        self.inner_model.load_state_dict(self.model.state_dict())
        params = [p for p in self.inner_model.parameters()]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=self.config["foster_inner_lr"])
        for _ in range(self.inner_steps):
            items = self.sample_subset()
            with torch.no_grad():
                log_probs, targets = self.soft_batch(items)
            loss = soft_sequence_loss(self.inner_model, log_probs, items, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for p in params:
            p.requires_grad_(False)

    def real_batch(self):
        rows = torch.randint(len(self.real_seq), (self.real_batch_size,), generator=self.generator)
        seq = self.real_seq[rows].to(self.device)
        return seq, self.real_len[rows].to(self.device), self.real_pos[rows].to(self.device)

    def outer_loss(self, items, model=None):
        """f = BCE (sampled negatives) + w_fm * feature matching + beta * L_DH, with its parts.

        ``model`` defaults to the trained model; TD3 passes its unrolled learner.
        """
        model = self.model if model is None else model
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
        dh = torch.zeros(())
        if self.dh_weight > 0:
            dh = dh_loss(self.teacher, self.summary.probabilities(items), items, self.dh_pairs, self.generator)
            total = total + self.dh_weight * dh
        return total, {"bce": bce.item(), "fm": fm.item(), "dh": dh.item()}

    def outer_step(self):
        self.maybe_reset()
        self.inner_solve()

        theta = [p for p in self.model.parameters() if p.requires_grad]
        phi = self.summary.trainable_parameters()
        items = self.sample_subset()
        log_probs, targets = self.soft_batch(items)
        inner_at_theta = soft_sequence_loss(self.model, log_probs, items, targets)
        q, gq_theta, gq_phi = value_gap_gradients(
            inner_at_theta, theta, phi, lambda: soft_sequence_loss(self.inner_model, log_probs, items, targets)
        )
        f, parts = self.outer_loss(items)
        grad_f = torch.autograd.grad(f, theta + phi, allow_unused=True)
        direction, lam, _ = bome_direction(list(grad_f), gq_theta + gq_phi, theta + phi, eta=self.eta)
        for p, d in zip(theta + phi, direction):
            p.grad = d
        self.optimizer.step()
        self.synthetic_optimizer.step()
        self.optimizer.zero_grad()
        self.synthetic_optimizer.zero_grad()

        record = {"step": self.step, "f": f.item(), **parts, "q": q, "lambda": lam,
                  "entropy": mean_entropy(log_probs.detach().exp()).item(), "anchor": self.current_anchor}
        if targets is not None:
            record["target_entropy"] = mean_entropy(targets.detach().exp()).item()
        self.step += 1
        return record

    # ----- checkpoints -----
    def state(self):
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "summary": self.summary.state_dict(),
            "optimizer": self.optimizer.state_dict(),
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
        self.optimizer.load_state_dict(state["optimizer"])
        self.synthetic_optimizer.load_state_dict(state["synthetic_optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        anchor = state["current_anchor"]
        self.current_anchor = int(anchor) if anchor.lstrip("-").isdigit() else anchor
        self.history = state["history"]

    def fit(self, train_data=None, valid_data=None, verbose=True, saved=True, show_progress=True,
            callback_fn=None, checkpoint_path=None, stop_after=None):
        """Run the outer loop to ``foster_outer_steps`` (resuming from ``self.step``).

        ``stop_after`` ends early after that many steps of this call (used to test resumption).
        """
        self.model.eval()  # no dropout while distilling: q compares two deterministic losses
        self.inner_model.eval()
        self.current_anchor = getattr(self, "current_anchor", None)
        progress = tqdm(total=self.steps, initial=self.step, desc=f"{self.label} outer steps",
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
        return self.summary
