"""Datasets into SQLEnv's question bank: ``make data DATASET=spider|bird|custom``.

A dataset is a named adapter (``spider.py``, ``bird.py``, ``custom.py``) that reads
a source (``sources.py``: a directory, a zip or a URL) into questions, databases
and difficulty levels; ``build.py`` verifies the databases (``databases.py``), runs
each gold query once in the agent's sandbox (``gold.py``), analyses it
(``sql_analysis.py``) and writes the bank and its report (``report.py``).
docs/datasets.md describes each dataset's layout.
"""
