"""Sphinx configuration of the skiic documentation.

Build from the repository root, with the ``docs`` extra installed:

    sphinx-build -W --keep-going -b html docs docs/_build/html

The gallery runs every ``examples/plot_*.py`` on the CPU; add
``-D plot_gallery=0`` to skip running them while editing prose.
"""

import os
import sys

# The package is imported from the checkout, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import skiic  # noqa: E402

project = "skiic"
author = "The skiic developers"
copyright = "The skiic developers (BSD-3-Clause)"
release = skiic.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
default_role = "literal"  # `x` in prose is code, as in scikit-learn's docs

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc sections carry the types
# The class template lists methods itself; numpydoc must not add a second list.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- MyST (docs/benchmarks.md) -----------------------------------------------
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# -- sphinx-gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skiic",),
    "backreferences_dir": "gen_modules/backreferences",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    # An example that raises fails the build.
    "only_warn_on_example_error": False,
    "abort_on_example_error": False,
    "matplotlib_animations": False,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skiic {release}"
html_static_path = ["_static"]
html_css_files = ["skiic.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {
    page: [] for page in ("index", "getting_started", "command_line", "benchmarks")
}
html_show_sourcelink = False
