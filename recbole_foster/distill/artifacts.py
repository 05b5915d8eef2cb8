"""Saving, loading and exporting a distilled set.

A distilled set is a file of plain tensors (the Tucker factors, the item factor, the temperature)
plus a JSON header string (dataset, item id tokens in row order, encoder, label mode,
hyper-parameters), so
``torch.load(path, weights_only=True)`` reads it and nothing in it executes code. ``export_atomic``
writes hard sequences as RecBole atomic files so any RecBole model can train on them.
"""

import json
import os

import torch

from recbole_foster.distill.synthetic import SyntheticSummary
from recbole_foster.label_modes import label_mode_from_header

FORMAT = "recbole_foster.synthetic/1"


def save_synthetic(path, summary, header):
    header = {"format": FORMAT, "temperature": summary.temperature, **header}
    payload = {
        "header": json.dumps(header),
        "user_factor": summary.user_factor.detach().cpu(),
        "time_factor": summary.time_factor.detach().cpu(),
        "core": summary.core.detach().cpu(),
        "item_factor": summary.item_factor.detach().cpu(),
    }
    if summary.separate_targets:
        payload["target_core"] = summary.target_core.detach().cpu()
    if summary.targets_frozen:
        payload["target_codes"] = summary.target_codes.detach().cpu()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(payload, path)
    return path


def load_synthetic(path, dataset=None):
    """``(summary, label mode, header)`` from a saved set; checks it matches ``dataset``'s items if given.

    The label mode is read from the header (``label_mode``), never inferred from the tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--synthetic: no distilled set at {path}.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    header = json.loads(payload["header"])
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a recbole_foster distilled set (format {header.get('format')!r}).")
    if dataset is not None:
        tokens = list(dataset.field2id_token[dataset.iid_field])
        if header["item_tokens"] != tokens:
            raise ValueError(
                f"{path} was distilled on dataset '{header['dataset']}' with a different item catalog "
                f"than the loaded '{dataset.dataset_name}' ({len(header['item_tokens'])} vs {len(tokens)} "
                "item ids); evaluate it with the same --dataset and filtering config."
            )
    mode = label_mode_from_header(header)
    if mode.separate_targets != ("target_core" in payload):
        raise ValueError(f"{path} is damaged: its header names label mode {mode.name!r}, but the file "
                         f"{'lacks' if mode.separate_targets else 'has'} a target core.")
    user_rank, time_rank = payload["user_factor"].size(1), payload["time_factor"].size(1)
    summary = SyntheticSummary(payload["item_factor"], payload["user_factor"].size(0),
                               payload["time_factor"].size(0), user_rank, time_rank, header["temperature"],
                               separate_targets=mode.separate_targets)
    with torch.no_grad():
        summary.user_factor.copy_(payload["user_factor"])
        summary.time_factor.copy_(payload["time_factor"])
        summary.core.copy_(payload["core"])
        if summary.separate_targets:
            summary.target_core.copy_(payload["target_core"])
    if "target_codes" in payload:
        summary.freeze_targets(payload["target_codes"])
    return summary, mode, header


def export_atomic(folder, name, probs, item_tokens, item_texts=None, mode="top1", seed=0):
    """Write a distilled set as atomic files: one hard sequence per synthetic user.

    ``mode`` = "top1" takes the most likely item per position, "sample" draws one.
    """
    if mode == "top1":
        items = probs.argmax(-1)
    elif mode == "sample":
        generator = torch.Generator().manual_seed(seed)
        flat = probs.reshape(-1, probs.size(-1))
        items = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:2])
    else:
        raise ValueError(f"export mode must be 'top1' or 'sample', got {mode!r}.")
    users = [f"synthetic_{u}" for u in range(items.size(0))]
    return write_atomic_sequences(folder, name, items, users, item_tokens, item_texts)


def write_atomic_sequences(folder, name, items, user_tokens, item_tokens, item_texts=None):
    """Write ``folder/name/name.inter`` (+ ``.item``): row u of ``items`` (m, L; 0 = padding) is user u.

    Timestamps are positions, so RecBole's time ordering replays each sequence as given; any
    RecBole model can then be trained on the set.
    """
    out = os.path.join(folder, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, row in zip(user_tokens, items.tolist()):
            for t, item in enumerate(i for i in row if i > 0):
                f.write(f"{user}\t{item_tokens[item]}\t{t}\n")
    if item_texts is not None:
        with open(os.path.join(out, f"{name}.item"), "w") as f:
            f.write("item_id:token\ttext:token_seq\n")
            for item in sorted(set(items.flatten().tolist()) - {0}):
                text = " ".join(item_texts[item].replace("\t", " ").split())
                f.write(f"{item_tokens[item]}\t{text}\n")
    return out
