"""TextSASRec: SASRec whose item representations come from item-text embeddings.

Item ``i`` is represented by ``proj(E[i])`` where ``E`` is a frozen table of precomputed
language-model embeddings of the item's text (row 0 = padding) and ``proj`` is trainable. The
same representations embed the input sequence and score candidates (tied, as in SASRec).

Besides item-id sequences the model accepts *soft* sequences: probability vectors over a given
subset of items, embedded as the probability-weighted mix of those items' representations. This
is the path FOSTER trains on; a one-hot distribution gives exactly the hard-input result.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder
from recbole.utils import InputType
from torch import nn

from recbole_foster.data import attach_item_text_embeddings


class TextSASRec(SequentialRecommender):
    requires_item_text = True  # data loading checks the .item file and text fields
    input_type = InputType.POINTWISE  # negatives for BCE are drawn in calculate_loss
    trains_all_positions = True  # calculate_loss uses every position: windowed training split

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = config["hidden_size"]
        self.loss_type = config["loss_type"]
        if self.loss_type not in ("CE", "BCE"):
            raise ValueError(f"TextSASRec: loss_type must be 'CE' or 'BCE', got {self.loss_type!r}.")
        self.initializer_range = config["initializer_range"]

        if getattr(dataset, "item_text_embeddings", None) is None:
            attach_item_text_embeddings(config, dataset)
        # A non-persistent buffer: frozen, moves with .to(device), and kept out of checkpoints
        # (it is rebuilt from the cached embeddings, and would dominate their size).
        self.register_buffer("item_text_embeddings", dataset.item_text_embeddings.clone(), persistent=False)
        self.text_projection = nn.Linear(self.item_text_embeddings.size(1), self.hidden_size)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=self.hidden_size,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    # ----- item representations (shared by input and output) -----
    def item_representations(self, item_ids=None):
        """``proj(E[item_ids])``; all items when ``item_ids`` is None."""
        table = self.item_text_embeddings if item_ids is None else self.item_text_embeddings[item_ids]
        return self.text_projection(table)

    # ----- encoders -----
    def encode_embeddings(self, item_emb, valid):
        """Transformer over already-embedded positions; ``valid`` (B, L) marks real positions.

        Returns the hidden state of every position (B, L, H).
        """
        position_ids = torch.arange(item_emb.size(1), device=item_emb.device)
        input_emb = item_emb + self.position_embedding(position_ids).unsqueeze(0)
        input_emb = self.dropout(self.LayerNorm(input_emb))
        attention_mask = self.get_attention_mask(valid.long())
        return self.trm_encoder(input_emb, attention_mask, output_all_encoded_layers=True)[-1]

    def encode(self, item_seq):
        """Hidden states (B, L, H) of a batch of item-id sequences (0 = padding)."""
        return self.encode_embeddings(self.item_representations(item_seq), item_seq > 0)

    def encode_soft(self, item_probs, item_ids, valid=None):
        """Hidden states (B, L, H) of soft sequences.

        ``item_probs`` (B, L, K) are distributions over the K items ``item_ids`` (K,); a position
        is embedded as ``item_probs @ proj(E[item_ids])``. ``valid`` (B, L) defaults to all True.
        """
        item_emb = item_probs @ self.item_representations(item_ids)
        if valid is None:
            valid = torch.ones(item_probs.shape[:2], dtype=torch.bool, device=item_probs.device)
        return self.encode_embeddings(item_emb, valid)

    def forward(self, item_seq, item_seq_len):
        """Hidden state at each sequence's last real position (B, H), as in RecBole's SASRec."""
        return self.gather_indexes(self.encode(item_seq), item_seq_len - 1)

    # ----- scores and losses -----
    def scores(self, seq_output, item_ids=None):
        """Dot products with (a subset of) the tied item representations."""
        return seq_output @ self.item_representations(item_ids).transpose(0, 1)

    def bce_loss(self, seq_output, pos_items, neg_items):
        """BCE with sampled negatives; ``neg_items`` is (B,) or (B, n_neg)."""
        pos_score = (seq_output * self.item_representations(pos_items)).sum(-1)
        if neg_items.dim() == 1:
            neg_items = neg_items.unsqueeze(-1)
        neg_score = (seq_output.unsqueeze(1) * self.item_representations(neg_items)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            pos_score, torch.ones_like(pos_score)
        ) + F.binary_cross_entropy_with_logits(neg_score, torch.zeros_like(neg_score))

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
        """Next-item loss at every position of the sample (autoregressive, as in SASRec's paper)."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        targets = self.next_item_targets(item_seq, item_seq_len, interaction[self.POS_ITEM_ID])
        hidden = self.encode(item_seq)
        mask = targets > 0
        if self.loss_type == "BCE":
            negatives = torch.randint(1, self.n_items, targets.shape, device=targets.device)
            return self.bce_loss(hidden[mask], targets[mask], negatives[mask])
        return F.cross_entropy(self.scores(hidden[mask]), targets[mask])

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_representations(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.scores(seq_output)
