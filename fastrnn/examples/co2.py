"""Forecasting a year ahead: weekly Mauna Loa CO2 (1958-2001).

The weekly CO2 concentrations (ppm) that statsmodels 0.15.0 ships
(statsmodels/datasets/co2/co2.csv, 2,284 weeks, 59 missing filled by linear
interpolation). Chronological split: the last 156 weeks (3 years) are the test
period, everything before is training.

    pip install --no-deps statsmodels==0.15.0    # + pandas patsy for SARIMAX
    pip install matplotlib                       # for the plot
    python -m fastrnn.examples.co2 [--quick] [--compare-torch] [--cell lstm]

From each forecast origin o, the network sees the past W weeks and predicts the
next K = 52 weeks at once (direct multi-step), everything relative to the last
observed value and divided by s, the spread of the training targets:

    x_t = (y[o-W+1+t] - y[o]) / s,  t < W    -> GRU(1, H) (or LSTM) -> LastStep
        -> Dense(H, K) -> yhat[o+h] = y[o] + s * out[h-1],  h = 1..K;  MSE, Adam

Working relative to y[o] lets the network carry the trend forward beyond the
levels it was trained on. Training uses every origin whose K targets lie in the
training period; the test uses every origin o in the test period with o + K
inside it (105 origins, each a 52-week forecast from the data up to o), and
reports MAE and RMSE over all of them and all horizons, against
  - last value:      yhat[o+h] = y[o]
  - seasonal naive:  yhat[o+h] = y[o+h-52]
  - SARIMAX:         ARIMA(1,1,1) with drift and 3 Fourier pairs of the year as
                     regressors (a dynamic harmonic regression: a seasonal ARIMA
                     with period 52 is far too slow in state space), fitted on
                     the training period and filtered up to each origin.
A PNG of the forecasts made a year apart across the test period is written to
--out. With --compare-torch the same network is trained in PyTorch from the
same initial weights, on the same batches in the same order.
"""
import copy
import csv
import os
import warnings

import numpy as np

import fastrnn as fr
from fastrnn.examples import _common as C
from fastrnn.examples import _seq

K = 52              # forecast horizon (weeks)
TEST_WEEKS = 156    # chronological test period
YEAR = 365.25 / 7   # weeks per year, for the Fourier terms


def load_co2():
    """Weekly CO2 (ppm) as float64 with the gaps linearly interpolated, and
    the dates (YYYYMMDD strings)."""
    path = os.path.join(C.package_dir("statsmodels"), "datasets", "co2", "co2.csv")
    dates, values = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            dates.append(row["date"])
            values.append(float(row["co2"]) if row["co2"].strip() else np.nan)
    y = np.array(values)
    t = np.arange(len(y))
    ok = ~np.isnan(y)
    return np.interp(t, t[ok], y[ok]), dates


def windows(y, origins, W):
    """Inputs (N, W, 1) and targets (N, K), both relative to y[origin]."""
    x = np.stack([y[o - W + 1:o + 1] - y[o] for o in origins])[:, :, None]
    tgt = np.stack([y[o + 1:o + 1 + K] - y[o] for o in origins])
    return x, tgt


def errors(pred, truth):
    """MAE and RMSE over all origins and horizons, and RMSE one week and one
    year ahead."""
    e = np.asarray(pred, np.float64) - truth
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e ** 2).mean())),
            "rmse_1w": float(np.sqrt((e[:, 0] ** 2).mean())),
            "rmse_52w": float(np.sqrt((e[:, -1] ** 2).mean()))}


def fourier(t, pairs=3):
    return np.column_stack([f(2 * np.pi * k * t / YEAR)
                            for k in range(1, pairs + 1) for f in (np.sin, np.cos)])


def sarimax_forecasts(y, split, origins, fit_weeks=None, tail=260):
    """K-week SARIMAX forecasts from each origin, shape (len(origins), K).
    Fitted on y[:split] (its last `fit_weeks` only, when given); for each
    origin the fitted model is run over the `tail` weeks up to it (the
    ARIMA(1,1,1) forgets its start within weeks) and forecasts K weeks."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX
    X = fourier(np.arange(len(y) + K))
    lo = 0 if fit_weeks is None else split - fit_weeks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter of the optimizer
        res = SARIMAX(y[lo:split], exog=X[lo:split], order=(1, 1, 1), trend="c").fit(disp=False)
        out = []
        for o in origins:
            a = max(0, o + 1 - tail)
            r = res.apply(y[a:o + 1], exog=X[a:o + 1])
            out.append(r.forecast(K, exog=X[o + 1:o + 1 + K]))
    return np.array(out)


def build_model(args, seed):
    Cell = fr.LSTM if args.cell == "lstm" else fr.GRU
    return fr.Sequential([Cell(1, args.hidden, batch_first=True), fr.LastStep(),
                          fr.Dense(args.hidden, K)], seed=seed)


def torch_twin(model, args):
    """The same network in PyTorch, starting from `model`'s weights."""
    from torch import nn

    rnn, _, dense = model.layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            Cell = nn.LSTM if args.cell == "lstm" else nn.GRU
            self.rnn = Cell(1, rnn.hidden_size, batch_first=True)
            self.out = nn.Linear(dense.in_features, dense.out_features)

        def forward(self, x):
            return self.out(self.rnn(x)[0][:, -1])

    net = Net()
    _seq.copy_rnn(rnn, net.rnn)
    _seq.copy_dense(dense, net.out)
    return net


def train_torch(net, x, y, seed, args):
    """Adam + MSE on the batches fit(seed=seed) makes, in its order; returns
    the per-epoch mean training losses."""
    import torch
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    rng = _seq.fit_order(seed)
    losses = []
    net.train()
    for _ in range(args.epochs):
        total = 0.0
        for idx in _seq.batches(len(x), args.batch_size, rng):
            idx = torch.from_numpy(idx)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


def plot(path, y, dates, split, starts, forecasts):
    """Truth around the test period and the K-week forecasts from `starts`."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    year = np.array([int(d[:4]) + (int(d[4:6]) - 1) / 12 + (int(d[6:]) - 1) / 365 for d in dates])
    lo = split - 2 * 52
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(year[lo:], y[lo:], color="black", lw=1.2, label="observed")
    ax.axvline(year[split], color="gray", ls=":", lw=1)
    styles = {"fastrnn": ("C0", "-"), "torch": ("C4", "--"), "sarimax": ("C1", "-"),
              "seasonal naive": ("C2", ":")}
    order = ["seasonal naive", "sarimax", "fastrnn", "torch"]  # the networks on top
    for name in sorted(forecasts, key=lambda n: order.index(n) if n in order else -1):
        fc = forecasts[name]
        color, ls = styles.get(name, ("C3", "-"))
        for j, o in enumerate(starts):
            ax.plot(year[o + 1:o + 1 + K], fc[j], color=color, ls=ls, lw=1.2,
                    label=name if j == 0 else None)
    ax.set_xlabel("year")
    ax.set_ylabel("CO2 (ppm)")
    ax.set_title(f"Mauna Loa weekly CO2: {K}-week forecasts from the start of each test year")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0], epochs=40, batch_size=32, threads=1)
    # One thread unless asked (threads=1): these networks are small (a parallel
    # step is tens of microseconds), and on a 2-core machine shared with other
    # work, two threads that meet at a barrier every time step made fit() 5-25x
    # slower, for fastrnn and torch alike (examples/RESULTS.md).
    p.add_argument("--cell", default="gru", choices=("gru", "lstm"))
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--window", type=int, default=52, help="weeks of history the network sees")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, default=3,
                   help="networks trained with seeds seed..seed+N-1; mean errors reported")
    p.add_argument("--no-arima", action="store_true", help="skip the SARIMAX baseline")
    p.set_defaults(verbose=0)
    args = p.parse_args(argv)
    stride, every = 1, 1
    if args.quick:  # every 4th training window, every 13th test origin, a smaller
        # network and a faster lr for fewer epochs: seconds, and below the naive forecasts
        args.epochs, args.hidden, args.seeds, stride, every = 10, 16, 1, 4, 13
        args.lr = 1e-2
    C.check_precisions(args)
    torch = C.need_torch() if args.compare_torch else None
    C.pin_threads(args.threads)

    y, dates = load_co2()
    W, split = args.window, len(y) - TEST_WEEKS
    train_origins = np.arange(W - 1, split - K, stride)   # targets end before the split
    test_origins = np.arange(split - 1, len(y) - K, every)  # forecasts from the data up to o
    x_tr, t_tr = windows(y, train_origins, W)
    x_te, t_te = windows(y, test_origins, W)
    s = float(t_tr.std())
    x_tr, t_tr = (x_tr / s).astype(np.float32), (t_tr / s).astype(np.float32)
    x_te32 = (x_te / s).astype(np.float32)
    truth = y[test_origins[:, None] + np.arange(1, K + 1)]
    print(f"weekly CO2 {dates[0]}-{dates[-1]}: train to {dates[split - 1]} "
          f"({len(train_origins)} windows), test {dates[split]}-{dates[-1]} "
          f"({len(test_origins)} origins x {K} weeks)")
    print(f"{args.cell.upper()}(1, {args.hidden}) over {W} weeks -> Dense({args.hidden}, {K}); "
          f"Adam lr {args.lr}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.threads} thread(s)")

    results, forecasts = {}, {}
    start_rows = [i for i, o in enumerate(test_origins) if (o - split + 1) % K == 0]
    runs = {"fastrnn": []}
    by_precision = {}  # --precision: precision -> test RMSE of each seed's model
    if torch is not None:
        runs["torch"] = []
    for seed in range(args.seed, args.seed + args.seeds):
        model = build_model(args, seed)
        model.compile(loss="mse", optimizer=fr.optim.Adam(lr=args.lr))
        net = torch_twin(model, args) if torch is not None else None
        if seed == args.seed:  # each engine's start-up, untimed, on throwaway copies
            n = min(args.batch_size, len(x_tr))
            C.warm_up(C.fit_copy(model, x_tr[:n], t_tr[:n], epochs=1, batch_size=n, seed=seed),
                      None if net is None else lambda: train_torch(
                          copy.deepcopy(net), x_tr[:n], t_tr[:n], seed, C.with_epochs(args, 1)))
        with C.Timer() as t:
            hist = model.fit(x_tr, t_tr, epochs=args.epochs, batch_size=args.batch_size,
                             seed=seed, verbose=args.verbose)
        with C.Timer() as te:
            out = model.predict(x_te32).astype(np.float64)
        runs["fastrnn"].append(dict(pred=y[test_origins][:, None] + s * out, fit_s=t.seconds,
                                    eval_s=te.seconds, losses=hist["loss"]))
        if args.precision:
            for prec, frozen in C.frozen_at_precisions(model, args):
                pred = y[test_origins][:, None] + s * frozen.predict(x_te32).astype(np.float64)
                by_precision.setdefault(prec, []).append(errors(pred, truth)["rmse"])
        if net is not None:
            with C.Timer() as t:
                losses = train_torch(net, x_tr, t_tr, seed, args)
            with C.Timer() as te:
                net.eval()
                with torch.no_grad():
                    out = net(torch.from_numpy(x_te32)).numpy().astype(np.float64)
            runs["torch"].append(dict(pred=y[test_origins][:, None] + s * out, fit_s=t.seconds,
                                      eval_s=te.seconds, losses=losses))
        print(f"seed {seed}: " + "; ".join(
            f"{eng} RMSE {errors(r[-1]['pred'], truth)['rmse']:.4f} ppm "
            f"(fit {r[-1]['fit_s']:.2f} s)" for eng, r in runs.items()))
    for eng, rs in runs.items():
        per_seed = [errors(r["pred"], truth) for r in rs]
        results[eng] = {k: float(np.mean([e[k] for e in per_seed])) for k in per_seed[0]}
        results[eng].update(fit_s=float(sum(r["fit_s"] for r in rs)),
                            eval_s=float(sum(r["eval_s"] for r in rs)),
                            loss_first=float(np.mean([r["losses"][0] for r in rs])),
                            loss_last=float(np.mean([r["losses"][-1] for r in rs])))
        forecasts[eng] = rs[0]["pred"][start_rows]

    results["last value"] = errors(np.repeat(y[test_origins][:, None], K, axis=1), truth)
    snaive = y[test_origins[:, None] + np.arange(1, K + 1) - 52]
    results["seasonal naive"] = errors(snaive, truth)
    forecasts["seasonal naive"] = snaive[start_rows]
    if args.no_arima:
        print("SARIMAX baseline skipped (--no-arima)")
    else:
        try:
            with C.Timer() as t:  # --quick: fitted on the last 5 training years only
                pred = sarimax_forecasts(y, split, test_origins,
                                         fit_weeks=260 if args.quick else None)
            results["sarimax"] = dict(errors(pred, truth), fit_s=t.seconds)
            forecasts["sarimax"] = pred[start_rows]
        except ImportError as e:
            print(f"SARIMAX baseline skipped: statsmodels' model code does not import ({e}); "
                  "pip install statsmodels (with pandas and patsy)")

    C.report_precisions("co2", "rmse", "rmse", by_precision, results)
    C.report("co2", args, results)
    os.makedirs(args.out, exist_ok=True)
    png = plot(os.path.join(args.out, "co2_forecast.png"), y, dates, split,
               test_origins[start_rows], forecasts)
    if png:
        print(f"plot written to {png}")
    f = results["fastrnn"]
    print(f"\n{K}-week CO2 forecasts over the test period: fastrnn MAE {f['mae']:.3f} ppm, "
          f"RMSE {f['rmse']:.3f} ppm (mean of {args.seeds} seed(s); last value "
          f"{results['last value']['rmse']:.3f}, seasonal naive {results['seasonal naive']['rmse']:.3f}"
          + (f", SARIMAX {results['sarimax']['rmse']:.3f}" if "sarimax" in results else "")
          + f"); fastrnn fit {f['fit_s']:.1f} s in all"
          + (f", torch fit {results['torch']['fit_s']:.1f} s" if "torch" in results else ""))
    return results


if __name__ == "__main__":
    main()
