"""``cmkd-edge report``: one self-contained page (HTML, or Markdown) a person can read about a bundle.

``doc`` (the document model), ``build`` (from records and measurements), ``plots`` (inline SVG via
matplotlib, optional), ``render`` (HTML and Markdown). Runtime only: numpy, the bundle's records,
and matplotlib when installed - never torch.
"""
