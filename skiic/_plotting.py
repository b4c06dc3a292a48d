"""matplotlib, imported only when a plot is drawn.

matplotlib is an optional dependency (the ``plot`` extra): importing skiic
never imports it, and a plotting call without it raises an ``ImportError``
that says how to install it.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = 'pip install "skiic[plot]"'


def import_pyplot(caller: str):
    """Return ``matplotlib.pyplot``, or raise ImportError naming ``caller``."""
    try:
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs matplotlib, which is not installed. "
            f"Install it with: {INSTALL_HINT} (or pip install matplotlib)."
        ) from exc
