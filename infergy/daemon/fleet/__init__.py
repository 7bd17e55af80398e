"""Fleets: many ``infergy serve`` nodes driven through the MQTT broker they already talk to.

``presence`` reads the nodes' retained ``status`` (online, stale, offline; version and config
drift), ``link`` is the controller's broker connection, ``campaign`` the state of one campaign
(saved after every change, so a restarted controller resumes it), ``controller`` dispatches a
job to the nodes and follows it to their results, and ``comparison`` turns the results into
one row per node. ``infergy fleet status`` and ``infergy fleet run`` (cli/fleet.py) use them;
docs/fleet.md is the guide.
"""
