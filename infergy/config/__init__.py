"""One typed configuration: a TOML file plus ``INFERGY_*`` environment variables.

- :mod:`.settings`: :class:`~.settings.Settings` and :func:`~.settings.load_settings` (unknown
  keys rejected, naming the key and the file);
- :mod:`.sections`: one pydantic model per ``[section]``;
- :mod:`.paths`: where things live when the config does not say.
"""
