"""The Modality Focusing Hypothesis paper's synthetic Gaussian experiments (Xue et al., ICLR 2023).

``experiments`` reproduces Figs. 2-3 and Table 2 (``cmkd-edge mfh synthetic``), training its students
through the project's ``LogitKD``; ``report`` turns a result into the Markdown table and the figure.
The method on images (``--method mfh``) and Algorithm 1 live in ``cmkd_edge.distill.losses`` (``mfh``,
``saliency``): this package imports from there, never the other way.
"""
