"""Reporting the MFH synthetic experiments: one Markdown table and one figure per result, same labels.

The column labels live here once (:data:`COLUMNS`), so the CLI's table, the benchmark's table and the
figure's legend name the same quantities the same way; :mod:`cmkd_edge.mfh.experiments` produces the
result dicts these functions read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Result keys shown per experiment and their labels (the table's column order).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "table2": (
        ("teacher", "regular teacher"),
        ("mg_teacher", "MG teacher"),
        ("no_kd", "no-KD student"),
        ("kd", "regular-KD student"),
        ("mg_kd", "MG-KD student"),
        ("delta_student", "MG-KD - KD"),
    ),
    "gamma": (("teacher", "teacher"), ("no_kd", "no-KD student"), ("kd", "KD student"), ("delta", "KD - no-KD")),
}
COLUMNS["alpha"] = COLUMNS["gamma"]


def format_table(res: dict[str, Any]) -> str:
    """A Markdown table of one experiment's results (mean +- std over seeds, percent)."""
    exp = res["experiment"]
    cols = COLUMNS[exp]
    head = ["(k1, k2)", "γ"] if exp == "table2" else ["γ" if exp == "gamma" else "α"]
    lines = ["| " + " | ".join(head + [c[1] for c in cols]) + " |", "|" + "---|" * (len(head) + len(cols))]
    for p in res["points"]:
        first = [f"({p['k1']}, {p['k2']})", f"{p['gamma']:.2f}"] if exp == "table2" else [f"{p[exp]:.2f}"]
        cells = [f"{p[k]['mean']:.2f} ± {p[k]['std']:.2f}" for k, _ in cols]
        lines.append("| " + " | ".join(first + cells) + " |")
    return "\n".join(lines)


def save_result(res: dict[str, Any], json_path: str | None = None, plot_path: str | None = None) -> None:
    """Write the result as JSON and/or its figure as a PNG (each only when a path is given)."""
    if json_path:
        from cmkd_edge.fsutil import atomic_write_json

        atomic_write_json(json_path, res)
    if plot_path:
        plot_experiment(res, plot_path)


def plot_experiment(result: dict[str, Any], path: str) -> None:
    """Accuracy against gamma or alpha (Figs. 2-3), or grouped bars per gamma (Table 2), to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmkd_edge.fsutil import atomic_open

    exp, pts = result["experiment"], result["points"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if exp in ("gamma", "alpha"):
        xs = [p[exp] for p in pts]
        for key, label, style in (
            ("teacher", "teacher (x^a)", "o-"),
            ("no_kd", "student, no KD", "s--"),
            ("kd", "student, KD", "^-"),
        ):
            m = np.array([p[key]["mean"] for p in pts])
            s = np.array([p[key]["std"] for p in pts])
            ax.plot(xs, m, style, label=label)
            ax.fill_between(xs, m - s, m + s, alpha=0.15)
        ax.set_xlabel("γ (shared share of decisive features)" if exp == "gamma" else "α (teacher-specific share)")
    else:
        keys = [c for c in COLUMNS["table2"] if c[0] != "delta_student"]  # the differences are not bars
        width = 0.16
        idx = np.arange(len(pts))
        for j, (key, label) in enumerate(keys):
            ax.bar(
                idx + (j - 2) * width,
                [p[key]["mean"] for p in pts],
                width,
                yerr=[p[key]["std"] for p in pts],
                label=label,
                capsize=2,
            )
        ax.set_xticks(idx, [f"γ={p['gamma']:.2f}\n({p['k1']},{p['k2']})" for p in pts])
        ax.set_ylim(50, 114)  # why: headroom for the legend (and its title) above the bars
    ax.set_ylabel("test accuracy (%)")
    n = len(result["seeds"])
    title = {
        "gamma": "MFH Fig. 2: vary γ",
        "alpha": "MFH Fig. 3: vary α",
        "table2": f"MFH Table 2 ({result['teacher_mode']})",
    }[exp]
    ax.set_title(f"{title}, {n} seeds")
    # why the title: "MG" is the paper's shorthand; a reader of the PNG alone has no other key to it
    ax.legend(fontsize=7, ncol=3 if exp == "table2" else 1, loc="upper center" if exp == "table2" else "best",
              title="MG = modality-general teacher (docs/methods.md s.2)" if exp == "table2" else None,
              title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:  # why atomic: an interrupted or failed save must not leave a truncated PNG at the user's path
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, dpi=120, format="png")
    finally:
        plt.close(fig)
