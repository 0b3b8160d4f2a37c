"""One module per backend on the export side, named by the backend's declaration and by nothing else.

``<backend>.py`` holds what export does for that backend: its quantizer (``BackendSpec.quantizer``,
a ``quantize.rungs.Quantizer``), its compile hook and ``COMPILE_PRECISIONS``
(``BackendSpec.compile_hook``), and the tool wrappers only it uses. The ladder (``quantize/``) and
the compile step (``compile/``) reach them only through the declarations; candidates are gated with
the backend's runtime runner (``Runner.for_check``). Nothing is imported here.
"""
