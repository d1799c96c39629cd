"""The papers' analyses as one-command experiments (``python -m experiments.run <analysis>``).

Each analysis launches its sweep(s) with ``python run.py -m`` (so ``hydra/launcher=slurm`` and
re-launching work unchanged), reads the sweeps' tidy ``summary/`` tables, and writes the paper's
figure(s) and table(s). See ``experiments/README.md``.
"""
