"""Sweeps of continual runs on Ray Tune, by concept.

Without Ray (a test keeps it so): :mod:`~delo.sweep.spec` (schema and :func:`~delo.sweep.spec.load_sweep`),
:mod:`~delo.sweep.grid` (expansion into validated trials, their one Tune form), :mod:`~delo.sweep.search` (the
distributions, the define-by-run space, r_frac, ASHA arithmetic), :mod:`~delo.sweep.experiment` (the folder
contract and the status vocabulary), :mod:`~delo.sweep.records`, :mod:`~delo.sweep.layouts` (one object per
report table), :mod:`~delo.sweep.report` and :mod:`~delo.sweep.plots` (results from files alone).

The Ray seam: :mod:`~delo.sweep.trainable` (worker side), :mod:`~delo.sweep.searcher` (PRUNED-aware Optuna
searcher, ASHA), :mod:`~delo.sweep.progress` (the live view), :mod:`~delo.sweep.driver` (launch, finish).
"""
