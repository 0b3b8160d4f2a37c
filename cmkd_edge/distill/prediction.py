"""Will distilling pay? ``cmkd-edge diagnose``'s prediction, made before any student is trained.

Cross-modal distillation pays where the student's modality has few labels and the teacher's
modality transfers supervision through paired (or matched) samples (docs/methods.md s.5); with every
label at hand, the measured students on MSTAR edge-radar all lost to the student trained alone. The
prediction replays both routes with a cheap *probe* in the student's view - multinomial logistic
regression on the view pooled to at most 16x16 and reduced by PCA (fitted on every training sample,
labelled or not: unsupervised) - and compares them on the labelled validation split:

- ``alone``: the probe fitted on the labelled training samples only (what ``--method none`` has);
- ``taught``: the probe fitted on every training sample, its own label where it has one and the
  teacher's prediction for its paired (or matched) teacher-modality sample where it has none (what
  distillation adds: supervision for the unlabelled samples);
- ``teacher only``: the probe fitted on the teacher's predictions for every sample: how much of the
  teacher's decision the student's view can reproduce (a cheap stand-in for MFH's modality-general
  share, Xue et al. 2023: what the student cannot see, it cannot learn from the teacher).

Verdict: ``help`` when the paired difference taught - alone on the validation samples has a 95 %
interval above zero, ``no-help`` when below; with no unlabelled sample the teacher adds no samples,
only soft targets of samples the labels already cover, and the verdict is ``no-help`` unless the
teacher-only probe beats the labels outright (that is what 5 seeds of every method measured at full
labels). Otherwise ``unsure``. The JSON carries every figure behind it and the reasons in words.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmkd_edge.errors import ConfigError, DataError

#: The probe pools each view to at most this many pixels a side, then keeps this many PCA components.
PROBE_SIDE, PROBE_COMPONENTS = 16, 64


def probe_features(x_train: np.ndarray, x_eval: np.ndarray, components: int = PROBE_COMPONENTS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled, standardised, PCA-reduced features of two sets (fitted on ``x_train`` only)."""
    def pool(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        side = min(PROBE_SIDE, t.shape[-1], t.shape[-2])
        return torch.nn.functional.adaptive_avg_pool2d(t, side).flatten(1).numpy().astype(np.float64)

    a, b = pool(x_train), pool(x_eval)
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    k = max(1, min(components, a.shape[0] - 1, a.shape[1]))
    _, _, vt = np.linalg.svd(a - a.mean(0), full_matrices=False)
    w = vt[:k].T
    return a @ w, b @ w


def fit_probe(f: np.ndarray, y: np.ndarray, f_eval: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """Predicted classes of ``f_eval`` from a logistic regression fitted on ``(f, y)``."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    if len(present) < 2:  # one class: the probe can only ever say that class
        return np.full(len(f_eval), present[0] if len(present) else 0)
    clf = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    clf.fit(f, y)
    return clf.predict(f_eval)


def _pairs(rule_name: str, teacher: Any, train_set: Any, teacher_view: str, student_view: str,
           teacher_data: str | None, teacher_split_file: str | None, seed: int, device: torch.device,
           log: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's predicted class for each student training sample, through the pairing rule."""
    from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
    from cmkd_edge.distill.losses.base import DistillContext
    from cmkd_edge.distill.pairing import build_pairing
    from cmkd_edge.distill.pairing.rules import open_gallery, own_gallery

    rule = build_pairing(rule_name)
    if not rule.uses_gallery:
        xs, _ = collect_views(train_set, [teacher_view])
        logits = batched_forward(lambda x: teacher.forward_all(x)[0], xs[teacher_view], device)
        return logits.argmax(1).numpy(), {"rule": rule_name}
    gallery = (open_gallery(teacher_data, teacher_split_file, teacher_view, student_view, seed,
                            list(train_set.class_names))
               if teacher_data is not None else own_gallery(train_set, teacher_view, student_view))
    ctx = DistillContext(teacher=teacher, student=None, train_set=train_set, device=device,  # type: ignore[arg-type]
                         teacher_view=teacher_view, student_view=student_view, run_dir=Path("."),
                         make_loader=lambda *a, **k: None, num_classes=len(train_set.class_names), seed=seed,
                         log=log)
    rule.setup(ctx, gallery)
    rule.on_epoch_start(0, ctx)
    logits = batched_forward(lambda x: teacher.forward_all(x)[0], gallery.x, device)
    return logits.argmax(1).numpy()[rule.pair], rule.report()


def predict_gain(teacher_path: str, data: str | None, student_view: str, *,
                 labelled_fraction: float | None = None, label_seed: int = 0, labelled_ids: str | None = None,
                 seed: int = 0, split_file: str | None = None, pairing: str = "given",
                 teacher_data: str | None = None, teacher_split_file: str | None = None,
                 device: str = "cpu", log: Any = None) -> dict[str, Any]:
    """Predict whether distilling ``teacher_path`` into a student on ``student_view`` will beat the
    student trained alone on the labels it has (module docstring). Minutes on 2 cores for MSTAR.

    The labelled samples are drawn exactly as ``distill --labelled-fraction F --label-seed S`` draws
    them (or read from ``labelled_ids``, or the data's own unlabelled samples), so the prediction is
    for that run's labels.

    Returns:
        A JSON-able dict: ``prediction`` (``help`` | ``no-help`` | ``unsure``), ``reasons`` (text),
        ``expected_gain`` (points, with its interval), the probe accuracies, the teacher's own
        accuracy and confidence, the label counts, the pairing report, ``seconds``.
    Raises:
        CheckpointError, DataError, ConfigError: unreadable teacher, data or options.
    """
    from cmkd_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from cmkd_edge.data import open_dataset
    from cmkd_edge.data.labelled import check_fraction, per_class_counts, read_labelled_ids, stratified_fraction
    from cmkd_edge.data.views import parse_view
    from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
    from cmkd_edge.distill.evaluation import resolve_device
    from cmkd_edge.distill.pairing import PAIRINGS
    from cmkd_edge.runtime.metrics import paired_difference, require_class_names

    t0 = time.perf_counter()
    say = log or (lambda _m: None)
    check_fraction(labelled_fraction)
    PAIRINGS.get(pairing)
    parse_view(student_view)
    if pairing == "given" and teacher_data is not None:
        raise ConfigError("pairing 'given' needs the teacher's view of the student's own samples; "
                          "--teacher-data holds other samples", "choose --pairing sembridge, random or class")
    dev = resolve_device(device)
    tck = load_checkpoint(teacher_path)
    if tck.meta.task != "multiclass":
        raise ConfigError("the prediction needs single-label classes (the teacher is multi-label)")
    tview = tck.meta.view
    teacher = model_from_checkpoint(tck).to(dev).eval()
    if split_file is None:
        own = Path(tck.where).parent / "split.csv"
        split_file = str(own) if own.is_file() and teacher_data is None else None
    views = [student_view] + ([tview] if teacher_data is None and tview != student_view else [])
    train = open_dataset(data, views=views, split="train", seed=seed, augment=False, split_file=split_file)
    val = open_dataset(data, views=views, split="val", seed=seed, augment=False, split_file=split_file)
    require_class_names(list(tck.meta.class_names), train.class_names, DataError,
                        "the teacher's classes ({got}) differ from the data's ({want})")
    if labelled_fraction is not None or labelled_ids is not None:
        if labelled_ids is not None:
            p = Path(labelled_ids)
            wanted = set(read_labelled_ids(p / "labelled.csv" if p.is_dir() else p))
            keep = np.asarray([i in wanted for i in train.ids])
        else:
            keep = stratified_fraction(train.labels, labelled_fraction, label_seed)  # type: ignore[arg-type]
        train.hide_labels(keep)
    classes = len(train.class_names)
    lab = train.labelled
    y = np.asarray(train.labels)
    n_lab, n_unl = int(lab.sum()), int((~lab).sum())
    counts = per_class_counts(y, lab, classes)
    say(f"diagnose: {n_lab} labelled and {n_unl} unlabelled training samples; pairing {pairing}")

    # the teacher: its own accuracy on val, its confidence on train, its predictions for the student's samples
    xv, yv = collect_views(val, views)
    yv = yv.numpy()
    t_val = None
    if tview in xv:
        t_val_logits = batched_forward(lambda x: teacher.forward_all(x)[0], xv[tview], dev)
        t_val = float((t_val_logits.argmax(1).numpy() == yv).mean())
    t_pred, pair_report = _pairs(pairing, teacher, train, tview, student_view, teacher_data, teacher_split_file,
                                 seed, dev, say)
    conf = None
    if tview in train.views:
        xt, _ = collect_views(train, [tview])
        p = torch.softmax(batched_forward(lambda x: teacher.forward_all(x)[0], xt[tview], dev), 1).max(1).values
        conf = {"mean_top_probability": round(float(p.mean()), 4),
                "share_above_0.99": round(float((p > 0.99).float().mean()), 4)}
    true = np.asarray(train.true_labels)
    known = true >= 0
    teacher_train_acc = float((t_pred[known] == true[known]).mean()) if known.any() else None

    # the probes, in the student's view
    xs_train, _ = collect_views(train, [student_view])
    f_train, f_val = probe_features(xs_train[student_view].numpy(), xv[student_view].numpy())
    alone = fit_probe(f_train[lab], y[lab], f_val, classes, seed) == yv
    taught_y = np.where(lab, y, t_pred)
    taught = fit_probe(f_train, taught_y, f_val, classes, seed) == yv
    teacher_only = fit_probe(f_train, t_pred, f_val, classes, seed) == yv
    half = np.zeros(len(lab), bool)
    if n_lab >= 2 * classes:  # the learning curve at half the labels: is `alone` still climbing?
        half[np.flatnonzero(lab)[stratified_fraction(y[lab], 0.5, seed + 7)]] = True
    alone_half = (fit_probe(f_train[half], y[half], f_val, classes, seed) == yv) if half.any() else None

    gain = paired_difference(alone, taught)
    t_gain = paired_difference(alone, teacher_only)
    reasons: list[str] = []
    if n_unl == 0:
        if t_gain["lo"] > 0:
            pred = "help"
            reasons.append(f"every training sample has a label, but a probe trained on the teacher's predictions "
                           f"beats one trained on the labels by {t_gain['difference'] * 100:+.1f} points "
                           f"[{t_gain['lo'] * 100:+.1f}, {t_gain['hi'] * 100:+.1f}] on val")
        else:
            pred = "no-help"
            reasons.append("every training sample has a label: the teacher adds no samples, only soft targets for "
                           "samples the labels already cover, and a probe trained on its predictions is not better "
                           f"than the labels ({t_gain['difference'] * 100:+.1f} points [{t_gain['lo'] * 100:+.1f}, "
                           f"{t_gain['hi'] * 100:+.1f}])")
    elif gain["lo"] > 0:
        pred = "help"
        reasons.append(f"{n_unl} unlabelled samples get the teacher's supervision: the probe taught through them "
                       f"gains {gain['difference'] * 100:+.1f} points [{gain['lo'] * 100:+.1f}, "
                       f"{gain['hi'] * 100:+.1f}] over the labels alone on val")
    elif gain["hi"] < 0:
        pred = "no-help"
        reasons.append(f"the teacher's supervision through the {pairing} pairs misleads: the probe taught through "
                       f"them loses {gain['difference'] * 100:+.1f} points [{gain['lo'] * 100:+.1f}, "
                       f"{gain['hi'] * 100:+.1f}] against the labels alone")
    else:
        pred = "unsure"
        reasons.append(f"the probe taught through the teacher differs from the labels alone by "
                       f"{gain['difference'] * 100:+.1f} points [{gain['lo'] * 100:+.1f}, {gain['hi'] * 100:+.1f}]: "
                       "the validation split cannot tell")
    if teacher_train_acc is not None:
        reasons.append(f"the teacher's signal for the student's training samples is right for "
                       f"{teacher_train_acc:.1%} of those whose class is known ({pair_report.get('rule')} pairs)")
    span = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    reasons.append(f"{n_lab} labels ({span} a class); the student's view reproduces "
                   f"{float(teacher_only.mean()):.1%} val accuracy from the teacher's predictions alone (probe)")
    if alone_half is not None:
        slope = (float(alone.mean()) - float(alone_half.mean())) * 100
        reasons.append(f"labels alone: {float(alone_half.mean()):.1%} with half of them, {float(alone.mean()):.1%} "
                       f"with all ({slope:+.1f} points): " + ("still climbing" if slope > 2 else "flattening"))
    if conf and conf["share_above_0.99"] > 0.9:
        reasons.append(f"the teacher is near-certain on {conf['share_above_0.99']:.0%} of the training samples: "
                       "its soft targets carry little beyond the label (consider auto_temperature)")
    return {
        "prediction": pred,
        "reasons": reasons,
        "expected_gain": {"points": round(gain["difference"] * 100, 2), "lo": round(gain["lo"] * 100, 2),
                          "hi": round(gain["hi"] * 100, 2), "on": f"val (n={len(yv)})",
                          "what": "probe taught through the teacher minus probe on the labels alone"},
        "probe": {"alone": round(float(alone.mean()), 4), "taught": round(float(taught.mean()), 4),
                  "teacher_only": round(float(teacher_only.mean()), 4),
                  "alone_half_labels": None if alone_half is None else round(float(alone_half.mean()), 4),
                  "features": f"view pooled to <= {PROBE_SIDE}x{PROBE_SIDE}, PCA {PROBE_COMPONENTS}, "
                              "logistic regression", "n_val": len(yv)},
        "teacher": {"path": tck.where, "view": tview, "val_accuracy": t_val, "confidence": conf,
                    "signal_accuracy_on_train": teacher_train_acc},
        "labels": {"n_train": len(y), "n_labelled": n_lab, "n_unlabelled": n_unl, "per_class": list(counts),
                   "fraction": labelled_fraction, "label_seed": label_seed if labelled_fraction else None},
        "pairing": pair_report,
        "student_view": student_view,
        "data": str(data or "synthetic"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def format_prediction(res: dict[str, Any]) -> str:
    """The text ``cmkd-edge diagnose`` prints for a prediction."""
    g = res["expected_gain"]
    words = {"help": "distillation is expected to help", "no-help": "distillation is not expected to help",
             "unsure": "the data cannot say whether distillation will help"}
    lines = [f"prediction: {res['prediction']} - {words[res['prediction']]} "
             f"(probe gain {g['points']:+.1f} points [{g['lo']:+.1f}, {g['hi']:+.1f}] on {g['on']})"]
    lines += [f"  - {r}" for r in res["reasons"]]
    return "\n".join(lines)
