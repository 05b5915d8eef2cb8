"""TextSASRec: RecBole's SASRec with its item embedding replaced by a :class:`TextItemEmbedding`.

Item ``i`` is represented by ``proj(E[i])`` where ``E`` is a frozen table of precomputed
language-model embeddings of the item's text (row 0 = padding) and ``proj`` is trainable. The
same representations embed the input sequence and score candidates (tied, as in SASRec).
Everything else (position embedding, transformer, ``forward``, ``predict``,
``full_sort_predict``) is SASRec's own.

On top of SASRec:

* ``loss_all_positions`` (default True): the next-item loss at every position of a sample (as in
  SASRec's paper; the data loader then feeds one sample per non-overlapping window, see
  ``train_window``). False gives RecBole SASRec's loss at the last position only.
* ``loss_type: BCE``: binary cross-entropy with negatives sampled inside the model (uniform
  over the catalogue), besides SASRec's ``CE``.
* *Soft* sequences: probability vectors over a given subset of items, embedded as the
  probability-weighted mix of those items' representations (``encode_soft``). This is the path
  FOSTER trains on; a one-hot distribution gives exactly the hard-input result.
"""

import torch
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_foster.compat import keep_anomaly_detection

with keep_anomaly_detection():  # importing SASRec imports RecBole's SINE (see compat)
    from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_foster.model import students
from recbole_foster.model.text_item_embedding import TextItemEmbedding
from recbole_foster.text_embedding import attach_item_text_embeddings

LOSS_TYPES = ("CE", "BCE")


class _SASRecConfig:
    """``config`` as SASRec.__init__ should read it: SASRec only accepts ``loss_type`` CE/BPR and
    builds a loss module from it; BCE is computed by this class, so SASRec is given CE."""

    def __init__(self, config):
        self._config = config

    def __getitem__(self, key):
        return "CE" if key == "loss_type" else self._config[key]


def _redraw_default_init(module):
    """Re-run the constructor-time initialisation of every torch layer in ``module``, in order
    (only to consume the global RNG exactly as building ``module`` did; see TextSASRec)."""
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


class TextSASRec(SASRec):
    requires_item_text = True  # data loading checks the .item file and text fields
    input_type = InputType.POINTWISE  # negatives for BCE are drawn in calculate_loss
    trains_all_positions = True  # with loss_all_positions, data loading uses the windowed split

    def __init__(self, config, dataset):
        loss_type = config["loss_type"]
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"TextSASRec: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}.")
        loss_all_positions = config["loss_all_positions"]
        if loss_all_positions is None:  # key absent (config built without TextSASRec.yaml)
            loss_all_positions = True
        if not isinstance(loss_all_positions, bool):
            raise ValueError(f"TextSASRec: loss_all_positions must be True or False, got {loss_all_positions!r}.")

        # Same seed, same initial weights as the original TextSASRec (which built its own layers),
        # so earlier results reproduce. SASRec.__init__ draws an (n_items, H) ID embedding from
        # the global RNG that we replace; building SASRec in a forked RNG leaves the seeded stream
        # untouched (and the init independent of the catalogue size). The stream is then consumed
        # as the original did: default init of the projection, the position embedding and one
        # transformer layer (RecBole deep-copies one layer n_layers times), then _init_weights.
        with torch.random.fork_rng(devices=[]):
            super().__init__(_SASRecConfig(config), dataset)
        self.loss_type = loss_type
        self.loss_all_positions = loss_all_positions
        if getattr(dataset, "item_text_embeddings", None) is None:
            attach_item_text_embeddings(config, dataset)
        self.item_embedding = TextItemEmbedding(dataset.item_text_embeddings, self.hidden_size)
        _redraw_default_init(self.position_embedding)
        _redraw_default_init(self.trm_encoder.layer[0])
        self.apply(self._init_weights)
        self.register_load_state_dict_pre_hook(_rename_old_checkpoint_keys)

    @property
    def item_text_embeddings(self):
        """The frozen (n_items, d) text table (not in ``state_dict``; follows the model's device)."""
        return self.item_embedding.table

    # ----- item representations (shared by input and output) -----
    def item_representations(self, item_ids=None):
        """``proj(E[item_ids])``; all items (n_items, H) when ``item_ids`` is None."""
        return students.item_vectors(self, item_ids)

    # ----- encoders (the SASRec family's in :mod:`recbole_foster.model.students`) -----
    def encode_embeddings(self, item_emb, valid):
        """Transformer over already-embedded positions; ``valid`` (B, L) marks real positions.

        Returns the hidden state of every position (B, L, H). The same computation as
        ``SASRec.forward`` before its last-position gather, from embeddings instead of ids.
        """
        return students.encode_embeddings(self, item_emb, valid)

    def encode(self, item_seq):
        """Hidden states (B, L, H) of a batch of item-id sequences (0 = padding)."""
        return students.encode(self, item_seq)

    def encode_soft(self, item_probs, item_ids, valid=None):
        """Hidden states (B, L, H) of soft sequences.

        ``item_probs`` (B, L, K) are distributions over the K items ``item_ids`` (K,); a position
        is embedded as ``item_probs @ proj(E[item_ids])``. ``valid`` (B, L) defaults to all True.
        """
        if valid is None:
            valid = torch.ones(item_probs.shape[:2], dtype=torch.bool, device=item_probs.device)
        return self.encode_embeddings(students.embed(self, item_probs, item_ids), valid)

    # forward, predict and full_sort_predict are SASRec's: hidden state at the last real position,
    # scored against ``self.item_embedding`` / ``self.item_embedding.weight``.

    # ----- scores and losses -----
    def scores(self, seq_output, item_ids=None):
        """Dot products with (a subset of) the tied item representations."""
        return students.scores(self, seq_output, item_ids)

    def bce_loss(self, seq_output, pos_items, neg_items):
        """BCE with sampled negatives; ``neg_items`` is (B,) or (B, n_neg)."""
        pos_score = (seq_output * self.item_representations(pos_items)).sum(-1)
        if neg_items.dim() == 1:
            neg_items = neg_items.unsqueeze(-1)
        neg_score = (seq_output.unsqueeze(1) * self.item_representations(neg_items)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            pos_score, torch.ones_like(pos_score)
        ) + F.binary_cross_entropy_with_logits(neg_score, torch.zeros_like(neg_score))

    def _sample_negatives(self, shape, device):
        """Uniform random real items (ids 1..n_items-1) for the BCE loss."""
        return torch.randint(1, self.n_items, shape, device=device)

    @staticmethod
    def next_item_targets(item_seq, item_seq_len, pos_items):
        """(B, L) next item of every position: the sequence shifted left, then the target item
        after the last real position; 0 where there is no target."""
        targets = torch.zeros_like(item_seq)
        targets[:, :-1] = item_seq[:, 1:]
        rows = torch.arange(len(item_seq), device=item_seq.device)
        targets[rows, item_seq_len - 1] = pos_items
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)
        return targets.masked_fill(positions >= item_seq_len.unsqueeze(1), 0)

    def calculate_loss(self, interaction):
        """Next-item loss at every position (``loss_all_positions``, autoregressive as in SASRec's
        paper) or at the last position only (RecBole's SASRec loss)."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        if not self.loss_all_positions:
            if self.loss_type == "CE":
                return super().calculate_loss(interaction)
            seq_output = self.forward(item_seq, item_seq_len)
            return self.bce_loss(seq_output, pos_items, self._sample_negatives(pos_items.shape, pos_items.device))
        targets = self.next_item_targets(item_seq, item_seq_len, pos_items)
        hidden = self.encode(item_seq)
        mask = targets > 0
        if self.loss_type == "BCE":
            negatives = self._sample_negatives(targets.shape, targets.device)
            return self.bce_loss(hidden[mask], targets[mask], negatives[mask])
        return F.cross_entropy(self.scores(hidden[mask]), targets[mask])


def _rename_old_checkpoint_keys(module, state_dict, prefix, *args):
    """Checkpoints written before TextSASRec reused SASRec name the projection ``text_projection``."""
    for name in ("weight", "bias"):
        old = f"{prefix}text_projection.{name}"
        if old in state_dict:
            state_dict[f"{prefix}item_embedding.projection.{name}"] = state_dict.pop(old)
