"""The papers' analyses: functions over a finished sweep's summary that draw the figures and write the tables.

Each analysis is a Hydra experiment, ``conf/experiment/<name>.yaml`` (and ``<name>_quick.yaml``),
that sets the config groups, the sweep (``hydra.sweeper.params``) and ``analysis:``, the dotted
path of its function here: ``python run.py -m experiment=fig3_quick`` runs the sweep and idsim's
sweep callback calls the function, which writes into ``<sweep dir>/analysis/``. Redraw from a
finished sweep with ``python -m idsim.sweep summarize <sweep dir>``. See ``experiments/README.md``.
"""
