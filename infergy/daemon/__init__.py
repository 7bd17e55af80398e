"""Orchestration: one measurement session, the job model and queue, the long-running service."""
