"""Serve MathJax from the site itself, so equations render with no network.

The MathJax 3.2.2 build comes from the ``sphinx-mathjax-offline`` wheel (a pinned course
requirement). Its own Sphinx hook copies all 24 MB of MathJax into every build; this extension
copies only what the CommonHTML TeX renderer loads: ``tex-chtml.js``, its woff fonts, the TeX
extensions it may autoload, and the accessibility/menu components the right-click menu can load.
``mathjax_path`` is set to ``mathjax/tex-chtml.js`` in ``_config.yml`` (relative to ``_static``).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

PACKAGE = "sphinx-mathjax-offline"  # the wheel's top-level folder really has hyphens
KEEP = (
    "tex-chtml.js",
    "output/chtml",
    "input/tex/extensions",
    "a11y",
    "ui",
    "sre",
)
NOTICE = (
    "MathJax 3.2.2, (c) The MathJax Consortium, Apache License 2.0 "
    "(https://www.apache.org/licenses/LICENSE-2.0).\n"
    "Copied from the sphinx-mathjax-offline package; only the CommonHTML TeX renderer is kept.\n"
)


def mathjax_source() -> Path:
    """Folder of the MathJax build shipped by ``sphinx-mathjax-offline``."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "static" / "mathjax"
        if (folder / "tex-chtml.js").is_file():
            return folder
    raise ExtensionError(
        "The course site serves MathJax locally, but the 'sphinx-mathjax-offline' package is not "
        "installed. Install the course requirements: pip install -r requirements.txt"
    )


def _check(app: Sphinx) -> None:
    mathjax_source()  # fail early, before reading any document
    if app.config.mathjax_path != "mathjax/tex-chtml.js":
        raise ExtensionError(
            f"mathjax_path is {app.config.mathjax_path!r}; the offline site needs "
            "'mathjax/tex-chtml.js' (set in book/_config.yml under sphinx.config)."
        )


def _copy(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    for name in KEEP:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / name)
    (target / "NOTICE.txt").write_text(NOTICE, encoding="utf-8")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _check)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
