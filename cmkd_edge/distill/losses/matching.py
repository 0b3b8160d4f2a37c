"""SemBridge's Student-Friendly Matching (Wei et al., AAAI 2026, arXiv 2511.08901), methods.md s.4.

(i) Static matching before training: a CLIP-style matcher - one encoder per modality with a
projection head - trained with a soft-target contrastive loss whose targets are the row-softmax of the
mean of the two within-modality similarity matrices; each student sample is then paired with the
most similar teacher sample *of the same class*.
(ii) Dynamic re-matching at epochs e_t = e_0 + sum_{i=1..t} (de + e_mu (i - 1)): every student sample is
re-paired with the same-class teacher sample whose softened prediction (T = 3) has the least
KL(p_t || p_s) to the student's current prediction.

The matcher is trained by ``cmkd-edge match`` (:func:`train_matcher_on_data`, saved to a file) or inside
``sembridge``'s setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cmkd_edge.errors import CheckpointError, ConfigError, DataError

MATCHER_FORMAT = "cmkd-edge/matcher"


# schedule and pairing rules ------------------------------------------------------------------
def rematch_epochs(e0: int, de: int, emu: int, max_epochs: int) -> list[int]:
    """Epochs e_t = e_0 + sum_{i=1..t} (de + emu (i - 1)) that are < ``max_epochs``.

    >>> rematch_epochs(30, 30, 5, 150)
    [30, 60, 95, 135]
    >>> rematch_epochs(45, 15, 5, 150)
    [45, 60, 80, 105, 135]
    """
    if e0 < 0 or de <= 0 or emu < 0:
        raise ConfigError(f"re-matching schedule needs e0 >= 0, de > 0, emu >= 0 (got {e0}, {de}, {emu})")
    out, e, t = [], e0, 0
    while e < max_epochs:
        out.append(e)
        t += 1
        e += de + emu * (t - 1)
    return out


def _same_class_mask(s_labels: Tensor, t_labels: Tensor) -> Tensor:
    """(N_s, N_t): pairs allowed by the classes; an unknown label (-1, an unlabelled sample) on either
    side allows every partner, since the class cannot be checked."""
    s, t = s_labels.view(-1, 1), t_labels.view(1, -1)
    return (s == t) | (s < 0) | (t < 0)


def match_by_similarity(zs: Tensor, zt: Tensor, s_labels: Tensor, t_labels: Tensor) -> Tensor:
    """Static pairing: for each student row, the most cosine-similar teacher row of the same class.

    Args:
        zs: (N_s, d) student-side embeddings; zt: (N_t, d) teacher-side embeddings.
    Returns:
        (N_s,) int64 indices into the teacher gallery.
    Raises:
        DataError: a student class that has no teacher sample.
    """
    sim = F.normalize(zs.float(), dim=1) @ F.normalize(zt.float(), dim=1).T
    mask = _same_class_mask(s_labels, t_labels)
    _check_classes(mask, s_labels)
    return sim.masked_fill(~mask, float("-inf")).argmax(1)


def kl_matrix(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0) -> Tensor:
    """KL(p_t[j] || p_s[i]) for every pair: (N_s, N_t), softmax at ``temperature``."""
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_pt = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    neg_ent_t = (log_pt.exp() * log_pt).sum(1)  # (N_t,)
    cross = log_pt.exp() @ log_ps.T  # (N_t, N_s): sum_c p_t log p_s
    return neg_ent_t[None, :] - cross.T


def rematch_by_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    s_labels: Tensor,
    t_labels: Tensor,
    temperature: float = 3.0,
) -> Tensor:
    """Dynamic re-matching: per student sample, the same-class teacher sample of least KL.

    Returns:
        (N_s,) int64 indices into the teacher gallery.
    """
    kl = kl_matrix(student_logits, teacher_logits, temperature)
    mask = _same_class_mask(s_labels, t_labels)
    _check_classes(mask, s_labels)
    return kl.masked_fill(~mask, float("inf")).argmin(1)


def random_same_class(s_labels: Tensor, t_labels: Tensor, generator: torch.Generator) -> Tensor:
    """A uniformly random same-class teacher index for each student sample (pairing ablation)."""
    mask = _same_class_mask(s_labels, t_labels)
    _check_classes(mask, s_labels)
    scores = torch.rand(mask.shape, generator=generator).masked_fill(~mask, -1.0)
    return scores.argmax(1)


def _check_classes(mask: Tensor, s_labels: Tensor) -> None:
    missing = (~mask.any(1)).nonzero().flatten()
    if len(missing):
        cls = sorted({int(s_labels[i]) for i in missing.tolist()})
        raise DataError(
            f"no teacher sample of class(es) {cls} to pair with", "the teacher gallery must cover every class"
        )


# the CLIP-style matcher ----------------------------------------------------------------------
class TinyEncoder(nn.Module):
    """Three stride-2 conv-BN-ReLU blocks and global pooling, after per-channel normalisation."""

    def __init__(self, in_channels: int, mean: Sequence[float], std: Sequence[float], width: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6).view(1, -1, 1, 1))
        layers: list[nn.Module] = []
        c = in_channels
        for w in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.body((x - self.mean) / self.std)


@dataclass(frozen=True)
class MatcherConfig:
    """Shape of a matcher: input channels per side, normalisation stats, widths, temperature."""

    teacher_channels: int
    student_channels: int
    teacher_mean: tuple[float, ...]
    teacher_std: tuple[float, ...]
    student_mean: tuple[float, ...]
    student_std: tuple[float, ...]
    width: int = 32
    proj_dim: int = 64
    temperature: float = 0.1
    normalise: bool = True


class Matcher(nn.Module):
    """One encoder per modality, each with a projection head to a shared space.

    ``normalise`` (this project's default): embeddings are L2-normalised, so the contrastive logits are
    cosines / tau with tau = 0.1. The reference (weirl-922/ACKD@21a20f8 ``model/CLIP.py``,
    ``configration/config_matcher.py``) uses LayerNorm-ed, not L2-normalised, embeddings with tau = 1;
    ``normalise=False, temperature=1`` selects that (a LayerNorm ends the projection heads then).
    Matching itself uses cosine similarity either way, as the reference's ``generator.py`` does.
    """

    def __init__(self, cfg: MatcherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_t = TinyEncoder(cfg.teacher_channels, cfg.teacher_mean, cfg.teacher_std, cfg.width)
        self.enc_s = TinyEncoder(cfg.student_channels, cfg.student_mean, cfg.student_std, cfg.width)
        d = self.enc_t.out_dim
        tail: list[nn.Module] = [] if cfg.normalise else [nn.LayerNorm(cfg.proj_dim)]
        self.proj_t = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.proj_dim), *tail)
        self.proj_s = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.proj_dim), *tail)

    def _out(self, z: Tensor) -> Tensor:
        return F.normalize(z, dim=1) if self.cfg.normalise else z

    def embed_teacher(self, x: Tensor) -> Tensor:
        return self._out(self.proj_t(self.enc_t(x)))

    def embed_student(self, x: Tensor) -> Tensor:
        return self._out(self.proj_s(self.enc_s(x)))


def soft_contrastive_loss(zs: Tensor, zt: Tensor, temperature: float = 0.1) -> Tensor:
    """Soft-target CLIP loss: targets = row-softmax of the mean within-modality similarity.

    logits = z_s z_t^T / tau; targets = softmax((z_s z_s^T + z_t z_t^T) / (2 tau)), rows; the loss is
    the mean of the soft cross-entropies over rows (student -> teacher) and columns (teacher ->
    student). zs, zt: (B, d), row i of both from the same (paired) sample. The reference's targets read
    ``softmax((sim_t + sim_s) / 2 * temperature)`` (a multiplication, identical at its tau = 1); the
    division here is the CLIP form the paper describes.
    """
    logits = zs @ zt.T / temperature
    targets = F.softmax((zs @ zs.T + zt @ zt.T) / (2 * temperature), dim=1)
    loss_s = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (loss_s + loss_t) / 2


def _stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    m = x.double().mean(dim=(0, 2, 3))
    s = x.double().std(dim=(0, 2, 3))
    return tuple(float(v) for v in m), tuple(float(v) for v in s)


def train_matcher(
    xt: Tensor,
    xs: Tensor,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    width: int = 32,
    proj_dim: int = 64,
    temperature: float = 0.1,
    normalise: bool = True,
    log: Any = None,
) -> Matcher:
    """Train a matcher on paired views: row i of ``xt`` (N, Ct, H, W) and ``xs`` (N, Cs, H, W).

    Adam, ``epochs`` passes over shuffled mini-batches of the soft-target contrastive loss.
    """
    if xt.shape[0] != xs.shape[0] or xt.shape[0] < 2:
        raise DataError(f"matcher training needs >= 2 paired samples (got {xt.shape[0]} / {xs.shape[0]})")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tm, ts = _stats(xt)
    sm, ss = _stats(xs)
    cfg = MatcherConfig(xt.shape[1], xs.shape[1], tm, ts, sm, ss, width, proj_dim, temperature, normalise)
    m = Matcher(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    n = xt.shape[0]
    for ep in range(epochs):
        m.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n - 1, batch_size):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:
                continue
            loss = soft_contrastive_loss(m.embed_student(xs[idx]), m.embed_teacher(xt[idx]), temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(f"matcher epoch {ep + 1}/{epochs}: contrastive loss {total / n:.4f}")
    return m.eval()


@torch.no_grad()
def embed_all(fn: Any, x: Tensor, batch_size: int = 256) -> Tensor:
    """Apply an embedding function in eval mode over (N, ...) in chunks."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def train_matcher_on_data(
    data: str | None,
    teacher_view: str,
    student_view: str,
    out: str | Path,
    split: str = "train",
    split_file: str | None = None,
    epochs: int = 20,
    seed: int = 0,
    log: Any = None,
) -> dict[str, Any]:
    """Train a matcher on the paired views of ``split`` of a dataset, save it to ``out``, summarise it.

    What ``cmkd-edge match`` does; the file is read back by ``sembridge`` (``matcher=FILE``).

    Returns:
        {"out", "teacher_view", "student_view", "split", "n", "epochs", "seconds"} and, for
        single-label data, "own_pair_rate": how often the same-class pick is the sample's own pair.
    Raises:
        DataError: fewer than two pairs; errors of :func:`cmkd_edge.data.open_dataset`.
    """
    import time

    from cmkd_edge.data import open_dataset
    from cmkd_edge.distill.dataset_tensors import collect_views

    t0 = time.perf_counter()
    ds = open_dataset(
        data, views=[teacher_view, student_view], split=split, seed=seed, augment=False, split_file=split_file
    )
    views, labels = collect_views(ds, [teacher_view, student_view])
    matcher = train_matcher(views[teacher_view], views[student_view], epochs=epochs, seed=seed, log=log)
    zs = embed_all(matcher.embed_student, views[student_view])
    zt = embed_all(matcher.embed_teacher, views[teacher_view])
    summary: dict[str, Any] = {
        "out": str(out),
        "teacher_view": teacher_view,
        "student_view": student_view,
        "split": split,
        "n": int(labels.shape[0]),
        "epochs": epochs,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if labels.dim() == 1:
        pair = match_by_similarity(zs, zt, labels, labels)
        summary["own_pair_rate"] = float((pair == torch.arange(len(pair))).float().mean())
    save_matcher(out, matcher, {"teacher_view": teacher_view, "student_view": student_view, "seed": seed})
    return summary


def save_matcher(path: str | Path, matcher: Matcher, extra: dict[str, Any] | None = None) -> None:
    """Write ``{"format", "version", "config", "state_dict", ...extra}`` atomically."""
    from cmkd_edge.fsutil import atomic_open

    obj = {
        "format": MATCHER_FORMAT,
        "version": 1,
        "config": asdict(matcher.cfg),
        "state_dict": matcher.state_dict(),
        **(extra or {}),
    }
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load_matcher(path: str | Path, teacher_channels: int | None = None, student_channels: int | None = None) -> Matcher:
    """Load a matcher written by :func:`save_matcher` (``weights_only``), checking input widths.

    Raises:
        CheckpointError: missing, not a matcher file, or built for other channel counts.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"matcher file {p} not found", "train one with `cmkd-edge match`")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise CheckpointError(f"{p} is not a readable matcher file ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != MATCHER_FORMAT:
        raise CheckpointError(
            f"{p} is not a cmkd-edge matcher (format {obj.get('format') if isinstance(obj, dict) else None!r})"
        )
    c = dict(obj["config"])
    for k in ("teacher_mean", "teacher_std", "student_mean", "student_std"):
        c[k] = tuple(c[k])
    cfg = MatcherConfig(**c)
    for side, want, have in (
        ("teacher", teacher_channels, cfg.teacher_channels),
        ("student", student_channels, cfg.student_channels),
    ):
        if want is not None and want != have:
            raise CheckpointError(
                f"matcher {p} expects {have} {side} channels, the run has {want}", "train a matcher for these views"
            )
    m = Matcher(cfg)
    m.load_state_dict(obj["state_dict"])
    return m.eval()


Pairing = Literal["given", "random-same-class", "matched"]
