"""``cmkd-edge diagnose``: dimensional-structure metrics and the MFH saliency ranking of a teacher/student pair.

It lives in ``distill`` because it reads only the losses' own measures (``losses.ds``, ``losses.saliency``)
and only the CLI imports it, so the dependency runs one way.

- Dimensional structure (Si et al., arXiv 2306.15977; methods.md s.3): mean |off-diagonal correlation|
  of the output (penultimate, ``feats["embed"]``) features - lower = more independent channels - and
  L_uni = log mean_{i != j} exp(-2 ||u_i - u_j||^2) of the intermediate map (``feats["map"]``, pooled
  and spatial) - lower = more uniform. The paper predicts the teacher scores better on both.
- MFH (Xue et al., ICLR 2023; methods.md s.2, Algorithm 1): saliency of each teacher ``embed`` unit =
  the mean increase of MSE(teacher logits, student logits) when that unit is permuted across the
  paired samples (the given trained student is the reference), min-max normalised; high =
  modality-general.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cmkd_edge.distill.dataset_tensors import batched_forward
from cmkd_edge.distill.losses.ds import mean_abs_offdiag_corr, uniformity_loss

#: The dimensional-structure metrics of one model, in the order reports list them (lower = better).
STRUCTURE_METRICS = ("offdiag_corr_embed", "uniformity_map_pooled", "uniformity_map_spatial", "uniformity_embed")


@torch.no_grad()
def structure_metrics(logits_feats: tuple[Tensor, dict[str, Tensor]]) -> dict[str, float]:
    """Dimensional-structure metrics from one model's (logits, feats) over a sample set."""
    _, feats = logits_feats
    out = {"offdiag_corr_embed": float(mean_abs_offdiag_corr(feats["embed"]))}
    out["uniformity_map_pooled"] = float(uniformity_loss(feats["map"], "pooled"))
    out["uniformity_map_spatial"] = float(uniformity_loss(feats["map"], "spatial"))
    out["uniformity_embed"] = float(uniformity_loss(feats["embed"], "pooled"))
    return out


@torch.no_grad()
def diagnose_models(
    teacher: nn.Module,
    student: nn.Module,
    x_teacher: Tensor,
    x_student: Tensor,
    repeats: int = 20,
    seed: int = 0,
    top: int = 20,
) -> dict[str, Any]:
    """Metrics for both models on paired inputs, and the teacher units' MFH saliency ranking.

    Args:
        x_teacher, x_student: (N, C, H, W) paired views of the same N samples.
        repeats: permutations per teacher unit (Algorithm 1's M).
        top: how many of the most / least modality-general units to list.
    """
    from cmkd_edge.distill.losses.saliency import permutation_saliency

    teacher.eval()
    student.eval()
    t_out = batched_forward(teacher.forward_all, x_teacher)
    s_out = batched_forward(student.forward_all, x_student)
    sal = permutation_saliency(
        teacher.forward_head, t_out[1]["embed"], s_out[0], repeats, torch.Generator().manual_seed(seed)
    )
    order = torch.argsort(sal, descending=True)
    tm, sm = structure_metrics(t_out), structure_metrics(s_out)
    return {
        "n_samples": int(x_teacher.shape[0]),
        "teacher": tm,
        "student": sm,
        "teacher_better": {k: tm[k] < sm[k] for k in tm},
        "mfh_saliency": {
            "layer": "embed",
            "repeats": repeats,
            "reference": "the given student's logits",
            "ranking": order.tolist(),
            "most_general": [(int(i), round(float(sal[i]), 4)) for i in order[:top]],
            "least_general": [(int(i), round(float(sal[i]), 4)) for i in order[-top:].flip(0)],
            "saliency": [round(float(v), 6) for v in sal],
        },
    }


def diagnose(
    teacher_path: str,
    student_path: str,
    data: str | None,
    split: str = "test",
    max_samples: int = 500,
    repeats: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Load two checkpoints, read their paired views of ``split`` from ``data``, run :func:`diagnose_models`.

    Raises:
        CheckpointError: unreadable checkpoints; DataError: data without both views.
    """
    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset
    from cmkd_edge.distill.dataset_tensors import collect_views
    from cmkd_edge.errors import DataError

    tck, sck = load_checkpoint(teacher_path), load_checkpoint(student_path)
    tv, sv = tck.meta.view, sck.meta.view
    views = [tv] if tv == sv else [tv, sv]
    ds = open_dataset(data, views=views, split=split, seed=seed, augment=False)
    if len(ds) < 3:
        raise DataError(f"split {split!r} of {data} has {len(ds)} samples; diagnose needs at least 3")
    xs, _ = collect_views(ds, views, max_samples)
    result = diagnose_models(
        model_from_checkpoint(tck), model_from_checkpoint(sck), xs[tv], xs[sv], repeats=repeats, seed=seed
    )
    result.update(
        {
            "teacher": {"path": tck.where, "view": tv, **result["teacher"]},
            "student": {"path": sck.where, "view": sv, **result["student"]},
            "data": str(data),
            "split": split,
        }
    )
    return result


def format_diagnosis(res: dict[str, Any], top: int = 10) -> str:
    """The text ``cmkd-edge diagnose`` prints: both models' metrics side by side and the ``top`` most and
    least modality-general teacher units (index:saliency)."""
    t, s = res["teacher"], res["student"]
    lines = [f"{'metric':28s} {'teacher':>10s} {'student':>10s}"]
    lines += [f"{k:28s} {t[k]:10.4f} {s[k]:10.4f}" for k in STRUCTURE_METRICS]
    sal = res["mfh_saliency"]
    for which in ("most", "least"):
        units = ", ".join(f"{i}:{v:.2f}" for i, v in sal[f"{which}_general"][:top])
        lines.append(f"{which} modality-general teacher units: {units}")
    return "\n".join(lines)
