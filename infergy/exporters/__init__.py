"""Exporters: where a finished result (and live power) goes besides the store.

Each exporter takes the result object of the contract in ARCHITECTURE.md, plus traces and the
query log where its format needs them, and knows nothing of how they were measured:

- :mod:`infergy.exporters.files`: ``write_run_files(out_dir, result, traces, queries,
  loadgen_dir)`` writes ``<out_dir>/<run_id>/`` (result JSON, CSV traces, query log and an
  MLPerf-style ``mlperf/<Scenario>/performance/run_1/`` with the LoadGen logs and ``spl.txt``).

Import the module you need; this package imports none of them, so one exporter's dependencies
never load for another.
"""
