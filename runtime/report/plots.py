"""The report's plots as inline SVG text (matplotlib, Agg): nothing is fetched when the page opens.

Each function returns the SVG markup without the XML prolog and DOCTYPE (so it can sit inside an
HTML page) or None when matplotlib is not installed (the report then says so where a plot would be).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

PRECISION_COLOURS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728"}


def _plt() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    # why paths: glyphs as outlines render the same in every browser, no font is looked up
    matplotlib.rcParams["svg.fonttype"] = "path"
    matplotlib.rcParams["svg.hashsalt"] = "cmkd-edge"  # stable ids: the same report is the same file
    return plt


def _svg(fig: Any, plt: Any) -> str:
    buf = io.StringIO()
    try:
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    # the RDF metadata block names vocabularies by URL (purl.org, creativecommons.org): not a fetch,
    # but a page that must not mention the network is easier to check without it
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S).strip()


def latency_bars(labels: Sequence[str], precisions: Sequence[str], p50: Sequence[float],
                 p90: Sequence[float], p99: Sequence[float], cold: Sequence[float], batch: int) -> str | None:
    """Per artifact x backend: p50 bar, p90 and p99 marks (left); cold start (right)."""
    plt = _plt()
    if plt is None:
        return None
    h = max(2.6, 0.42 * len(labels) + 1.2)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, h), gridspec_kw={"width_ratios": [3, 2]}, sharey=True)
    y = list(range(len(labels)))
    colours = [PRECISION_COLOURS.get(p, "#7f7f7f") for p in precisions]
    ax.barh(y, p50, color=colours, alpha=0.8, label="p50")
    ax.scatter(p90, y, marker="|", s=160, color="black", label="p90", zorder=3)
    ax.scatter(p99, y, marker="x", s=40, color="black", label="p99", zorder=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"end-to-end latency per call at batch {batch} (ms)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8, loc="lower right")
    bx.barh(y, cold, color=colours, alpha=0.5)
    bx.set_xlabel("cold start: load + first call (ms)")
    bx.set_xlim(left=0)
    ax.set_title("latency (colour = precision: fp32 blue, fp16 green, int8 red)", fontsize=9)
    fig.tight_layout()
    return _svg(fig, plt)


def confusion(cm: Sequence[Sequence[int]], names: Sequence[str], title: str) -> str | None:
    """Row-normalised heatmap with the counts written in the cells."""
    plt = _plt()
    if plt is None:
        return None
    import numpy as np

    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    k = len(names)
    size = min(9.0, 1.6 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _svg(fig, plt)


def reliability(curves: dict[str, list[dict[str, float]]]) -> str | None:
    """Accuracy against mean confidence per bin, one line per artifact; the diagonal is calibrated."""
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="calibrated")
    for name, bins in curves.items():
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=name)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("reliability diagram (15 equal-width bins)", fontsize=9)
    fig.tight_layout()
    return _svg(fig, plt)


def class_drop(names: Sequence[str], drops: dict[str, Sequence[float | None]]) -> str | None:
    """Per-class drop (points, FP32 minus artifact) for each compared artifact."""
    plt = _plt()
    if plt is None:
        return None
    import numpy as np

    k = len(names)
    fig, ax = plt.subplots(figsize=(min(12.0, 2.5 + 0.6 * k), 3.6))
    width = 0.8 / max(1, len(drops))
    for i, (label, vals) in enumerate(drops.items()):
        ax.bar(np.arange(k) + i * width, [0.0 if v is None else v for v in vals], width, label=label)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(k) + width * (len(drops) - 1) / 2, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("drop vs FP32 (points)")
    ax.legend(fontsize=7)
    ax.set_title("per-class drop (positive = the artifact is worse on that class)", fontsize=9)
    fig.tight_layout()
    return _svg(fig, plt)


def front(points: list[dict[str, Any]], percentile: str) -> str | None:
    """select's candidates: accuracy against latency, marker area = size, front joined, choice ringed."""
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = [p["size_mb"] for p in points]
    top = max(sizes) or 1.0
    for p in points:
        ax.scatter(p["latency"], p["accuracy"], s=30 + 400 * p["size_mb"] / top,
                   alpha=0.85 if p["pareto"] else 0.45, color=PRECISION_COLOURS.get(p["precision"], "#7f7f7f"),
                   edgecolors="black" if p["pareto"] else "none")
    fr = sorted((p for p in points if p["pareto"]), key=lambda p: p["latency"])
    if fr:
        ax.plot([p["latency"] for p in fr], [p["accuracy"] for p in fr], color="black", linewidth=0.8,
                linestyle=":", label="Pareto front")
    chosen = [p for p in points if p["chosen"]]
    for p in chosen:
        ax.scatter(p["latency"], p["accuracy"], s=500, facecolors="none", edgecolors="#ff7f0e", linewidths=2.2,
                   label=f"chosen: {p['label']}")
    ax.set_xlabel(f"{percentile} end-to-end latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("select: candidates (marker area = size; colour = precision)", fontsize=9)
    fig.tight_layout()
    return _svg(fig, plt)
