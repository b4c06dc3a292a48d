"""Root conftest: applies to the doctests in skiic/ and to tests/ alike.

Plots are drawn with matplotlib's non-interactive Agg backend, so doctests and
tests never open a window, and figures are closed after each test. matplotlib
is only configured here when it is installed (it is an optional extra).
"""

import sys

import pytest

try:
    import matplotlib
except ImportError:  # pragma: no cover - the "plot" extra is not installed
    matplotlib = None
else:
    matplotlib.use("Agg")

# Doctests that draw, skipped where matplotlib is not installed.
_PLOTTING_DOCTESTS = ("MatchedConfusionMatrixDisplay", "plot_history")


def pytest_collection_modifyitems(config, items):
    if matplotlib is not None:
        return
    skip = pytest.mark.skip(reason='needs matplotlib: pip install "skiic[plot]"')
    for item in items:
        if isinstance(item, pytest.DoctestItem) and any(
            name in item.name for name in _PLOTTING_DOCTESTS
        ):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test or doctest opened."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
