"""The OpenMP wait policy the package sets before torch loads (benchmarks/cpu_contention.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _policy_seen_by(module: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    code = f"import {module}, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    return subprocess.run([sys.executable, "-c", code], env=clean, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize("module", ["iadgpt", "iadgpt_desktop"])
def test_threads_sleep_while_waiting_unless_the_user_chose_otherwise(module):
    """Spinning threads made an inspection 30 times slower beside busy programs."""
    assert _policy_seen_by(module) == "PASSIVE"
    assert _policy_seen_by(module, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
