"""The G2P peer of issue 25: Phonetisaurus' 8-gram joint-sequence model trained
on the standard CMUdict split and scored with fastrnn's scorer, end to end.

    python tools/g2p_phonetisaurus.py [--data-dir DIR] [--out examples_out]
                                      [--order 8] [--cpu N] [--file-order] [--quick]

Needs the PyPI wheel ``phonetisaurus`` (0.3.0: Phonetisaurus, OpenFst and
mitlm binaries, nothing to build; ``pip install phonetisaurus``). The split
is found as fastrnn.examples._g2p_data.find_data does (--data-dir, else
$FASTRNN_G2P_DATA, else shared/data/g2p-cmudict above the checkout).

The recipe is the one of ``phonetisaurus-train --lexicon g014b2b.train
--seq2_del`` (the Phonetisaurus README's and the wheel's ``train()``),
run step by step so each step is timed; its defaults spelt out:

1. phonetisaurus-align --seq1_del=false --seq2_del=true --seq1_max=2
   --seq2_max=2 --grow=false (EM alignment, 11 iterations)
2. estimate-ngram -o 8 (mitlm, modified Kneser-Ney by default)
3. phonetisaurus-arpa2wfst
4. decoding: phonetisaurus-g2pfst --nbest=1 --beam=10000 --thresh=99
   --accumulate=false --pmass=0 (``phonetisaurus-apply``'s defaults).

The lexicon handed to the aligner lists each word's variants on adjacent
lines, words in the order of their first line (as the wheel's ``train()``
writes it from its word -> pronunciations dict); g014b2b.train itself has
some variants apart. The EM alignment depends a little on the line order:
grouped gave 5.87 / 24.52 (the published figures, exactly), the file's
order 5.86 / 24.48 (--file-order).

Everything runs on one core: the process pins itself (sched_setaffinity,
inherited by the tools) and sets OMP_NUM_THREADS=1. Times are wall seconds
and the CPU seconds of the tools (user + system, getrusage of the children):
on a loaded machine the wall time also counts time others held the core, the
CPU time does not. The JSON (OUT/g2p_phonetisaurus.json) keeps the figures,
the commands, the load average before and after, and the model and
hypotheses stay in OUT/g2p_phonetisaurus/.

--quick trains on the first 3,000 training words and decodes 300 test words
(a smoke run of seconds: checks the pipeline, not the figures).
"""
import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fastrnn.examples import _g2p_data as G  # noqa: E402

PUBLISHED = {"per": 5.87, "wer": 24.52, "train_wall_s": 86.0}   # shared/data README


def tools_env():
    """(bin folder, environment) of the phonetisaurus wheel's binaries."""
    spec = importlib.util.find_spec("phonetisaurus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the phonetisaurus wheel: pip install phonetisaurus")
    root = spec.submodule_search_locations[0]
    machine = platform.machine()
    bin_dir = os.path.join(root, "bin", machine)
    if not os.path.isdir(bin_dir):
        raise SystemExit(f"phonetisaurus has no binaries for {machine} in {root}")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
               LD_LIBRARY_PATH=os.path.join(root, "lib", machine) + os.pathsep
               + os.environ.get("LD_LIBRARY_PATH", ""))
    return bin_dir, env


def run_step(name, cmd, env, log, stdout=None):
    """Run one tool; return {wall_s, cpu_s, command}. Its stderr goes to log;
    a failure exits naming the step and the log."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "a") as lf:
        lf.write(f"$ {' '.join(cmd)}\n")
        lf.flush()
        r = subprocess.run(cmd, env=env, stdout=stdout or lf, stderr=lf)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed (exit {r.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  {name:<10} {wall:8.1f} s wall {cpu:8.1f} s cpu", flush=True)
    return {"wall_s": wall, "cpu_s": cpu, "command": " ".join(cmd)}


def read_hypotheses(path, words):
    """{word: phones} from g2pfst's WORD<TAB>SCORE<TAB>PHONES lines (1-best).
    A word the decoder gave no line, or a line with no phones, gets the empty
    hypothesis (scored as an error); a word it was not asked is refused."""
    asked, hyps = set(words), {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if parts[0] not in asked:
                raise SystemExit(f"{path}:{n}: a word that was not asked: {line!r}")
            if parts[0] in hyps:            # --nbest=1: keep the first (best)
                continue
            hyps[parts[0]] = tuple(parts[2].split()) if len(parts) == 3 else ()
    return hyps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="examples_out")
    p.add_argument("--order", type=int, default=8, help="joint n-gram order (8)")
    p.add_argument("--cpu", type=int, default=None,
                   help="the core to run on (default: the first this process may use)")
    p.add_argument("--file-order", action="store_true",
                   help="hand the aligner g014b2b.train's lines in file order "
                        "(default: grouped by word, as phonetisaurus.train() does)")
    p.add_argument("--quick", action="store_true", help="a smoke run on a small slice")
    args = p.parse_args(argv)

    cpu = min(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})             # the tools inherit it: one core
    _, env = tools_env()
    train, test = G.load_split(args.data_dir)
    if args.quick:
        keep = set(list(dict.fromkeys(w for w, _ in train))[:3000])
        train, test = [(w, p) for w, p in train if w in keep], test[:300]
    bad = [w for w, ph in train if any(c in w + " ".join(ph) for c in "}|_")]
    if bad:                                    # phonetisaurus-train's reserved symbols
        raise SystemExit(f"training word {bad[0]!r} holds a reserved symbol (}} | _)")

    work = os.path.join(args.out, "g2p_phonetisaurus")
    os.makedirs(work, exist_ok=True)
    lexicon, wordlist = os.path.join(work, "train.lexicon"), os.path.join(work, "test.words")
    corpus = os.path.join(work, "model.corpus")
    arpa = os.path.join(work, f"model.o{args.order}.arpa")
    model, hyp_file = os.path.join(work, "model.fst"), os.path.join(work, "test.hyp")
    log = os.path.join(work, "tools.log")
    if not args.file_order:
        train = [(w, ph) for w, refs in G.group(train) for ph in refs]
    with open(lexicon, "w", encoding="utf-8") as f:
        f.writelines(f"{w}\t{' '.join(ph)}\n" for w, ph in train)
    with open(wordlist, "w", encoding="utf-8") as f:
        f.writelines(f"{w}\n" for w, _ in test)
    open(log, "w").close()

    load_before = os.getloadavg()
    print(f"phonetisaurus {args.order}-gram on {len(train)} pairs, "
          f"{len(test)} test words, core {cpu}", flush=True)
    steps = {
        "align": run_step("align", [
            "phonetisaurus-align", f"--input={lexicon}", f"--ofile={corpus}",
            "--seq1_del=false", "--seq2_del=true", "--seq1_max=2", "--seq2_max=2",
            "--grow=false"], env, log),
        "ngram": run_step("ngram", [
            "estimate-ngram", "-o", str(args.order), "-t", corpus, "-wl", arpa], env, log),
        "arpa2wfst": run_step("arpa2wfst", [
            "phonetisaurus-arpa2wfst", f"--lm={arpa}", f"--ofile={model}"], env, log),
    }
    with open(hyp_file, "w") as out:
        steps["decode"] = run_step("decode", [
            "phonetisaurus-g2pfst", f"--model={model}", "--nbest=1", "--beam=10000",
            "--thresh=99.0", "--accumulate=false", "--pmass=0.0", "--nlog_probs=true",
            f"--wordlist={wordlist}"], env, log, stdout=out)
    load_after = os.getloadavg()

    hyps = read_hypotheses(hyp_file, [w for w, _ in test])
    missing = [w for w, _ in test if not hyps.get(w)]
    s = G.score([hyps.get(w, ()) for w, _ in test], [refs for _, refs in test])
    train_steps = ("align", "ngram", "arpa2wfst")
    result = {
        **s._asdict(),
        "no_hypothesis": len(missing),
        "train_wall_s": sum(steps[k]["wall_s"] for k in train_steps),
        "train_cpu_s": sum(steps[k]["cpu_s"] for k in train_steps),
        "decode_wall_s": steps["decode"]["wall_s"],
        "decode_cpu_s": steps["decode"]["cpu_s"],
    }
    print(f"\nPER {s.per:.2f}%  WER {s.wer:.2f}%  ({s.words} words, {s.word_errors} wrong, "
          f"{s.edits} edits / {s.ref_phones} phones; {len(missing)} without output)")
    print(f"training {result['train_wall_s']:.1f} s wall / {result['train_cpu_s']:.1f} s cpu, "
          f"decoding {result['decode_wall_s']:.1f} s wall / {result['decode_cpu_s']:.1f} s cpu, "
          f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    if not args.quick:
        print(f"published on this split: PER {PUBLISHED['per']}% WER {PUBLISHED['wer']}%, "
              f"training {PUBLISHED['train_wall_s']:.0f} s on one core")
    path = os.path.join(args.out, "g2p_phonetisaurus.json")
    with open(path, "w") as f:
        json.dump({"example": "g2p_phonetisaurus", "quick": args.quick,
                   "command": " ".join([os.path.basename(sys.executable),
                                        "tools/g2p_phonetisaurus.py"] + (argv or sys.argv[1:])),
                   "phonetisaurus": _version(), "order": args.order, "core": cpu,
                   "lexicon_order": "file" if args.file_order else "grouped",
                   "cpu_model": _cpu_model(), "load_average": [load_before, load_after],
                   "results": result, "steps": steps,
                   "published": None if args.quick else PUBLISHED}, f, indent=1)
    print(f"results written to {path}")
    return result


def _version():
    try:
        from importlib.metadata import version
        return version("phonetisaurus")
    except Exception:  # pragma: no cover - metadata missing
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f
                         if ln.startswith("model name")), None)
    except OSError:  # pragma: no cover - not Linux
        return None


if __name__ == "__main__":
    main()
