"""The MFH synthetic Gaussian experiments (Xue et al., ICLR 2023, arXiv 2206.06487, Figs. 2-3, Table 2).

Implements docs/methods.md section 2 exactly: numpy legacy global seeding and the draw order of the
authors' ``gauss/main.py`` / ``gauss/main_modify_gamma.py``, n_train 200, n_test 1000, one linear
layer d -> 2, full-batch SGD lr 0.1 for 1000 steps, accuracy after the last step, KD weights (1, 1),
T = 1, reduction ``mean`` (PyTorch ``KLDivLoss()``'s default, which the authors used).

The KD students are trained through :class:`cmkd_edge.distill.losses.kd.LogitKD` - the module
``distill --method kd`` runs - so this is not a separate toy. For speed every seed and sweep point
is one *group* of a batched linear model (weights ``(G, d, 2)``); the per-group losses are the
module's mean over all groups times ``G`` (all groups have the same n), whose gradient with respect to
one group's weights is exactly that group's own loss gradient. Inputs of narrower models are
zero-padded (a zero column gets no gradient) and initialised like ``nn.Linear`` for their true
width, ``U(-1/sqrt(d), 1/sqrt(d))``. Weight initialisation (and Algorithm 1's permutations) draw
from one torch generator (seed 0, or 42 for table2) for the whole batch of groups, so the data match
the reference exactly but the initial weights do not, and one seed's models depend on how many
seeds run alongside it (the means are what is compared).

Differences from the public code, on purpose:
- Table 2's regular-KD student: the public script calls ``train_kd(x2_train, x1_train, ...)``, i.e.
  it feeds the teacher the student's modality and trains the student on the teacher's; here the
  teacher sees x^a and the student x^b, as the paper describes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from cmkd_edge.distill.losses.base import ModelOutput
from cmkd_edge.distill.losses.kd import KDConfig, LogitKD
from cmkd_edge.errors import ConfigError

N_TRAIN = 200
N_TEST = 1000
STEPS = 1000
LR = 0.1
GAMMA_OVERLAPS = (0, 2, 4, 6, 8, 10)
ALPHA_KS = (0, 10, 20, 30, 40)
TABLE2_KS = ((30, 10), (20, 10), (10, 10), (10, 20), (10, 30))
EXPERIMENTS = ("gamma", "alpha", "table2")


# data ----------------------------------------------------------------------------------------
def gen_gamma(a: np.ndarray, n: int, overlap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exp "gamma": xs (n, 20), y = 1[xs a[:20] > 0]; x^b (n, 50) then x^a (n, 25), in this order."""
    xs = np.random.randn(n, 20)
    y = (xs @ a[:20] > 0).astype(np.int64)
    xb = np.random.randn(n, 50)
    xb[:, 0:10] = xs[:, 0:10]
    xa = np.random.randn(n, 25)
    lo = 10 - overlap
    xa[:, lo : lo + 10] = xs[:, lo : lo + 10]
    return xa, xb, y


def gen_alpha(a: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exp "alpha": xs (n, 50), y = 1[xs a[:50] > 0]; x^b (n, 50) then x^a (n, 50)."""
    xs = np.random.randn(n, 50)
    y = (xs @ a[:50] > 0).astype(np.int64)
    xb = np.random.randn(n, 50)
    xb[:, 0:10] = xs[:, 0:10]
    xa = np.random.randn(n, 50)
    xa[:, 0 : 10 + k] = xs[:, 0 : 10 + k]
    return xa, xb, y


def gen_table2(n: int, k1: int, k2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exp "table2" (a = ones): xs (n, k1+k2), then x^a (n, 50), then x^b (n, 50)."""
    xs = np.random.randn(n, k1 + k2)
    y = (xs.sum(axis=1) > 0).astype(np.int64)
    xa = np.random.randn(n, 50)
    xa[:, 0 : k1 + k2] = xs
    xb = np.random.randn(n, 50)
    xb[:, 0:k2] = xs[:, 0:k2]
    return xa, xb, y


def make_data(experiment: str, seed: int, param: Any) -> dict[str, np.ndarray]:
    """All arrays of one run, drawn with numpy's legacy global seeding in the reference order.

    Args:
        experiment: "gamma" (param = overlap o), "alpha" (param = k) or "table2" (param = (k1, k2)).
        seed: the run's seed (gamma/alpha: 0..N-1; table2: 42+i).
    Returns:
        keys xa, xb, y (train), xa_test, xb_test, y_test, and for table2 also the students' fresh
        training set xa2, xb2, y2.
    """
    np.random.seed(seed)
    if experiment == "table2":
        k1, k2 = param
        xa, xb, y = gen_table2(N_TRAIN, k1, k2)
        xa_t, xb_t, y_t = gen_table2(N_TEST, k1, k2)
        xa2, xb2, y2 = gen_table2(N_TRAIN, k1, k2)
        return {
            "xa": xa,
            "xb": xb,
            "y": y,
            "xa_test": xa_t,
            "xb_test": xb_t,
            "y_test": y_t,
            "xa2": xa2,
            "xb2": xb2,
            "y2": y2,
        }
    a = np.random.randn(500)
    gen = gen_gamma if experiment == "gamma" else gen_alpha
    xa, xb, y = gen(a, N_TRAIN, param)
    np.random.seed(seed + 1)
    xa_t, xb_t, y_t = gen(a, N_TEST, param)
    return {"xa": xa, "xb": xb, "y": y, "xa_test": xa_t, "xb_test": xb_t, "y_test": y_t}


# batched linear models -----------------------------------------------------------------------
@dataclass
class Linear:
    """G independent linear layers d -> 2: weight (G, d, 2), bias (G, 2)."""

    weight: Tensor
    bias: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)

    def accuracy(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-group accuracy (G,) in [0, 1]."""
        with torch.no_grad():
            return (self(x).argmax(-1) == y).float().mean(1)


def init_linear(widths: Sequence[int], d_max: int, gen: torch.Generator) -> Linear:
    """``nn.Linear``'s default init per group for its true input width, zero-padded to ``d_max``."""
    bound = torch.tensor([1.0 / math.sqrt(w) for w in widths])[:, None, None]
    g = len(widths)
    weight = (torch.rand(g, d_max, 2, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(g, 2, generator=gen) * 2 - 1) * bound[:, :, 0]
    mask = (torch.arange(d_max)[None, :] < torch.tensor(widths)[:, None]).float()[:, :, None]
    return Linear((weight * mask).requires_grad_(), bias.requires_grad_())


def _kd_module() -> LogitKD:
    """The project's KD loss with the MFH code's settings: weights (1, 1), T = 1, reduction mean."""
    return LogitKD(KDConfig(ce_weight=1.0, kd_weight=1.0, temperature=1.0, reduction="mean", t2=False))


def train_linear(
    x: Tensor,
    y: Tensor,
    widths: Sequence[int],
    gen: torch.Generator,
    teacher_logits: Tensor | None = None,
    steps: int = STEPS,
    lr: float = LR,
) -> Linear:
    """Full-batch SGD of G linear models; CE only, or CE + KD through :class:`LogitKD`.

    Args:
        x: (G, n, d) inputs, zero-padded beyond each group's width.
        y: (G, n) int64 labels.
        teacher_logits: (G, n, 2) frozen teacher outputs on the paired x^a, or None (no KD).
    """
    g, n, d = x.shape
    model = init_linear(widths, d, gen)
    opt = torch.optim.SGD([model.weight, model.bias], lr=lr)
    kd = _kd_module() if teacher_logits is not None else None
    flat_y = y.reshape(-1)
    flat_t = teacher_logits.reshape(g * n, 2) if teacher_logits is not None else None
    for _ in range(steps):
        logits = model(x).reshape(g * n, 2)
        if kd is None:
            loss = kd_free_ce(logits, flat_y)
        else:
            loss = kd(ModelOutput(logits, {}), ModelOutput(flat_t, {}), flat_y).total
        opt.zero_grad(set_to_none=True)
        (loss * g).backward()  # why: sum of per-group means, see the module docstring
        opt.step()
    return model


def kd_free_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Plain cross-entropy (the no-KD baseline), the same call ``DistillMethod.task_loss`` makes."""
    return F.cross_entropy(logits, y)


def train_joint(xa: Tensor, xb: Tensor, y: Tensor, gen: torch.Generator, steps: int = STEPS) -> tuple[Linear, Linear]:
    """Algorithm 1's joint training: CE(t(x^a), y) + CE(s(x^b), y) + MSE(t(x^a), s(x^b)).

    SGD lr 0.01, momentum 0.9, full batch, as in the authors' ``train_for_overlap_tag``.
    """
    g, n, _ = xa.shape
    t = init_linear([xa.shape[2]] * g, xa.shape[2], gen)
    s = init_linear([xb.shape[2]] * g, xb.shape[2], gen)
    opt = torch.optim.SGD([t.weight, t.bias, s.weight, s.bias], lr=0.01, momentum=0.9)
    fy = y.reshape(-1)
    for _ in range(steps):
        ot, os_ = t(xa), s(xb)
        loss = F.cross_entropy(ot.reshape(-1, 2), fy) + F.cross_entropy(os_.reshape(-1, 2), fy) + F.mse_loss(ot, os_)
        opt.zero_grad(set_to_none=True)
        (loss * g).backward()
        opt.step()
    return t, s


def linear_permutation_saliency(
    t: Linear, s: Linear, xa: Tensor, xb: Tensor, repeats: int = 100, gen: torch.Generator | None = None
) -> Tensor:
    """Algorithm 1 for batched linear teachers: saliency of every x^a column, min-max normalised.

    For each column k and each of ``repeats`` permutations of the samples, the teacher's output on
    x^a with column k permuted is compared (MSE) with the student's output on x^b; the score is the
    mean increase over the unpermuted distance. A linear teacher makes the permuted output closed
    form: ``t(x) + (x[perm, k] - x[:, k]) W[k]``.

    Returns:
        (G, d) saliency in [0, 1]; high = modality-general (the student can follow it).
    """
    with torch.no_grad():
        g, n, d = xa.shape
        h1, h2 = t(xa), s(xb)
        base = ((h1 - h2) ** 2).mean(dim=(1, 2))
        acc = torch.zeros(g, d)
        w = t.weight  # (G, d, 2)
        for _ in range(repeats):
            perm = torch.argsort(torch.rand(g, n, generator=gen), dim=1)
            delta = torch.gather(xa, 1, perm[:, :, None].expand(g, n, d)) - xa  # (G, n, d)
            diff = (h1 - h2)[:, :, None, :] + delta[..., None] * w[:, None, :, :]  # (G, n, d, 2)
            acc += (diff**2).mean(dim=(1, 3)) - base[:, None]
        acc /= repeats
        lo, hi = acc.min(1, keepdim=True).values, acc.max(1, keepdim=True).values
        return (acc - lo) / (hi - lo).clamp_min(1e-12)


# experiments ---------------------------------------------------------------------------------
def _t(arrays: list[np.ndarray], dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(np.stack(arrays), dtype=dtype)


def _pad(arrays: list[np.ndarray], width: int) -> Tensor:
    out = np.zeros((len(arrays), arrays[0].shape[0], width), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1]] = a
    return torch.from_numpy(out)


def _summary(acc: Tensor, points: int, seeds: int) -> list[dict[str, float]]:
    v = acc.reshape(points, seeds).double().numpy() * 100
    return [{"mean": float(r.mean()), "std": float(r.std())} for r in v]


def run_experiment(
    experiment: Literal["gamma", "alpha", "table2"],
    seeds: int = 20,
    teacher_mode: Literal["gt", "alg1"] = "gt",
    steps: int = STEPS,
    repeats: int = 100,
) -> dict[str, Any]:
    """Run one experiment over all its sweep points and ``seeds`` seeds; accuracies in percent.

    Returns:
        {"experiment", "seeds", "teacher_mode", "steps", "seconds", "points": [...]}; every point
        holds its parameter(s) and {"mean", "std"} of "teacher", "no_kd", "kd" (table2 also
        "mg_teacher", "mg_kd", and "delta_student" = mg_kd - kd; gamma/alpha "delta" = kd - no_kd),
        plus "per_seed" lists for the record.
    Raises:
        ConfigError: unknown experiment or teacher mode, or seeds < 1.
    """
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown MFH experiment {experiment!r}", f"choose one of: {', '.join(EXPERIMENTS)}")
    if teacher_mode not in ("gt", "alg1"):
        raise ConfigError(f"unknown teacher mode {teacher_mode!r}", "choose gt or alg1")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0 if experiment != "table2" else 42)
    if experiment == "gamma":
        params: list[Any] = list(GAMMA_OVERLAPS)
    elif experiment == "alpha":
        params = list(ALPHA_KS)
    else:
        params = list(TABLE2_KS)
    seed_list = [42 + i for i in range(seeds)] if experiment == "table2" else list(range(seeds))
    runs = [make_data(experiment, s, p) for p in params for s in seed_list]
    g = len(runs)
    xa, xb, y = _t([r["xa"] for r in runs]), _t([r["xb"] for r in runs]), _t([r["y"] for r in runs], torch.int64)
    xa_t, xb_t = _t([r["xa_test"] for r in runs]), _t([r["xb_test"] for r in runs])
    y_t = _t([r["y_test"] for r in runs], torch.int64)
    da, db = xa.shape[2], xb.shape[2]

    teacher = train_linear(xa, y, [da] * g, gen, steps=steps)
    res: dict[str, Tensor] = {"teacher": teacher.accuracy(xa_t, y_t)}
    if experiment != "table2":
        with torch.no_grad():
            t_logits = teacher(xa)
        res["no_kd"] = train_linear(xb, y, [db] * g, gen, steps=steps).accuracy(xb_t, y_t)
        res["kd"] = train_linear(xb, y, [db] * g, gen, t_logits, steps=steps).accuracy(xb_t, y_t)
    else:
        xa2, xb2, y2 = (
            _t([r["xa2"] for r in runs]),
            _t([r["xb2"] for r in runs]),
            _t([r["y2"] for r in runs], torch.int64),
        )
        k2s = [p[1] for p in params for _ in seed_list]
        if teacher_mode == "gt":
            cols = [list(range(k)) for k in k2s]
            overlap_hit = None
        else:
            jt, js = train_joint(xa, xb, y, gen, steps=steps)
            sal = linear_permutation_saliency(jt, js, xa, xb, repeats=repeats, gen=gen)
            order = torch.argsort(-sal, dim=1)
            cols = [order[i, :k].tolist() for i, k in enumerate(k2s)]
            overlap_hit = torch.tensor([len(set(c) & set(range(k))) / k for c, k in zip(cols, k2s, strict=False)])
        with torch.no_grad():
            t_logits = teacher(xa2)
        res["no_kd"] = train_linear(xb2, y2, [db] * g, gen, steps=steps).accuracy(xb_t, y_t)
        res["kd"] = train_linear(xb2, y2, [db] * g, gen, t_logits, steps=steps).accuracy(xb_t, y_t)
        kmax = max(k2s)
        mg_x = _pad([r["xa2"][:, c] for r, c in zip(runs, cols, strict=False)], kmax)
        mg_xt = _pad([r["xa_test"][:, c] for r, c in zip(runs, cols, strict=False)], kmax)
        mg = train_linear(mg_x, y2, k2s, gen, steps=steps)
        res["mg_teacher"] = mg.accuracy(mg_xt, y_t)
        with torch.no_grad():
            mg_logits = mg(mg_x)
        res["mg_kd"] = train_linear(xb2, y2, [db] * g, gen, mg_logits, steps=steps).accuracy(xb_t, y_t)
        if overlap_hit is not None:
            res["alg1_overlap_recall"] = overlap_hit

    n_p, n_s = len(params), len(seed_list)
    summ = {k: _summary(v, n_p, n_s) for k, v in res.items()}
    points = []
    for i, p in enumerate(params):
        if experiment == "gamma":
            point: dict[str, Any] = {"gamma": p / (20 - p), "overlap": p}
        elif experiment == "alpha":
            point = {"alpha": p / (p + 10), "k": p}
        else:
            point = {"k1": p[0], "k2": p[1], "gamma": p[1] / (p[0] + p[1])}
        for k in summ:
            point[k] = summ[k][i]
        per = {k: (v.reshape(n_p, n_s)[i].double() * 100).tolist() for k, v in res.items()}
        if experiment == "table2":
            d = np.array(per["mg_kd"]) - np.array(per["kd"])
        else:
            d = np.array(per["kd"]) - np.array(per["no_kd"])
        point["delta_student" if experiment == "table2" else "delta"] = {"mean": float(d.mean()), "std": float(d.std())}
        point["per_seed"] = per
        points.append(point)
    return {
        "experiment": experiment,
        "seeds": seed_list,
        "teacher_mode": teacher_mode if experiment == "table2" else None,
        "steps": steps,
        "kd": {
            "weights": [1.0, 1.0],
            "temperature": 1.0,
            "reduction": "mean",
            "module": "cmkd_edge.distill.losses.kd:LogitKD",
        },
        "seconds": time.perf_counter() - start,
        "points": points,
    }

