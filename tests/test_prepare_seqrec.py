"""dataset/prepare.py seqrec: SeqRec Benchmark archives (pickled DataFrames in proc.zip) -> RecBole atomic files."""

import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.test_prepare import prepare

# With --min_inter 2: the duplicate (100, 200, 10) is dropped; items 202, 203, 204 have one row and
# fall in round 1, which leaves user 103 with one row: it falls in round 2. User 102's lists differ
# in length and "bad id" has a space: both are malformed.
USER2ITEM = pd.DataFrame({
    "UserID": [100, 101, 102, 103],
    "ItemID": [[np.int64(200), 201, 200, 202], [200, 201, 203, "bad id"], [200, 201], [204, 200]],
    "Timestamp": [[10, 20, 10, np.int64(30)], [15, 25, 35, 45], [5], [40, 50]],
})
ITEM2TITLE = pd.DataFrame({"ItemID": [200, 999, 200], "Title": ["Rose &amp; Oud <b>Cream</b>\t50ml", "Unused", "Second"]})

SEQREC_INTER = """\
user_id:token	item_id:token	timestamp:float
100	200	10
100	201	20
101	200	15
101	201	25
"""
SEQREC_ITEM = """\
item_id:token	title:token_seq
200	Rose & Oud Cream 50ml
201	201
"""
SEQREC_STATS = {
    "users": 2, "items": 2, "interactions": 4, "avg_seq_len": 2.0, "density": 1.0,
    "cleaning": {"malformed_lines": {"user2item.pkl": 2}, "items_without_title_row": 1,
                 "title_from_brand_categories": 0, "title_from_item_id": 1,
                 "interactions_read": 9, "duplicates_dropped": 1, "kcore_rounds": 2},
}


def write_archive(path, frames, folder=False):
    """A proc.zip as the benchmark ships it (members under proc/), or the extracted folder."""
    if folder:
        path.mkdir()
        for name, frame in frames.items():
            (path / name).write_bytes(pickle.dumps(frame, protocol=5))
    else:
        with zipfile.ZipFile(path, "w") as z:
            for name, frame in frames.items():
                z.writestr(f"proc/{name}", pickle.dumps(frame, protocol=5))
    return str(path)


def run_seqrec(tmp_path, archive):
    out = tmp_path / "out"
    code = prepare.main(["seqrec", "--archive", archive, "--name", "beauty", "--out", str(out), "--min_inter", "2"])
    return code, out / "beauty"


@pytest.mark.parametrize("folder", [False, True], ids=["zip", "folder"])
def test_seqrec_archive(tmp_path, folder):
    archive = write_archive(tmp_path / ("proc" if folder else "proc.zip"),
                            {"user2item.pkl": USER2ITEM, "item2title.pkl": ITEM2TITLE}, folder)
    code, out = run_seqrec(tmp_path, archive)
    assert code == 0
    assert (out / "beauty.inter").read_text() == SEQREC_INTER
    assert (out / "beauty.item").read_text() == SEQREC_ITEM
    assert json.loads((out / "stats.json").read_text()) == SEQREC_STATS


class _Touch:
    """A pickle that would create a file when loaded without restrictions."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_seqrec_refuses_foreign_globals(tmp_path, capsys):
    marker = tmp_path / "touched"
    evil = pd.DataFrame({"ItemID": [200], "Title": [_Touch(str(marker))]})
    archive = write_archive(tmp_path / "proc.zip", {"user2item.pkl": USER2ITEM, "item2title.pkl": evil})
    code, out = run_seqrec(tmp_path, archive)
    assert code == 2
    err = capsys.readouterr().err
    assert "item2title.pkl: not loaded as a plain pandas DataFrame" in err
    assert "io.open, which a plain DataFrame does not need" in err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("frames, message", [
    ({"user2item.pkl": USER2ITEM}, "has no item2title.pkl"),
    ({"user2item.pkl": USER2ITEM.rename(columns={"Timestamp": "Time"}), "item2title.pkl": ITEM2TITLE},
     "user2item.pkl: holds ['UserID', 'ItemID', 'Time']; expected a DataFrame with columns"),
], ids=["no-titles", "wrong-columns"])
def test_seqrec_bad_archive(tmp_path, capsys, frames, message):
    code, out = run_seqrec(tmp_path, write_archive(tmp_path / "proc.zip", frames))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_seqrec_not_an_archive(tmp_path, capsys):
    pointer = tmp_path / "proc.zip"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\n")
    code, _ = run_seqrec(tmp_path, str(pointer))
    assert code == 2
    assert "is neither a zip file nor a folder" in capsys.readouterr().err
    code, _ = run_seqrec(tmp_path, str(tmp_path / "missing.zip"))
    assert code == 2
    assert "missing.zip: not found" in capsys.readouterr().err
