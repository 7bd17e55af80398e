"""A PTDaemon-compatible power server in front of a serial analyzer, and an analyzer emulator.

infergy's bridge owns the analyzer's serial line and serves its samples over TCP in SPEC
PTDaemon's dialect, so that infergy's ``ptd`` meter, MLCommons power-dev's server and other
PTDaemon clients (several at once) can share one analyzer. **It is not SPEC's PTDaemon**: it
speaks PTDaemon's protocol and file formats, but measurements taken through it cannot make an
MLPerf-compliant submission (MLPerf requires SPEC's PTDaemon, and its checker rejects others).

Parts, bottom up:

- :mod:`.analyzers`: drivers behind one Protocol (Yokogawa WT300/WT300E, WT210, dummy), the
  models' ranges (their accuracy tables are :mod:`infergy.core.accuracy`);
- :mod:`infergy.formats.ptd_protocol` (the TCP dialect, shared with the ``ptd`` meter) and
  :mod:`.measurement` (RL bookkeeping), pure;
- :mod:`.bridge`: samples the analyzer, keeps measurements, survives faults;
- :mod:`.server`: the TCP listener; :class:`~.server.PtdBridge` puts it all together;
- :mod:`.emulator` (+ :mod:`.instrument`, :mod:`.watts_profile`, :mod:`.emulator_control`):
  a Yokogawa analyzer on a pseudo-terminal, with scripted power and injectable faults;
- :mod:`.commands`: ``infergy ptd-bridge`` and ``infergy analyzer-sim``.

Example (the emulator behind the bridge, in-process)::

    with AnalyzerEmulator("wt310", watts=120, rate_s=0.1) as emu:
        config = BridgeConfig(device_type(49), emu.path, interval_ms=100)
        async with PtdBridge(config, port=0) as bridge:
            ...  # connect a PtdMeter or any PTDaemon client to 127.0.0.1:bridge.port
"""
