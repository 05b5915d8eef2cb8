"""A tiny BERT (config + WordPiece vocab + random weights) saved like a real HF model folder."""

import os
import string

import torch

WORDS = ("the a of and to in is for on with game games star war space hero dark light city night "
         "day red blue green fast slow big small quest movie story toy comedy drama action").split()


def make_tiny_bert(folder, seed=0, hidden=32):
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase) + list(string.digits)
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits] + list(string.punctuation) + WORDS
    vocab = list(dict.fromkeys(vocab))
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(os.path.join(folder, "vocab.txt")).save_pretrained(folder)
    return folder
