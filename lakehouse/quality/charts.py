"""Charts for the quality pages: matplotlib figures rendered to inline SVG (no scripts, no files
beside the page)."""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_svg(figure: Any) -> str:
    """The figure as an inline <svg> element; the figure is closed."""
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg")
    pyplot().close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]
