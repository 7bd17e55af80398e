"""Orchestration and control: measurement sessions, jobs and the service that runs them.

- :mod:`.session` (+ :mod:`.session_types`, :mod:`.session_result`, :mod:`.provenance`): one
  measurement, end to end; :mod:`.meters` chooses and owns a session's power sources and
  :mod:`.sim_devices` the emulated analyzer behind the real bridge;
- :mod:`.recordings`: the same analysis over recorded files (``infergy analyze``);
- :mod:`.jobs` (the job model) and :mod:`.scheduler` (the queue, one session per GPU set);
- :mod:`.service`: ``infergy serve``'s composition root (one TaskGroup, signals);
- control intake: :mod:`.http_api` (+ :mod:`.http_models`, :mod:`.http_errors`),
  :mod:`.mqtt_commands` (``cmd/<verb>``), :mod:`.notify` (sd_notify, watchdog).
"""
