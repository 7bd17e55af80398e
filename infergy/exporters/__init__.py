"""Output only: files, plots, Prometheus, MQTT; where results and live power go.

Each exporter takes the result object of the contract in ARCHITECTURE.md, plus traces and the
query log where its format needs them, and knows nothing of how they were measured:

- :mod:`infergy.exporters.files`: ``write_run_files(out_dir, result, traces, queries,
  loadgen_dir)`` writes ``<out_dir>/<run_id>/`` (result JSON, CSV traces, query log and an
  MLPerf-style ``mlperf/<Scenario>/performance/run_1/`` with the LoadGen logs and ``spl.txt``);
- :mod:`.plots`: the per-run PNGs;
- live: :mod:`.telemetry` (one snapshot of meters and sessions, built from the meters'
  new samples by :mod:`.live_power` and :mod:`.session_stats`), :mod:`.metrics` (the one
  metric table) and :mod:`.prometheus` (its collector);
- :mod:`.mqtt` (+ :mod:`.mqtt_support`, :mod:`.outbox`): status, power and results over MQTT,
  at least once; commands arriving there are answered by an injected handler (the daemon's).

Import the module you need; this package imports none of them, so one exporter's dependencies
never load for another.
"""
