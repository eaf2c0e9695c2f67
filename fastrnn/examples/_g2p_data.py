"""Data and scoring of the grapheme-to-phoneme example (issue 25): the standard
CMUdict split, a seeded dev hold-out, symbol vocabularies, the literature's WER
and PER, and attention heatmaps written as standalone SVG (no plotting package).

The split (Bisani & Ney 2008; Phonetisaurus' ``test/g014b2b/``) lives outside
the package, in ``shared/data/g2p-cmudict/`` (README.md there: files, scoring
rules, published figures):

- ``g014b2b.train``: ``WORD<TAB>PH ON ES``, one pronunciation a line; a word
  with several pronunciations (variants) has several lines.
- ``g014b2b.ref``: ``WORD<TAB>PRON1<TAB>PRON2...``, each test word once with
  every reference pronunciation.

A pair is ``(word, phones)`` with ``phones`` a tuple of str; a scored item is
``(word, refs)`` with ``refs`` a list of such tuples (the test set and the dev
hold-out both come in that form, so one scorer serves both).
"""
import math
import os
from html import escape
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fastrnn.losses import edit_distance

DATA_ENV = "FASTRNN_G2P_DATA"
DATA_SUBDIR = os.path.join("shared", "data", "g2p-cmudict")
TRAIN_FILE, REF_FILE = "g014b2b.train", "g014b2b.ref"


# --------------------------------------------------------------------------
# locating and reading the split

def find_data(data_dir=None):
    """Return the folder of the CMUdict G2P split.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder. None: the environment variable ``FASTRNN_G2P_DATA`` if set,
        else the first ``shared/data/g2p-cmudict`` found walking up from this
        file's folder (the repository's checkout and its worktrees sit beside
        ``shared/``).

    Returns
    -------
    str
        The folder, which holds ``g014b2b.train`` and ``g014b2b.ref``.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the two files is missing.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> folder = G.find_data()    # doctest: +SKIP
    """
    path = data_dir
    if path is None:
        path = os.environ.get(DATA_ENV) or _find_shared()
        if path is None:
            raise FileNotFoundError(
                f"the CMUdict G2P split was not found: no {DATA_SUBDIR} above "
                f"{os.path.dirname(os.path.abspath(__file__))}; pass data_dir= "
                f"(--data-dir) or set {DATA_ENV}")
    path = os.fspath(path)
    for name in (TRAIN_FILE, REF_FILE):
        if not os.path.isfile(os.path.join(path, name)):
            raise FileNotFoundError(f"data_dir {path!r} has no {name} "
                                    "(expected the CMUdict G2P split)")
    return path


def _find_shared():
    """The first shared/data/g2p-cmudict above this file, or None."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / DATA_SUBDIR
        if (candidate / TRAIN_FILE).is_file():
            return str(candidate)
    return None


def _lines(path):
    """(line number, text) of a UTF-8 file, line ends removed; a byte that is
    not UTF-8 is a ValueError naming the line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{n}: not UTF-8 ({e.reason})") from None


def _word(field, path, n, line):
    if not field or field != field.strip() or any(c.isspace() for c in field):
        raise ValueError(f"{path}:{n}: garbled word {field!r} in line {line!r}")
    return field


def _phones(field, path, n, line):
    phones = tuple(field.split())
    if not phones:
        raise ValueError(f"{path}:{n}: empty pronunciation in line {line!r}")
    return phones


def read_train(path):
    """Read a training dictionary: one ``WORD<TAB>PH ON ES`` pair a line.

    Parameters
    ----------
    path : str or os.PathLike
        The file (e.g. ``g014b2b.train``).

    Returns
    -------
    list of tuple
        ``(word, phones)`` pairs in file order, ``phones`` a tuple of str; a
        word with several pronunciations appears once per pronunciation.

    Raises
    ------
    ValueError
        For a line that is not a word, a tab and a non-empty pronunciation
        (the message gives the file and the line number), or a file with no
        pair.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastrnn.examples import _g2p_data as G
    >>> p = os.path.join(tempfile.mkdtemp(), "t.train")
    >>> _ = open(p, "w").write("AB\\tAE B\\nAB\\tEY B IY\\n")
    >>> G.read_train(p)
    [('AB', ('AE', 'B')), ('AB', ('EY', 'B', 'IY'))]
    """
    pairs = []
    for n, line in _lines(path):
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{n}: expected WORD<TAB>PHONES, got {line!r}")
        pairs.append((_word(fields[0], path, n, line), _phones(fields[1], path, n, line)))
    if not pairs:
        raise ValueError(f"{path}: no pronunciation in the file")
    return pairs


def read_refs(path):
    """Read a reference file: ``WORD<TAB>PRON1<TAB>PRON2...``, each word once.

    Parameters
    ----------
    path : str or os.PathLike
        The file (e.g. ``g014b2b.ref``).

    Returns
    -------
    list of tuple
        ``(word, refs)`` in file order, ``refs`` a list of phone tuples (the
        references in the file's order).

    Raises
    ------
    ValueError
        For a line without a word and at least one non-empty pronunciation,
        or a word listed twice (the message gives the file and line number),
        or a file with no word.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastrnn.examples import _g2p_data as G
    >>> p = os.path.join(tempfile.mkdtemp(), "t.ref")
    >>> _ = open(p, "w").write("ABS\\tAE B Z\\tEY B IY EH S\\n")
    >>> G.read_refs(p)
    [('ABS', [('AE', 'B', 'Z'), ('EY', 'B', 'IY', 'EH', 'S')])]
    """
    items, seen = [], {}
    for n, line in _lines(path):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{path}:{n}: expected WORD<TAB>PHONES[<TAB>PHONES...], "
                             f"got {line!r}")
        word = _word(fields[0], path, n, line)
        if word in seen:
            raise ValueError(f"{path}:{n}: word {word!r} listed again "
                             f"(first at line {seen[word]})")
        seen[word] = n
        items.append((word, [_phones(f, path, n, line) for f in fields[1:]]))
    if not items:
        raise ValueError(f"{path}: no word in the file")
    return items


def load_split(data_dir=None):
    """Load the standard CMUdict G2P split.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder holding ``g014b2b.train`` and ``g014b2b.ref``; None: found
        as :func:`find_data` does.

    Returns
    -------
    train : list of tuple
        ``(word, phones)`` pairs, 113,438 of them over 106,837 words.
    test : list of tuple
        ``(word, refs)``, the 12,000 test words with every reference.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing.
    ValueError
        For a garbled line (file and line number in the message), or a test
        word that is also a training word (the split would leak).

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> train, test = G.load_split()    # doctest: +SKIP
    >>> len(train), len(test)           # doctest: +SKIP
    (113438, 12000)
    """
    folder = find_data(data_dir)
    train = read_train(os.path.join(folder, TRAIN_FILE))
    test = read_refs(os.path.join(folder, REF_FILE))
    train_words = {w for w, _ in train}
    leaked = [w for w, _ in test if w in train_words]
    if leaked:
        raise ValueError(f"{folder}: {len(leaked)} test words are also training "
                         f"words (e.g. {leaked[0]!r}): not the standard split")
    return train, test


def group(pairs):
    """Gather the pronunciations of each word.

    Parameters
    ----------
    pairs : list of tuple
        ``(word, phones)`` pairs, as :func:`read_train` returns.

    Returns
    -------
    list of tuple
        ``(word, refs)``, each word once in the order of its first pair,
        ``refs`` its pronunciations in file order.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> G.group([("AB", ("AE", "B")), ("C", ("S", "IY")), ("AB", ("EY", "B"))])
    [('AB', [('AE', 'B'), ('EY', 'B')]), ('C', [('S', 'IY')])]
    """
    by_word = {}
    for word, phones in pairs:
        by_word.setdefault(word, []).append(tuple(phones))
    return list(by_word.items())


def dev_split(pairs, fraction=0.03, seed=0):
    """Hold out a seeded share of the training words as a dev set.

    Words, not lines, are drawn: all variants of a word land on the same
    side, so the dev set measures words the model never saw (as the test set
    does) and a dev word is scored against all its variants.

    Parameters
    ----------
    pairs : list of tuple
        ``(word, phones)`` training pairs.
    fraction : float, default 0.03
        Share of the distinct words held out, in (0, 1); at least one word
        stays on each side.
    seed : int, default 0
        Seed of the draw (``numpy.random.default_rng``): the same seed, pairs
        and fraction give the same split.

    Returns
    -------
    train : list of tuple
        The ``(word, phones)`` pairs of the words kept, in their input order.
    dev : list of tuple
        ``(word, refs)`` of the held-out words, sorted by word (as
        ``g014b2b.ref`` is), ready for :func:`score`.

    Raises
    ------
    ValueError
        If fraction is not in (0, 1) or leaves a side empty.
    TypeError
        If seed is not an int.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> pairs = [("A", ("EY",)), ("A", ("AH",)), ("B", ("B", "IY")), ("C", ("S", "IY"))]
    >>> train, dev = G.dev_split(pairs, fraction=0.34, seed=1)
    >>> len(dev), sum(len(refs) for _, refs in dev) + len(train) == len(pairs)
    (1, True)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 < fraction < 1.0:
        raise ValueError(f"dev_split: fraction must be a number in (0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"dev_split: seed must be an int, got {type(seed).__name__}")
    words = list(dict.fromkeys(w for w, _ in pairs))     # first-appearance order
    n_dev = int(round(fraction * len(words)))
    if not 0 < n_dev < len(words):
        raise ValueError(f"dev_split: fraction {fraction} of {len(words)} words holds "
                         f"out {n_dev}; at least one word must stay on each side")
    order = np.random.default_rng(seed).permutation(len(words))
    held = {words[i] for i in order[:n_dev]}
    train = [(w, p) for w, p in pairs if w not in held]
    dev = sorted(group([(w, p) for w, p in pairs if w in held]))
    return train, dev


# --------------------------------------------------------------------------
# vocabularies

class Vocab:
    """Symbols of one side (graphemes or phones) and their ids.

    Ids are positions in the sorted symbol list, 0..len-1, with no padding or
    end symbol of their own (fr.Seq2Seq adds EOS and BOS after the target
    symbols; padding is told apart by the lengths).

    Parameters
    ----------
    symbols : iterable of str
        The symbols; duplicates are merged and the list sorted.
    name : str, default "symbol"
        What a symbol is ("grapheme", "phone"), for error messages.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> v = G.Vocab("CAB", name="grapheme")
    >>> v.symbols, v.encode("CAB").tolist(), v.decode([2, 0, 1])
    (('A', 'B', 'C'), [2, 0, 1], ('C', 'A', 'B'))
    """

    def __init__(self, symbols, name="symbol"):
        symbols = set(symbols)
        bad = [s for s in symbols if not isinstance(s, str) or not s]
        if bad:
            raise TypeError(f"Vocab: {name} symbols must be non-empty str, got {bad[0]!r}")
        if not symbols:
            raise ValueError(f"Vocab: no {name} symbols")
        self.symbols = tuple(sorted(symbols))
        self.name = name
        self.index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self):
        return len(self.symbols)

    def __repr__(self):
        return f"Vocab({len(self)} {self.name}s)"

    def encode(self, seq, word=None):
        """Map a symbol sequence to ids.

        Parameters
        ----------
        seq : str or sequence of str
            The symbols (a str is a sequence of one-character symbols, as a
            word's graphemes are).
        word : str, optional
            The word the sequence belongs to, named in the error message
            (default: the sequence itself).

        Returns
        -------
        numpy.ndarray
            (len(seq),) int64 ids.

        Raises
        ------
        ValueError
            For a symbol not in the vocabulary, naming it and the word.
        """
        try:
            return np.array([self.index[s] for s in seq], np.int64)
        except KeyError as e:
            where = word if word is not None else (
                seq if isinstance(seq, str) else " ".join(map(str, seq)))
            raise ValueError(f"unknown {self.name} {e.args[0]!r} in {where!r}") from None

    def decode(self, ids):
        """Map ids back to symbols.

        Parameters
        ----------
        ids : sequence of int or numpy.ndarray
            (n,) ids in 0..len-1.

        Returns
        -------
        tuple of str
            The symbols.

        Raises
        ------
        ValueError
            For an id outside 0..len-1 or an array that is not 1-D.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"decode: ids must be 1-D, got shape {ids.shape}")
        if ids.size and (not np.issubdtype(ids.dtype, np.integer)
                         or ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"decode: {self.name} ids must be integers in "
                             f"0..{len(self) - 1}, got {ids.tolist()}")
        return tuple(self.symbols[i] for i in ids.tolist())

    def encode_batch(self, seqs, words=None):
        """Encode sequences into one zero-padded id matrix.

        Parameters
        ----------
        seqs : sequence of (str or sequence of str)
            N non-empty symbol sequences.
        words : sequence of str, optional
            The N words, named in error messages.

        Returns
        -------
        ids : numpy.ndarray
            (N, T) int64, T the longest length; entries past a sequence's
            length are 0 (read the lengths, not the padding).
        lengths : numpy.ndarray
            (N,) int64.

        Raises
        ------
        ValueError
            For an unknown symbol, an empty sequence, no sequence, or words
            of another length than seqs.

        Examples
        --------
        >>> from fastrnn.examples import _g2p_data as G
        >>> ids, lengths = G.Vocab("ABC").encode_batch(["CAB", "A"])
        >>> ids.tolist(), lengths.tolist()
        ([[2, 0, 1], [0, 0, 0]], [3, 1])
        """
        if len(seqs) == 0:
            raise ValueError("encode_batch: seqs is empty")
        if words is not None and len(words) != len(seqs):
            raise ValueError(f"encode_batch: {len(words)} words for {len(seqs)} seqs")
        rows = [self.encode(s, None if words is None else words[i])
                for i, s in enumerate(seqs)]
        lengths = np.array([len(r) for r in rows], np.int64)
        if lengths.min() == 0:
            raise ValueError(f"encode_batch: seqs[{int(np.argmin(lengths))}] is empty")
        ids = np.zeros((len(rows), int(lengths.max())), np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        return ids, lengths


def vocabs(pairs):
    """Build the grapheme and phone vocabularies of training pairs.

    Parameters
    ----------
    pairs : list of tuple
        ``(word, phones)`` pairs.

    Returns
    -------
    graphemes : Vocab
        The characters of the words, sorted.
    phones : Vocab
        The phones, sorted.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> g, p = G.vocabs([("AB", ("AE", "B")), ("BA", ("B", "AA"))])
    >>> g.symbols, p.symbols
    (('A', 'B'), ('AA', 'AE', 'B'))
    """
    return (Vocab((c for w, _ in pairs for c in w), name="grapheme"),
            Vocab((p for _, ph in pairs for p in ph), name="phone"))


# --------------------------------------------------------------------------
# scoring

class Score(NamedTuple):
    """WER and PER of a set of words (percentages) with their counts.

    Parameters
    ----------
    wer : float
        100 * word_errors / words.
    per : float
        100 * edits / ref_phones.
    words : int
        Words scored.
    word_errors : int
        Words whose hypothesis equals none of their references.
    edits : int
        Sum over words of the edit distance to the closest reference.
    ref_phones : int
        Sum over words of the closest reference's length.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> G.score([("B", "IY")], [[("B", "IY")]]).wer
    0.0
    """
    wer: float
    per: float
    words: int
    word_errors: int
    edits: int
    ref_phones: int


def _symbols(seq, what):
    """A hypothesis or reference as a tuple of symbols (str or int)."""
    if isinstance(seq, np.ndarray):
        if seq.ndim != 1:
            raise ValueError(f"score: {what} must be 1-D, got shape {seq.shape}")
        return tuple(seq.tolist())
    if isinstance(seq, str) or not isinstance(seq, (list, tuple)):
        raise TypeError(f"score: {what} must be a list or tuple of phones (e.g. "
                        f"'AH B'.split()), got {type(seq).__name__} {seq!r}")
    if any(isinstance(s, (list, tuple, np.ndarray)) for s in seq):
        raise TypeError(f"score: {what} must be a flat sequence of phones, got {seq!r}")
    return tuple(seq)


def closest_reference(hyp, refs):
    """Find the reference a hypothesis is scored against.

    Parameters
    ----------
    hyp : sequence of str
        The hypothesis' phones (may be empty).
    refs : sequence of (sequence of str)
        The word's references, in the reference file's order.

    Returns
    -------
    index : int
        Position in refs of the reference with the smallest edit distance to
        hyp; among equally close references, the first listed.
    distance : int
        That edit distance.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> G.closest_reference(("AE", "B"), [("EY", "B", "IY"), ("AE", "B", "Z")])
    (1, 1)
    """
    best = None
    for j, ref in enumerate(refs):
        if tuple(hyp) == tuple(ref):
            return j, 0                # nothing is closer; an earlier tie would equal it
        d = edit_distance(list(hyp), list(ref))
        if best is None or d < best[1]:        # strict: ties keep the first listed
            best = (j, d)
    return best


def score(hyps, refs):
    """Score G2P output as the literature does: WER and PER in percent.

    WER: the share of words whose hypothesis equals none of their references
    (a word with variants is right if the output is any one of them).

    PER: the sum over words of the edit distance (insertions, deletions and
    substitutions cost 1; ``fr.edit_distance``) between the hypothesis and
    the word's closest reference, over the sum of those closest references'
    lengths. Among references equally close to the hypothesis the first
    listed is taken, which fixes the denominator. This is the rule of
    Phonetisaurus' ``phonetisaurus-calculateER`` (``ErrorRater.align_sequences``:
    Python's ``min`` over the references by distance keeps the first),
    whose PER the published Phonetisaurus figures are, so numbers from
    here and from it compare. (g2p-seq2seq reports WER only, with the same
    any-reference rule.) In ``g014b2b.ref`` the first reference is CMUdict's
    main entry.

    One departure: ``phonetisaurus-calculateER`` drops a word whose
    hypothesis is empty from both counts; here an empty hypothesis is a word
    error whose edits are the closest (first shortest) reference's length,
    so a model cannot gain by emitting nothing.

    Parameters
    ----------
    hyps : sequence of (sequence of str)
        N hypotheses, each a list or tuple of phones (or a 1-D array of ids;
        hypotheses and references must then use the same ids). A hypothesis
        may be empty.
    refs : sequence of (sequence of (sequence of str))
        N reference lists, each with one or more non-empty references (as
        :func:`read_refs` gives in ``(word, refs)``).

    Returns
    -------
    Score
        ``(wer, per, words, word_errors, edits, ref_phones)``.

    Raises
    ------
    ValueError
        If hyps and refs differ in length or are empty, a word has no
        reference or an empty reference.
    TypeError
        If a hypothesis or a reference is not a sequence of phones (a str,
        e.g. "AH B", is refused: its characters would be scored), or a
        reference list is a single reference instead of a list of them.

    Examples
    --------
    >>> from fastrnn.examples import _g2p_data as G
    >>> refs = [[("AE", "B", "Z"), ("EY", "B", "IY", "EH", "S")],   # ABS
    ...         [("B", "IY")]]                                      # BE
    >>> G.score([("EY", "B", "IY", "EH", "S"), ("B", "EH")], refs)
    Score(wer=50.0, per=14.285714285714286, words=2, word_errors=1, edits=1, ref_phones=7)
    """
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"score: {len(hyps)} hypotheses for {len(refs)} reference lists")
    if not hyps:
        raise ValueError("score: no words to score")
    word_errors = edits = ref_phones = 0
    for i, (hyp, word_refs) in enumerate(zip(hyps, refs)):
        hyp = _symbols(hyp, f"hyps[{i}]")
        if isinstance(word_refs, (str, np.ndarray)) or not isinstance(word_refs, (list, tuple)):
            raise TypeError(f"score: refs[{i}] must be a list of references, "
                            f"got {type(word_refs).__name__}")
        if not word_refs:
            raise ValueError(f"score: refs[{i}] has no reference")
        if not isinstance(word_refs[0], (list, tuple, np.ndarray)):
            raise TypeError(f"score: refs[{i}] must be a list of references (each a "
                            f"sequence of phones), got one reference {word_refs!r}; "
                            "wrap it in a list")
        word_refs = [_symbols(r, f"refs[{i}][{j}]") for j, r in enumerate(word_refs)]
        empty = [j for j, r in enumerate(word_refs) if not r]
        if empty:
            raise ValueError(f"score: refs[{i}][{empty[0]}] is an empty reference")
        j, d = closest_reference(hyp, word_refs)
        word_errors += d > 0
        edits += d
        ref_phones += len(word_refs[j])
    n = len(hyps)
    return Score(100.0 * word_errors / n, 100.0 * edits / ref_phones,
                 n, int(word_errors), int(edits), int(ref_phones))


# --------------------------------------------------------------------------
# attention heatmaps as SVG

CELL = 20          # px per attention cell
FONT = 11          # px, labels
_GAP = 30          # px between panels of a grid


def _check_panel(weights, src_symbols, out_symbols, where):
    """(weights as a float64 (T_out, S) array, src, out) after the checks."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{where}weights must be an array of numbers, "
                        f"got {type(weights).__name__}") from None
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"{where}weights must be a non-empty 2-D (T_out, S) array, "
                         f"got shape {w.shape}")
    src, out = [str(s) for s in src_symbols], [str(s) for s in out_symbols]
    if w.shape != (len(out), len(src)):
        raise ValueError(f"{where}weights has shape {w.shape}, expected (T_out, S) = "
                         f"({len(out)}, {len(src)}) from out_symbols and src_symbols")
    if not np.all(np.isfinite(w)) or w.min() < 0.0 or w.max() > 1.0 + 1e-6:
        raise ValueError(f"{where}weights must be finite attention probabilities "
                         f"in [0, 1], got min {w.min()} max {w.max()}")
    return w, src, out


def _colour(v):
    """White (0) to dark blue (1), as an SVG rgb()."""
    v = min(max(float(v), 0.0), 1.0)
    r, g, b = (round(255 + (t - 255) * v) for t in (8, 48, 107))
    return f"rgb({r},{g},{b})"


def _text_width(labels):
    """Rough px width of the longest label (monospace estimate)."""
    return int(math.ceil(0.65 * FONT * max((len(s) for s in labels), default=1)))


def _panel(w, src, out, title, x0, y0):
    """SVG elements of one heatmap with its top-left corner at (x0, y0), and
    its (width, height): title, source symbols across the top (x axis),
    output symbols down the left (y axis), a cell per (output, source) pair.
    A panel is at least as wide and tall as its axis titles, so small
    matrices do not let them overlap."""
    T, S = w.shape
    x_title, y_title = "input (graphemes)", "output (phones)"
    left = _text_width(out) + FONT + 14          # y labels + the y axis title
    head = 0 if title is None else FONT + 8       # a caption line ("" keeps its room)
    top = head + FONT + 10 + _text_width(src) + 4
    grid_w = max(S * CELL, _text_width([x_title]))
    grid_h = max(T * CELL, _text_width([y_title]))
    width, height = left + grid_w + 4, top + grid_h + 4
    el = []
    if title:
        el.append(f'<text x="{x0 + left}" y="{y0 + FONT + 2}" font-weight="bold">'
                  f"{escape(title)}</text>")
    ax_y = y0 + head + FONT
    el.append(f'<text x="{x0 + left}" y="{ax_y}" class="axis">{x_title}</text>')
    yc = y0 + top
    el.append(f'<text x="{x0 + FONT}" y="{yc}" text-anchor="end" class="axis" '
              f'transform="rotate(-90 {x0 + FONT} {yc})">{y_title}</text>')
    for s, sym in enumerate(src):                 # x labels, rotated to fit long ones
        cx, cy = x0 + left + s * CELL + CELL / 2 + FONT / 3, y0 + top - 4
        el.append(f'<text x="{cx:.1f}" y="{cy}" transform="rotate(-90 {cx:.1f} {cy})">'
                  f"{escape(sym)}</text>")
    for t, sym in enumerate(out):
        el.append(f'<text x="{x0 + left - 4}" y="{y0 + top + t * CELL + CELL / 2 + FONT / 3:.1f}" '
                  f'text-anchor="end">{escape(sym)}</text>')
        for s in range(S):
            el.append(f'<rect x="{x0 + left + s * CELL}" y="{y0 + top + t * CELL}" '
                      f'width="{CELL}" height="{CELL}" fill="{_colour(w[t, s])}">'
                      f"<title>{escape(out[t])} / {escape(src[s])}: {w[t, s]:.3f}</title></rect>")
    el.append(f'<rect x="{x0 + left}" y="{y0 + top}" width="{S * CELL}" '
              f'height="{T * CELL}" fill="none" stroke="#888"/>')
    return el, width, height


def _legend(x0, y0):
    """A 0..1 colour bar, 100 x 10 px, labelled; (elements, width, height)."""
    el = [f'<text x="{x0}" y="{y0 + FONT}">attention weight</text>']
    for k in range(20):
        el.append(f'<rect x="{x0 + 5 * k}" y="{y0 + FONT + 4}" width="5" height="10" '
                  f'fill="{_colour(k / 19)}"/>')
    el.append(f'<text x="{x0}" y="{y0 + 2 * FONT + 18}">0</text>')
    el.append(f'<text x="{x0 + 100}" y="{y0 + 2 * FONT + 18}" text-anchor="end">1</text>')
    return el, 110, 2 * FONT + 22


def _write_svg(path, elements, width, height):
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT}">\n'
            '<style>.axis { font-style: italic; fill: #444; }</style>\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n')
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + "\n".join(elements) + "\n</svg>\n")
    return os.fspath(path)


def write_attention_svg(path, weights, src_symbols, out_symbols, title=None):
    """Write one attention matrix as a standalone SVG heatmap.

    Rows are output steps (phones, the y axis), columns source positions
    (graphemes, the x axis); a cell's shade is its weight on a fixed 0..1
    scale (white to dark blue, with a colour bar), so plots compare across
    words and models. Hovering a cell shows its value.

    Parameters
    ----------
    path : str or os.PathLike
        The .svg file to write.
    weights : array_like
        (T_out, S) attention weights, finite and in [0, 1].
    src_symbols : sequence of str
        The S source symbols (the word's letters).
    out_symbols : sequence of str
        The T_out output symbols (phones, and an end marker if the weights
        have a row for it).
    title : str, optional
        A line above the heatmap.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        If weights is not 2-D, its shape is not (len(out_symbols),
        len(src_symbols)), or a weight is not finite or outside [0, 1].
    TypeError
        If weights is not numeric.

    Examples
    --------
    >>> import os, tempfile
    >>> import xml.etree.ElementTree as ET
    >>> from fastrnn.examples import _g2p_data as G
    >>> p = os.path.join(tempfile.mkdtemp(), "ab.svg")
    >>> _ = G.write_attention_svg(p, [[0.9, 0.1], [0.2, 0.8]], "AB", ["EY", "B"], "AB")
    >>> ET.parse(p).getroot().tag
    '{http://www.w3.org/2000/svg}svg'
    """
    w, src, out = _check_panel(weights, src_symbols, out_symbols, "write_attention_svg: ")
    el, pw, ph = _panel(w, src, out, title, 10, 10)
    leg, lw, lh = _legend(10, 10 + ph + 10)
    return _write_svg(path, el + leg, max(pw, lw) + 20, ph + lh + 30)


def write_attention_grid_svg(path, panels, columns=3, title=None):
    """Write several attention matrices as a grid of heatmaps in one SVG.

    Parameters
    ----------
    path : str or os.PathLike
        The .svg file to write.
    panels : sequence of tuple
        One ``(weights, src_symbols, out_symbols, caption)`` per word, each as
        :func:`write_attention_svg` takes them (caption may be None).
    columns : int, default 3
        Panels per row.
    title : str, optional
        A line above the grid.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        If there is no panel, columns is not a positive int, or a panel fails
        :func:`write_attention_svg`'s checks (the message names the panel).
    TypeError
        If a panel is not a 4-tuple or its weights are not numeric.

    Examples
    --------
    >>> import os, tempfile
    >>> import xml.etree.ElementTree as ET
    >>> from fastrnn.examples import _g2p_data as G
    >>> p = os.path.join(tempfile.mkdtemp(), "grid.svg")
    >>> panels = [([[1.0, 0.0], [0.0, 1.0]], "AB", ["EY", "B"], "AB"),
    ...           ([[1.0]], "A", ["EY"], "A")]
    >>> _ = G.write_attention_grid_svg(p, panels, columns=2)
    >>> len(ET.parse(p).getroot().findall("{http://www.w3.org/2000/svg}rect")) > 5
    True
    """
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"write_attention_grid_svg: columns must be a positive int, "
                         f"got {columns!r}")
    panels = list(panels)
    if not panels:
        raise ValueError("write_attention_grid_svg: panels is empty")
    built = []
    for k, p in enumerate(panels):
        if not isinstance(p, (tuple, list)) or len(p) != 4:
            raise TypeError(f"write_attention_grid_svg: panels[{k}] must be "
                            "(weights, src_symbols, out_symbols, caption)")
        w, src, out = _check_panel(p[0], p[1], p[2], f"write_attention_grid_svg: panels[{k}]: ")
        built.append((w, src, out, p[3]))
    y = 10 + (FONT + 14 if title else 0)
    el = [f'<text x="10" y="{10 + FONT + 2}" font-weight="bold">{escape(title)}</text>'] \
        if title else []
    width = 0
    for r in range(0, len(built), columns):
        x, row_h = 10, 0
        for w, src, out, caption in built[r:r + columns]:
            # "" for no caption: the panels of a row keep their tops aligned
            pel, pw, ph = _panel(w, src, out, "" if caption is None else str(caption), x, y)
            el += pel
            x += pw + _GAP
            row_h = max(row_h, ph)
        width = max(width, x)
        y += row_h + _GAP
    leg, lw, lh = _legend(10, y)
    return _write_svg(path, el + leg, max(width, lw + 20), y + lh + 10)
