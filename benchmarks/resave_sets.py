"""Re-save finished runs' window sets in the current set format and update their measured bytes.

    python benchmarks/resave_sets.py /work/exp/pareto-ml100k

Every ``results.json`` under the folders whose ``set_file`` is a set of real windows (Random-N,
Random-KD-N, coresets) gets its set written again by :func:`save_windows` (today: windows without
their padding, int16 ids while the catalog allows, no label mask the windows imply, no user tokens:
those stay in ``results.json``) and its ``artifact_bytes`` measured on the new file. The set's
content is unchanged (checked: the windows and every stored label tensor read back equal), so its
metrics stand; a later ``benchmarks/pareto.py`` run over the same work folder
reads the new bytes. A popularity list is written again too (its ids as int16 while the catalog
allows); FOSTER summaries are left as they are.
"""

import json
import os
import sys

import torch

from recbole_foster.distill.artifacts import WINDOW_FORMATS, NotASet, read_set, save_windows, stored_labels_of
from recbole_foster.methods.popularity import LIST_FORMAT, list_bytes_parts, read_list, save_list


def resave(results_path):
    """Re-save one run's window set or popularity list; ``(old bytes, new bytes)`` or None when it
    is neither."""
    with open(results_path) as f:
        results = json.load(f)
    path = results.get("set_file")
    if not path or not os.path.isfile(path):
        return None
    old = os.path.getsize(path)
    try:
        header, payload = read_set(path)
    except NotASet:
        return _resave_list(path, results_path, results, old)
    if header.get("format") not in WINDOW_FORMATS:
        return None
    item_seqs, stored = payload["item_seqs"].long(), stored_labels_of(payload)
    if "selected_users" in header and "selected_users" not in results:  # provenance moves to results.json
        results["selected_users"] = header["selected_users"]
    header = {k: v for k, v in header.items() if k not in ("format", "window_length", "selected_users")}
    save_windows(path, item_seqs, header, stored)
    _, again = read_set(path)
    assert torch.equal(again["item_seqs"].long(), item_seqs)
    back = stored_labels_of(again)
    assert set(back) == set(stored) and all(torch.equal(back[k], stored[k]) for k in stored), path
    new = os.path.getsize(path)
    parts = dict(results.get("artifact_bytes_parts") or {"set_file": old})
    parts["set_file"] = new
    return _write_bytes(results_path, results, parts, old, new)


def _resave_list(path, results_path, results, old):
    """A popularity list written again with today's id width; None when the file is not one."""
    try:
        header, items = read_list(path)
    except (ValueError, UnicodeDecodeError):
        return None
    if header.get("format") != LIST_FORMAT:
        return None
    new = save_list(path, items, {k: v for k, v in header.items() if k not in ("format", "id_bytes")})
    assert (read_list(path)[1] == items).all(), path
    return _write_bytes(results_path, results, list_bytes_parts(path), old, new)


def _write_bytes(results_path, results, parts, old, new):
    results["artifact_bytes"], results["artifact_bytes_parts"] = sum(parts.values()), parts
    with open(results_path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(results_path + ".tmp", results_path)
    return old, new


def main(folders):
    for folder in folders:
        for root, _, files in sorted(os.walk(folder)):
            if "results.json" in files:
                sizes = resave(os.path.join(root, "results.json"))
                if sizes:
                    print(f"{root}: {sizes[0]} -> {sizes[1]} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
