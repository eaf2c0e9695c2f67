"""The data and scoring side of the G2P example (fastrnn.examples._g2p_data):
WER/PER as the literature scores them (any reference counts; PER against the
closest reference, ties to the first listed; sums over words, not a mean of
ratios), the split's readers on small files (garbled lines named by number),
the seeded dev hold-out (a word's variants on one side), the vocabularies,
the SVG attention plots (well-formed XML, one cell per weight), and, where
the data and the phonetisaurus wheel are here, the real split's counts and a
smoke run of tools/g2p_phonetisaurus.py."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from fastrnn.examples import _g2p_data as G
from fastrnn.losses import edit_distance

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]


def t(s):
    """'AH B' -> ('AH', 'B')."""
    return tuple(s.split())


# --------------------------------------------------------------------------
# scoring

def test_second_variant_counts_as_right():
    refs = [[t("AE B Z"), t("EY B IY EH S")]]
    s = G.score([t("EY B IY EH S")], refs)
    assert (s.wer, s.per, s.word_errors, s.edits) == (0.0, 0.0, 0, 0)
    assert s.ref_phones == 5                  # the matched variant's length


def test_per_uses_the_closest_reference():
    # one edit from the second reference, four from the first
    refs = [[t("K AA R"), t("EY B IY EH S")]]
    s = G.score([t("EY B IY EH Z")], refs)
    assert (s.word_errors, s.edits, s.ref_phones) == (1, 1, 5)
    assert s.per == pytest.approx(20.0)
    assert s.wer == 100.0


def test_ties_between_references_take_the_first_listed():
    # 'A B' is one edit from both 'A B C' and 'A': the first listed sets the length
    s = G.score([t("A B")], [[t("A B C"), t("A")]])
    assert (s.edits, s.ref_phones) == (1, 3)
    s = G.score([t("A B")], [[t("A"), t("A B C")]])
    assert (s.edits, s.ref_phones) == (1, 1)
    assert G.closest_reference(t("A B"), [t("A B C"), t("A")]) == (0, 1)
    assert G.closest_reference(t("A B"), [t("A"), t("A B C")]) == (0, 1)


def test_empty_hypothesis_is_an_error_against_the_shortest_reference():
    s = G.score([()], [[t("A B C"), t("D E")]])
    assert (s.wer, s.word_errors, s.edits, s.ref_phones) == (100.0, 1, 2, 2)
    assert s.per == 100.0
    # counted among the words, not skipped
    s = G.score([(), t("X")], [[t("A B")], [t("X")]])
    assert (s.words, s.word_errors, s.wer) == (2, 1, 50.0)
    assert (s.edits, s.ref_phones) == (2, 3)


def test_hypothesis_longer_than_every_reference():
    s = G.score([t("A B C D E")], [[t("A B"), t("A C")]])
    assert (s.edits, s.ref_phones) == (3, 2)
    assert s.per == pytest.approx(150.0)      # PER can pass 100%


def test_per_is_a_ratio_of_sums_over_words():
    # word 1: 1 edit / 2 phones; word 2: 0 / 8. Sums: 1/10 = 10% (a mean of
    # per-word ratios would say 25%)
    hyps = [t("A X"), t("A B C D E F G H")]
    refs = [[t("A B")], [t("A B C D E F G H")]]
    s = G.score(hyps, refs)
    assert (s.words, s.word_errors, s.edits, s.ref_phones) == (2, 1, 1, 10)
    assert s.per == pytest.approx(10.0)
    assert s.wer == pytest.approx(50.0)


def test_score_matches_a_brute_force_oracle(rng):
    """Random words against a direct reading of the rule: min over references
    of (distance, position)."""
    phones = ["A", "B", "C", "D"]
    hyps, refs = [], []
    for _ in range(200):
        refs.append([tuple(rng.choice(phones, rng.integers(1, 5)))
                     for _ in range(rng.integers(1, 4))])
        hyps.append(tuple(rng.choice(phones, rng.integers(0, 5))))
    edits = lengths = wrong = 0
    for h, rs in zip(hyps, refs):
        d, j = min((edit_distance(list(h), list(r)), j) for j, r in enumerate(rs))
        edits, lengths, wrong = edits + d, lengths + len(rs[j]), wrong + (h not in rs)
    s = G.score(hyps, refs)
    assert (s.edits, s.ref_phones, s.word_errors) == (edits, lengths, wrong)
    assert s.per == pytest.approx(100 * edits / lengths)
    assert s.wer == pytest.approx(100 * wrong / 200)


def test_score_accepts_id_arrays():
    s = G.score([np.array([3, 1])], [[np.array([3, 1, 2]), np.array([3, 1])]])
    assert (s.wer, s.per) == (0.0, 0.0)


@pytest.mark.parametrize("hyps, refs, err, match", [
    ([t("A")], [[t("A")], [t("B")]], ValueError, "1 hypotheses for 2"),
    ([], [], ValueError, "no words"),
    ([t("A")], [[]], ValueError, r"refs\[0\] has no reference"),
    ([t("A"), t("A")], [[t("A")], [t("B"), ()]], ValueError, r"refs\[1\]\[1\] is an empty"),
    (["A B"], [[t("A B")]], TypeError, r"hyps\[0\] must be a list or tuple"),
    ([t("A")], [[t("A"), "A B"]], TypeError, r"refs\[0\]\[1\] must be a list or tuple"),
    ([t("A")], [t("A B")], TypeError, r"refs\[0\] must be a list of references.*wrap"),
    ([t("A")], ["A B"], TypeError, r"refs\[0\] must be a list of references"),
    ([[("A",)]], [[t("A")]], TypeError, r"hyps\[0\] must be a flat sequence"),
])
def test_score_refuses_bad_input(hyps, refs, err, match):
    with pytest.raises(err, match=match):
        G.score(hyps, refs)


# --------------------------------------------------------------------------
# reading the split

def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return str(path)


def small_split(folder, train=None, ref=None):
    write(folder / G.TRAIN_FILE, train if train is not None else
          "AB\tAE B\nAB\tEY B IY\nCAT\tK AE T\nDOG\tD AO G\n")
    write(folder / G.REF_FILE, ref if ref is not None else
          "ABS\tAE B Z\tEY B IY EH S\nCOT\tK AA T\n")
    return folder


def test_read_train_keeps_variants_in_order(tmp_path):
    pairs = G.read_train(write(tmp_path / "x.train", "AB\tAE B\nAB\tEY B IY\nC\tS IY\n"))
    assert pairs == [("AB", t("AE B")), ("AB", t("EY B IY")), ("C", t("S IY"))]
    assert G.group(pairs) == [("AB", [t("AE B"), t("EY B IY")]), ("C", [t("S IY")])]


def test_read_refs_keeps_every_reference(tmp_path):
    items = G.read_refs(write(tmp_path / "x.ref", "ABS\tAE B Z\tEY B IY EH S\nC\tS IY\n"))
    assert items == [("ABS", [t("AE B Z"), t("EY B IY EH S")]), ("C", [t("S IY")])]


@pytest.mark.parametrize("reader, text, match", [
    (G.read_train, "AB\tAE B\nCAT K AE T\nDOG\tD AO G\n", r":2: expected WORD<TAB>PHONES"),
    (G.read_train, "AB\tAE B\nAB\tEY\tB\n", r":2: expected WORD<TAB>PHONES"),
    (G.read_train, "AB\tAE B\n\nC\tS IY\n", r":2: expected"),
    (G.read_train, "AB\tAE B\nC\t  \n", r":2: empty pronunciation"),
    (G.read_train, "AB\tAE B\nA B\tEY\n", r":2: garbled word 'A B'"),
    (G.read_train, "\tAE B\n", r":1: garbled word ''"),
    (G.read_train, "", r"no pronunciation"),
    (G.read_refs, "ABS\tAE B Z\nCOT\n", r":2: expected WORD<TAB>PHONES\[<TAB>"),
    (G.read_refs, "ABS\tAE B Z\t\n", r":1: empty pronunciation"),
    (G.read_refs, "ABS\tAE B Z\nC\tS\nABS\tEY\n",
     r":3: word 'ABS' listed again \(first at line 1\)"),
    (G.read_refs, "", r"no word"),
])
def test_garbled_files_are_refused_with_the_line(tmp_path, reader, text, match):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(ValueError, match=match):
        reader(path)


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    path = write(tmp_path / "bad.train", b"AB\tAE B\nC\xff\tS IY\n", mode="wb")
    with pytest.raises(ValueError, match=r"bad.train:2: not UTF-8"):
        G.read_train(path)


def test_load_split_from_a_folder(tmp_path):
    train, test = G.load_split(small_split(tmp_path))
    assert train[:2] == [("AB", t("AE B")), ("AB", t("EY B IY"))] and len(train) == 4
    assert test == [("ABS", [t("AE B Z"), t("EY B IY EH S")]), ("COT", [t("K AA T")])]


def test_load_split_refuses_a_leaking_split(tmp_path):
    small_split(tmp_path, ref="CAT\tK AE T\nCOT\tK AA T\n")
    with pytest.raises(ValueError, match=r"1 test words are also training words \(e.g. 'CAT'\)"):
        G.load_split(tmp_path)


def test_missing_files_are_named(tmp_path, monkeypatch):
    write(tmp_path / G.TRAIN_FILE, "A\tEY\n")
    with pytest.raises(FileNotFoundError, match=r"has no g014b2b.ref"):
        G.load_split(tmp_path)
    monkeypatch.setenv(G.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*has no g014b2b.train"):
        G.find_data()
    small_split(tmp_path)
    monkeypatch.setenv(G.DATA_ENV, str(tmp_path))
    assert G.find_data() == str(tmp_path)      # the environment variable wins


# --------------------------------------------------------------------------
# dev hold-out

def variant_pairs(n_words=300):
    """Pairs where every third word has two or three variants."""
    pairs = []
    for i in range(n_words):
        w = f"W{i:03d}"
        pairs += [(w, (f"P{k}", "AH")) for k in range(1 + (i % 3 == 0) + (i % 9 == 0))]
    return pairs


def test_dev_split_keeps_variants_of_a_word_together():
    pairs = variant_pairs()
    train, dev = G.dev_split(pairs, fraction=0.1, seed=3)
    dev_words = [w for w, _ in dev]
    assert len(dev_words) == 30 and dev_words == sorted(set(dev_words))
    assert not set(dev_words) & {w for w, _ in train}
    by_word = dict(G.group(pairs))
    for w, refs in dev:                        # every variant, in file order
        assert refs == by_word[w]
    assert any(len(refs) > 1 for _, refs in dev)
    assert len(train) + sum(len(refs) for _, refs in dev) == len(pairs)
    assert train == [p for p in pairs if p[0] not in set(dev_words)]   # order kept


def test_dev_split_is_seeded():
    pairs = variant_pairs()
    a = G.dev_split(pairs, fraction=0.1, seed=3)
    assert G.dev_split(pairs, fraction=0.1, seed=3) == a
    b = G.dev_split(pairs, fraction=0.1, seed=4)
    assert [w for w, _ in b[1]] != [w for w, _ in a[1]]


@pytest.mark.parametrize("kw, err, match", [
    (dict(fraction=0.0), ValueError, r"fraction must be a number in \(0, 1\)"),
    (dict(fraction=1.0), ValueError, r"fraction must be"),
    (dict(fraction="0.1"), ValueError, r"fraction must be"),
    (dict(fraction=0.001), ValueError, r"holds out 0"),
    (dict(seed=1.5), TypeError, r"seed must be an int"),
])
def test_dev_split_refuses_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        G.dev_split(variant_pairs(), **kw)


# --------------------------------------------------------------------------
# vocabularies

def test_vocab_round_trip_and_sorted_symbols():
    pairs = [("ABBEY", t("AE B IY")), ("O'NEIL", t("OW N IY L")), ("ZOO", t("Z UW"))]
    g, p = G.vocabs(pairs)
    assert g.symbols == tuple(sorted(set("ABBEYO'NEILZOO")))
    assert p.symbols == tuple(sorted({"AE", "B", "IY", "OW", "N", "L", "Z", "UW"}))
    for w, ph in pairs:
        assert "".join(g.decode(g.encode(w))) == w
        assert p.decode(p.encode(ph)) == ph
        assert g.encode(w).dtype == np.int64
    ids, lengths = g.encode_batch([w for w, _ in pairs])
    assert ids.shape == (3, 6) and lengths.tolist() == [5, 6, 3]
    assert "".join(g.decode(ids[2, :lengths[2]])) == "ZOO" and ids[2, 3:].tolist() == [0, 0, 0]


def test_vocab_names_unknown_symbols_and_bad_ids():
    g, p = G.vocabs([("AB", t("AE B"))])
    with pytest.raises(ValueError, match=r"unknown grapheme 'Q' in 'QA'"):
        g.encode("QA")
    with pytest.raises(ValueError, match=r"unknown phone 'ZH' in 'AZURE'"):
        p.encode(t("AE ZH"), word="AZURE")
    with pytest.raises(ValueError, match=r"unknown grapheme 'X' in 'BOX'"):   # words= named
        g.encode_batch(["AB", "BX"], words=["AB", "BOX"])
    with pytest.raises(ValueError, match=r"phone ids must be integers in 0..1"):
        p.decode([0, 2])
    with pytest.raises(ValueError, match=r"ids must be 1-D"):
        p.decode([[0]])
    with pytest.raises(ValueError, match=r"1 words for 2 seqs"):
        g.encode_batch(["AB", "BA"], words=["AB"])
    with pytest.raises(ValueError, match=r"seqs\[1\] is empty"):
        g.encode_batch(["AB", ""])
    with pytest.raises(TypeError, match=r"non-empty str"):
        G.Vocab(["A", 1])


# --------------------------------------------------------------------------
# attention plots

def svg_root(path):
    root = ET.parse(path).getroot()            # raises on malformed XML
    assert root.tag == SVG + "svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    return root


def cells(root):
    """The heatmap cells: rects with a <title> (their value)."""
    return [r for r in root.iter(SVG + "rect") if r.find(SVG + "title") is not None]


def texts(root):
    return [el.text for el in root.iter(SVG + "text")]


def test_attention_svg_is_well_formed_with_labels(tmp_path):
    w = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]], np.float32)
    path = G.write_attention_svg(tmp_path / "a.svg", w, "A&B", ["<s>", "B"], title="A&B <x>")
    root = svg_root(path)
    cs = cells(root)
    assert len(cs) == 6
    assert [c.find(SVG + "title").text for c in cs[:2]] == ["<s> / A: 0.700", "<s> / &: 0.200"]
    # a higher weight is darker
    assert cs[0].get("fill") != cs[3].get("fill") and cs[3].get("fill") == "rgb(255,255,255)"
    labels = texts(root)
    for want in ("A&B <x>", "&", "<s>", "input (graphemes)", "output (phones)",
                 "attention weight"):
        assert want in labels


def test_attention_grid_svg_holds_every_panel(tmp_path):
    rng = np.random.default_rng(0)
    panels = [(rng.dirichlet(np.ones(len(w)), size=len(p)), w, p, w)
              for w, p in [("ABBEY", ["AE", "B", "IY", "</s>"]), ("A", ["EY", "</s>"]),
                           ("ZOO", ["Z", "UW", "</s>"]), ("OX", ["AA", "K", "S", "</s>"])]]
    root = svg_root(G.write_attention_grid_svg(tmp_path / "g.svg", panels, columns=3,
                                               title="dev words"))
    assert len(cells(root)) == 20 + 2 + 9 + 8
    labels = texts(root)
    for want in ("dev words", "ABBEY", "ZOO", "OX"):
        assert want in labels
    xs = {float(c.get("x")) for c in cells(root)}
    ys = {float(c.get("y")) for c in cells(root)}
    assert min(xs) < 100 and max(xs) > 300    # panels side by side ...
    assert max(ys) - min(ys) > 150             # ... and a second row


@pytest.mark.parametrize("weights, src, out, err, match", [
    (np.ones((2, 3)) / 3, "AB", ["X", "Y"], ValueError, r"shape \(2, 3\), expected .* \(2, 2\)"),
    (np.ones((3, 2)) / 2, "AB", ["X", "Y"], ValueError, r"shape \(3, 2\), expected"),
    (np.ones(2) / 2, "AB", ["X"], ValueError, r"2-D \(T_out, S\)"),
    (np.zeros((0, 2)), "AB", [], ValueError, r"non-empty 2-D"),
    (np.array([[np.nan, 1.0]]), "AB", ["X"], ValueError, r"finite attention probabilities"),
    (np.array([[1.5, 0.0]]), "AB", ["X"], ValueError, r"in \[0, 1\]"),
    (np.array([[-0.1, 1.0]]), "AB", ["X"], ValueError, r"in \[0, 1\]"),
    ([["a", "b"]], "AB", ["X"], TypeError, r"weights must be an array of numbers"),
])
def test_attention_svg_refuses_bad_shapes_and_values(tmp_path, weights, src, out, err, match):
    with pytest.raises(err, match=match):
        G.write_attention_svg(tmp_path / "a.svg", weights, src, out)
    assert not (tmp_path / "a.svg").exists()


def test_attention_grid_names_the_bad_panel(tmp_path):
    good = (np.eye(2), "AB", ["X", "Y"], "ok")
    with pytest.raises(ValueError, match=r"panels\[1\]: weights has shape"):
        G.write_attention_grid_svg(tmp_path / "g.svg", [good, (np.eye(3), "AB", ["X"], "")])
    with pytest.raises(TypeError, match=r"panels\[0\] must be"):
        G.write_attention_grid_svg(tmp_path / "g.svg", [good[:3]])
    with pytest.raises(ValueError, match=r"panels is empty"):
        G.write_attention_grid_svg(tmp_path / "g.svg", [])
    with pytest.raises(ValueError, match=r"columns must be a positive int"):
        G.write_attention_grid_svg(tmp_path / "g.svg", [good], columns=0)


# --------------------------------------------------------------------------
# the real split and the peer, where they are here

def _real_data():
    try:
        return G.find_data()
    except FileNotFoundError:
        return None


needs_data = pytest.mark.skipif(_real_data() is None,
                                reason="the CMUdict G2P split (shared/data/g2p-cmudict) is absent")


@needs_data
def test_the_standard_split_as_its_readme_describes():
    train, test = G.load_split()
    assert len(train) == 113_438 and len({w for w, _ in train}) == 106_837
    assert len(test) == 12_000
    g, p = G.vocabs(train)
    assert len(g) == 27 and len(p) == 39       # A-Z and the apostrophe; 39 phones
    for w, refs in test:                       # the test side needs no other symbol
        g.encode(w)
        for r in refs:
            p.encode(r, word=w)
    s = G.score([refs[0] for _, refs in test], [refs for _, refs in test])
    assert (s.wer, s.per) == (0.0, 0.0)
    train_d, dev = G.dev_split(train)
    assert len(dev) == round(0.03 * 106_837)


@needs_data
@pytest.mark.skipif(__import__("importlib").util.find_spec("phonetisaurus") is None,
                    reason="pip install phonetisaurus")
def test_phonetisaurus_script_quick_run(tmp_path):
    # a subprocess: the script pins its own process to one core
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "g2p_phonetisaurus.py"),
                        "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(tmp_path / "g2p_phonetisaurus.json") as f:
        res = json.load(f)["results"]
    assert res["words"] == 300 and res["no_hypothesis"] == 0
    assert 2.0 < res["per"] < 25.0 and 10.0 < res["wer"] < 70.0    # learned, not perfect
    assert res["train_cpu_s"] > 0 and res["decode_wall_s"] > 0
    assert os.path.getsize(tmp_path / "g2p_phonetisaurus" / "test.hyp") > 0
