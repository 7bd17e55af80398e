"""The embedded SQLite results store: runs (result JSON, traces, query logs), checkpoints, outbox.

- :mod:`.db`: :class:`~.db.Store`, the one connection and its transactions;
- :mod:`.schema`: tables, migrations, pragmas; :mod:`.codec`: the array payload codec;
- :mod:`.summary`: the run listing's rows and headline figures;
- :mod:`.outbox`: the MQTT outbox table (delivered at least once);
- :mod:`.names`: run ids and the safe-name rule shared by files and URLs.
"""
