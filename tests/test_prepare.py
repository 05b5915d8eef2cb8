"""dataset/prepare.py: raw Amazon 2018 / Yelp dumps -> RecBole atomic files (tiny hand-made dumps)."""

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prepare", ROOT / "dataset" / "prepare.py")
prepare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare)

# (reviewerID, asin, overall, unixReviewTime). With --min_inter 2: u4 and item C fall in round 1,
# which leaves u3 (its B is a duplicate) and item D with one row each: they fall in round 2.
AMAZON_REVIEWS = [
    ("u1", "A", 5.0, 100), ("u1", "B", 4.0, 200), ("u1", "A", 5.0, 100), ("u1", "E", 3.0, 50),
    ("u1", "F", 2.0, 60), ("u2", "A", 3.0, 150), ("u2", "B", 2.0, 250), ("u2", "A", 4.5, 350),
    ("u2", "D", 1.0, 300), ("u3", "B", 5.0, 120), ("u3", "C", 4.0, 130), ("u3", "B", 5.0, 120),
    ("u4", "D", 3.0, 400), ("u5", "A", 1.0, 500), ("u5", "E", 2.0, 600), ("u5", "F", 3.0, 700),
]
MALFORMED_REVIEWS = ['{"reviewerID": "u9", "asin": "A"', "not json at all", "[1, 2]",
                     '{"reviewerID": "u9", "asin": "A", "overall": 5.0}', ""]
MALFORMED_META = ["{'asin': broken", '{"title": "no asin"}']

AMAZON_INTER = """\
user_id:token	item_id:token	rating:float	timestamp:float
u1	E	3	50
u1	F	2	60
u1	A	5	100
u1	B	4	200
u2	A	3	150
u2	B	2	250
u2	A	4.5	350
u5	A	1	500
u5	E	2	600
u5	F	3	700
"""
AMAZON_ITEM = """\
item_id:token	title:token_seq	description:token_seq	brand:token	categories:token_seq
A	Super Mario & Luigi (Switch)	Line one with tab line two	Nintendo	Video Games, Nintendo Switch
B	Sega, Video Games		Sega	Video Games
E	\"\"\"Weird\"\" Al's Game\"			
F	F			
"""
AMAZON_STATS = {
    "users": 3, "items": 4, "interactions": 10, "avg_seq_len": 3.3333, "density": 0.83333333,
    "cleaning": {"malformed_lines": {"reviews.json": 4, "meta.json": 2}, "items_without_meta": 1,
                 "title_from_brand_categories": 1, "title_from_item_id": 1,
                 "interactions_read": 16, "duplicates_dropped": 2, "kcore_rounds": 2},
}


def write_lines(path, lines, gz=False):
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def amazon_reviews(dump):
    return [dump({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t, "reviewText": "ok"})
            for u, i, r, t in AMAZON_REVIEWS] + MALFORMED_REVIEWS


def amazon_meta_2018():
    """Strict JSON as in the 2018 dumps: description and category are lists; A is repeated."""
    records = [
        {"asin": "A", "title": '<span class="x">Super Mario</span> &amp; Luigi\t(Switch)',
         "description": ["Line one\twith tab", "<b>line</b>\ntwo\r\n"], "brand": "Nintendo",
         "category": ["Video Games", "Nintendo Switch"]},
        {"asin": "B", "title": "", "brand": "Sega", "category": ["Video Games"]},
        {"asin": "C", "title": "Unused"},
        {"asin": "E", "title": '"Weird" Al\'s Game', "description": [], "brand": "", "category": []},
        {"asin": "A", "title": "Second copy of A"},
    ]
    return [json.dumps(r) for r in records] + MALFORMED_META


def amazon_meta_literal():
    """Python literals as in the older dumps: description a string, categories a list of lists."""
    records = [
        {"asin": "A", "title": '<span class="x">Super Mario</span> &amp; Luigi\t(Switch)',
         "description": "Line one\twith tab <b>line</b>\ntwo\r\n", "brand": "Nintendo",
         "categories": [["Video Games", "Nintendo Switch"]]},
        {"asin": "B", "brand": "Sega", "categories": [["Video Games"]]},
        {"asin": "C", "title": "Unused"},
        {"asin": "E", "title": '"Weird" Al\'s Game'},
    ]
    return [repr(r) for r in records] + MALFORMED_META


def run_amazon(tmp_path, reviews, meta, *extra):
    out = tmp_path / "out"
    code = prepare.main(["amazon", "--reviews", reviews, "--meta", meta, "--name", "games",
                         "--out", str(out), "--min_inter", "2", *extra])
    return code, out / "games"


def assert_amazon_output(folder):
    assert (folder / "games.inter").read_text() == AMAZON_INTER
    assert (folder / "games.item").read_text() == AMAZON_ITEM
    assert json.loads((folder / "stats.json").read_text()) == AMAZON_STATS


def test_amazon_strict_json(tmp_path, capsys):
    reviews = write_lines(tmp_path / "reviews.json", amazon_reviews(json.dumps))
    meta = write_lines(tmp_path / "meta.json", amazon_meta_2018())
    code, folder = run_amazon(tmp_path, reviews, meta)
    assert code == 0
    assert_amazon_output(folder)
    out = capsys.readouterr().out
    assert '"malformed_lines": {"reviews.json": 4, "meta.json": 2}' in out
    assert """\
dataset                  games
users                        3
items                        4
interactions                10
avg seq length            3.33
density               0.833333
""" in out


def test_amazon_python_literal_gzip_without_gz_extension(tmp_path):
    reviews = write_lines(tmp_path / "reviews.json", amazon_reviews(repr), gz=True)
    meta = write_lines(tmp_path / "meta.json", amazon_meta_literal(), gz=True)
    assert (tmp_path / "reviews.json").read_bytes()[:2] == b"\x1f\x8b"
    code, folder = run_amazon(tmp_path, reviews, meta)
    assert code == 0
    assert_amazon_output(folder)


def test_item_file_reads_back_like_recbole(tmp_path):
    """RecBole reads with pandas (python engine, tab, default quoting): same rows and texts."""
    reviews = write_lines(tmp_path / "reviews.json", amazon_reviews(json.dumps))
    meta = write_lines(tmp_path / "meta.json", amazon_meta_2018())
    _, folder = run_amazon(tmp_path, reviews, meta)
    for name, columns in (("games.item", 5), ("games.inter", 4)):
        lines = (folder / name).read_text().splitlines()
        assert all(len(line.split("\t")) == columns for line in lines)
    items = pd.read_csv(folder / "games.item", sep="\t", dtype=str, engine="python", keep_default_na=False)
    assert items["title:token_seq"].tolist() == ["Super Mario & Luigi (Switch)", "Sega, Video Games",
                                                 '"Weird" Al\'s Game', "F"]


YELP_BUSINESS = [
    {"business_id": "b1", "name": "Pizza &amp; Co", "city": "Nashville", "categories": "Restaurants, Pizza"},
    {"business_id": "b2", "name": "", "city": " nashville ", "categories": "Bars, Nightlife"},
    {"business_id": "b3", "name": "Hot Chicken", "city": "NASHVILLE", "categories": "Chicken"},
    {"business_id": "b4", "name": "Philly Cheesesteak", "city": "Philadelphia", "categories": "Sandwiches"},
    {"business_id": "b6", "name": None, "city": "Nashville", "categories": None},
]
# (user, business, stars, date). y3 has one Nashville review (b3) and three in Philadelphia: the
# city filter comes first, so y3 falls in round 1 and b3 (left with y2 only) in round 2.
YELP_REVIEWS = [
    ("y1", "b1", 5, "2020-01-01 10:00:00"), ("y1", "b2", 4, "2020-01-02 11:30:00"),
    ("y1", "b1", 5, "2020-01-01 10:00:00"), ("y2", "b1", 3, "2020-02-01 09:00:00"),
    ("y2", "b2", 2, "2020-02-03 12:00:00"), ("y2", "b3", 4, "2020-03-01 08:00:00"),
    ("y2", "b6", 5, "2020-03-05 20:15:00"), ("y3", "b3", 1, "2020-01-02 11:30:00"),
    ("y3", "b4", 1, "2020-01-03 11:30:00"), ("y3", "b4", 2, "2020-01-04 11:30:00"),
    ("y3", "b4", 3, "2020-01-05 11:30:00"), ("y4", "b1", 2, "2020-04-01 00:00:00"),
    ("y4", "b6", 3, "2020-01-01 10:00:00"),
]


def yelp_files(tmp_path):
    business = write_lines(tmp_path / "business.json", [json.dumps(b) for b in YELP_BUSINESS]
                           + ['{"business_id": "b5", "name": "No city"}', "garbage"])
    reviews = [json.dumps({"review_id": f"r{n}", "user_id": u, "business_id": b, "stars": s, "date": d,
                           "text": "Great!\nReally."}) for n, (u, b, s, d) in enumerate(YELP_REVIEWS)]
    reviews += ['{"review_id": "r98", "user_id": "y1", "business_id": "b2", "stars": 1, "date": "yesterday"}',
                '{"review_id": "r99", "user_id":']
    return business, write_lines(tmp_path / "review.json", reviews)


def test_yelp_city_before_kcore(tmp_path, capsys):
    business, reviews = yelp_files(tmp_path)
    stats = prepare.prepare_yelp(business, reviews, " nashVILLE", "yelp", str(tmp_path / "out"), min_inter=2)
    folder = tmp_path / "out" / "yelp"
    assert (folder / "yelp.inter").read_text() == """\
user_id:token	item_id:token	rating:float	timestamp:float
y1	b1	5	1577872800
y1	b2	4	1577964600
y2	b1	3	1580547600
y2	b2	2	1580731200
y2	b6	5	1583439300
y4	b6	3	1577872800
y4	b1	2	1585699200
"""
    assert (folder / "yelp.item").read_text() == """\
item_id:token	title:token_seq	categories:token_seq
b1	Pizza & Co	Restaurants, Pizza
b2	Bars, Nightlife	Bars, Nightlife
b6	b6	
"""
    expected = {"users": 3, "items": 3, "interactions": 7, "avg_seq_len": 2.3333, "density": 0.77777778,
                "cleaning": {"malformed_lines": {"business.json": 2, "review.json": 2},
                             "title_from_brand_categories": 1, "title_from_item_id": 1, "city_businesses": 4,
                             "interactions_read": 10, "duplicates_dropped": 1, "kcore_rounds": 2}}
    assert stats == expected
    assert json.loads((folder / "stats.json").read_text()) == expected
    assert "density" in capsys.readouterr().out


def test_yelp_unknown_city_lists_cities(tmp_path, capsys):
    business, reviews = yelp_files(tmp_path)
    code = prepare.main(["yelp", "--business", business, "--reviews", reviews, "--city", "Nashvile",
                         "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--city 'Nashvile': no business" in capsys.readouterr().err


def test_kcore_iterates_to_fixed_point():
    # k=2: i3 falls first, then u2 (left with i2 only), then i2 (left with u1 only).
    df = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3"],
                       "item_id": ["i1", "i2", "i4", "i2", "i3", "i1", "i4"]})
    kept, rounds = prepare.kcore(df, 2)
    assert rounds == 3
    assert sorted(zip(kept["user_id"], kept["item_id"])) == [("u1", "i1"), ("u1", "i4"), ("u3", "i1"), ("u3", "i4")]


def test_clean_text():
    assert prepare.clean_text("a &lt;3 b\t<br/>c\r\nd &amp; <i>e</i>\x00f") == "a <3 b c d & e f"
    assert prepare.clean_text([["x", "y"], "z", None], sep=", ") == "x, y, z"
    assert prepare.clean_text(None) == ""
    assert prepare.clean_text(" ".join(map(str, range(200)))) == " ".join(map(str, range(prepare.MAX_WORDS)))


def test_stats_of_atomic_applies_kcore(tmp_path, capsys):
    inter = tmp_path / "x.inter"
    rows = ["u1\ti1\t1", "u1\ti2\t2", "u2\ti1\t3", "u2\ti2\t4", "u3\ti1\t5"]
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    assert prepare.stats_of_atomic(str(inter), min_inter=2) == {
        "users": 2, "items": 2, "interactions": 4, "avg_seq_len": 2.0, "density": 1.0}
    assert prepare.main(["stats", str(inter), "--min_inter", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 5


def test_meta_passed_as_reviews_exits_2_without_traceback(tmp_path):
    meta = write_lines(tmp_path / "meta.json", amazon_meta_2018())
    result = subprocess.run([sys.executable, str(ROOT / "dataset" / "prepare.py"), "amazon", "--reviews", meta,
                             "--meta", meta, "--name", "games", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert f"error: {meta}: holds records with keys" in result.stderr
    assert "expected Amazon 2018 review records" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_reviews_passed_as_meta_fails_before_reading(tmp_path, capsys, monkeypatch):
    reviews = write_lines(tmp_path / "reviews.json", amazon_reviews(json.dumps))
    monkeypatch.setattr(prepare, "iter_records", lambda *a: pytest.fail("read a dump before checking inputs"))
    code, folder = run_amazon(tmp_path, reviews, reviews)
    assert code == 2
    assert "expected Amazon 2018 metadata records" in capsys.readouterr().err
    assert not folder.exists()


def test_missing_path(tmp_path, capsys):
    meta = write_lines(tmp_path / "meta.json", amazon_meta_2018())
    code, _ = run_amazon(tmp_path, str(tmp_path / "nope.json.gz"), meta)
    assert code == 2
    assert f"{tmp_path / 'nope.json.gz'}: file not found; expected Amazon 2018 review records" in capsys.readouterr().err


def test_truncated_gzip(tmp_path, capsys):
    reviews = tmp_path / "reviews.json.gz"
    reviews.write_bytes(gzip.compress(("\n".join(amazon_reviews(json.dumps)) * 50).encode())[:-40])
    meta = write_lines(tmp_path / "meta.json", amazon_meta_2018())
    code, _ = run_amazon(tmp_path, str(reviews), meta)
    assert code == 2
    assert "damaged or truncated" in capsys.readouterr().err
