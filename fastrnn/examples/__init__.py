"""Runnable examples on real data: python -m fastrnn.examples.NAME [--quick] [--compare-torch].

Each trains a fastrnn model with fit() on data installed from PyPI or Debian
(never downloaded at run time), reports test metrics and, with
--compare-torch, trains the same architecture in PyTorch on the same split
with the same seed policy, epochs and batch size, printing both metrics and
both wall times. --quick is a seconds-long smoke run (CI).
"""
