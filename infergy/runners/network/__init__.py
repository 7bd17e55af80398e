"""Existing inference servers under LoadGen: the ``kserve`` and ``openai`` backends.

- :mod:`.client`: the event-loop thread and pooled aiohttp session; failures sorted once;
- :mod:`.kserve`: the KServe v2 / Triton HTTP protocol (JSON or binary tensors);
- :mod:`.openai`: OpenAI-compatible completions, streamed (first token, token counts);
- :mod:`.sut`: the asynchronous LoadGen SUT (concurrency limit, records, token latencies,
  a server that goes away);
- :mod:`.backend`: the server behind the :class:`~infergy.runners.backends.base.Backend`
  Protocol, for the warm-up and calibration.
"""
