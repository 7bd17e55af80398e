"""The command line: the typer app, one module per command, and the console rendering.

- :mod:`.app`: the app and :func:`~.app.main`, the only place that exits;
- one module per command: :mod:`.run`, :mod:`.analyze`, :mod:`.serve`, :mod:`.runs`,
  :mod:`.plot`, :mod:`.doctor`, :mod:`.ptd_bridge`, :mod:`.analyzer_sim`;
- :mod:`.common`: what the commands share (``--config``, the store, exit codes);
- :mod:`.console` (results and run listings) and :mod:`.progress` (live session progress).
"""
