"""Debian's headless Chromium for the browser tests: where it is, whether CI requires it,
and the flags every run uses (no internet: only loopback resolves)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI sets this: there the browser tests must run, never skip.
REQUIRED = os.environ.get("COOPNET_REQUIRE_BROWSER") == "1"

# Skips a browser test where Chromium is missing, except in CI, where the test then fails.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="Debian's chromium is not installed (.ci/run installs it)",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No internet, as on a council's closed network: only loopback resolves (and no proxy
    # could reach out).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-proxy-server",
]


@contextmanager
def chromium(profile_prefix: str = "chromium-") -> Iterator[list[str]]:
    """The command line that starts Chromium with a fresh profile, removed afterwards."""
    if CHROMIUM is None:
        pytest.fail("COOPNET_REQUIRE_BROWSER=1 but Debian's chromium is not installed")
    # Chromium's helper processes may still write to the profile as it exits.
    with tempfile.TemporaryDirectory(prefix=profile_prefix, ignore_cleanup_errors=True) as p:
        yield [CHROMIUM, *FLAGS, f"--user-data-dir={p}"]
