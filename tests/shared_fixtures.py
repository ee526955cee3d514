"""Where the development fixtures live (../shared/fixtures beside the repository) and a skip marker for tests
that need them. A user's clone has no ../shared: those tests skip with this reason."""
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"shared fixtures not found at {FIXTURES} (only present in the development checkout)")
