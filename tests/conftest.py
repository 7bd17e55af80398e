"""Shared test configuration.

Hypothesis runs derandomized by default so that CI is deterministic; set
``HYPOTHESIS_PROFILE=explore`` locally to search new examples with more of them.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
