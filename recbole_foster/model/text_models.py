"""Text forms of RecBole's GRU4Rec, NARM and BERT4Rec: the RecBole model, item embedding swapped.

Each class is the RecBole model itself (``forward``, ``calculate_loss``, ``full_sort_predict``
unchanged) whose ``item_embedding`` is a :class:`TextItemEmbedding`: item i is a trainable
projection of the frozen text embedding of its text, as in :class:`TextSASRec`. BERT4Rec's mask
token has no text; it is one extra trainable row. The projection is initialised by the model's
own ``_init_weights`` (GRU4Rec's leaves Linear layers at PyTorch's default).
"""


from recbole_foster.compat import keep_anomaly_detection

with keep_anomaly_detection():  # RecBole's sequential models import SINE (see compat)
    from recbole.model.sequential_recommender.bert4rec import BERT4Rec
    from recbole.model.sequential_recommender.gru4rec import GRU4Rec
    from recbole.model.sequential_recommender.narm import NARM

from recbole_foster.model.text_item_embedding import TextItemEmbedding
from recbole_foster.text_embedding import attach_item_text_embeddings

LOSS_TYPES = ("CE",)  # full-softmax cross-entropy over the catalog, as TextSASRec's default


def text_item_embedding(model, config, dataset, size, extra_rows=0):
    """A :class:`TextItemEmbedding` for ``model`` (attaching the dataset's text table if needed),
    initialised with the model's ``_init_weights``."""
    if getattr(dataset, "item_text_embeddings", None) is None:
        attach_item_text_embeddings(config, dataset)
    embedding = TextItemEmbedding(dataset.item_text_embeddings, size, extra_rows=extra_rows)
    embedding.apply(model._init_weights)
    if extra_rows:
        embedding.extra.data.normal_(mean=0.0, std=config["initializer_range"])
    return embedding


class TextGRU4Rec(GRU4Rec):
    requires_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_embedding = text_item_embedding(self, config, dataset, self.embedding_size)


class TextNARM(NARM):
    requires_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_embedding = text_item_embedding(self, config, dataset, self.embedding_size)


class TextBERT4Rec(BERT4Rec):
    requires_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.item_embedding = text_item_embedding(self, config, dataset, self.hidden_size, extra_rows=1)
