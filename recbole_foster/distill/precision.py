"""A saved summary's factors at reduced precision (``set_precision``): fewer bytes per number.

``fp32`` keeps the tensors as trained; ``fp16`` halves them; ``int8`` is affine quantisation, one
(scale, offset) pair per row of the last dimension when rows are long (>= ``ROW_MIN``, e.g. the
core's item-text dimension), else one pair for the whole tensor (short rows would spend more on
their pairs than they save). Loading dequantises to fp32, so a model trains on exactly the numbers
the file keeps; the run that saved the set judges those same numbers.
"""

import torch

PRECISIONS = ("fp32", "fp16", "int8")
ROW_MIN = 64  # int8: rows at least this long get their own scale and offset
FLOAT_FIELDS = ("user_factor", "time_factor", "core", "target_core", "item_factor", "target_codes")


def _rows(tensor):
    return tensor.reshape(-1, tensor.size(-1)) if tensor.dim() > 1 and tensor.size(-1) >= ROW_MIN \
        else tensor.reshape(1, -1)


def quantise(name, tensor, precision):
    """The payload entries that keep ``tensor`` at ``precision`` (dequantised by :func:`dequantise`)."""
    tensor = tensor.detach().float().cpu()
    if precision == "fp32":
        return {name: tensor}
    if precision == "fp16":
        return {name: tensor.half()}
    if precision != "int8":
        raise ValueError(f"set_precision must be one of {PRECISIONS}, got {precision!r}.")
    rows = _rows(tensor)
    low, high = rows.min(dim=1, keepdim=True).values, rows.max(dim=1, keepdim=True).values
    scale = ((high - low) / 255).clamp_min(torch.finfo(torch.float32).tiny)
    codes = (torch.round((rows - low) / scale) - 128).clamp(-128, 127).to(torch.int8)
    return {name: codes.reshape(tensor.shape), f"{name}__scale": scale.squeeze(1), f"{name}__offset": low.squeeze(1)}


def dequantise(payload, name, precision):
    """The fp32 tensor ``name`` of a payload saved at ``precision``."""
    stored = payload[name]
    if precision in (None, "fp32", "fp16"):
        return stored.float()
    rows = _rows(stored).float() + 128
    scale, offset = payload[f"{name}__scale"].unsqueeze(1), payload[f"{name}__offset"].unsqueeze(1)
    return (rows * scale + offset).reshape(stored.shape)


def at_precision(payload, precision):
    """``payload`` with every summary float tensor kept at ``precision`` (other entries unchanged)."""
    out = {k: v for k, v in payload.items() if k not in FLOAT_FIELDS}
    for name in FLOAT_FIELDS:
        if name in payload:
            out.update(quantise(name, payload[name], precision))
    return out


def restored(payload, precision):
    """``payload`` with every summary float tensor back at fp32 (the quantisation entries dropped)."""
    out = {k: v for k, v in payload.items() if not k.endswith(("__scale", "__offset"))}
    for name in FLOAT_FIELDS:
        if name in payload:
            out[name] = dequantise(payload, name, precision)
    return out
