"""SemBridge: asymmetric cross-modal KD (Wei et al., AAAI 2026, arXiv 2511.08901), methods.md s.4.

Setting: the teacher's (MS) and student's (RGB) samples need not be paired, only classes are shared.
Two modules on top of logit KD:

- Student-Friendly Matching (:mod:`.matching`): a CLIP-style matcher pairs every student sample with
  the most similar same-class teacher sample before training; at epochs
  e_t = e_0 + sum_{i=1..t}(de + e_mu (i - 1)) each student sample is re-paired with the same-class
  teacher sample of least KL(p_t || p_s) at T = 3. ``pairing`` = ``given`` (the dataset's own pairs,
  the default: on paired data the true pair is known, and the paper's matching - written for unpaired
  data - re-pairs most students onto a few "hub" teacher samples while the student is untrained,
  docs/methods.md s.4), ``random-same-class`` (ablation) or ``matched`` (the paper's algorithm); pairs
  are served through :meth:`SemBridge.teacher_input` from teacher views gathered once in ``setup``.
- Semantic-aware Knowledge Alignment, as the reference code (weirl-922/ACKD@21a20f8,
  ``model/attention.py``, ``train.py::get_distillation_loss``) computes it: a learned multi-head
  attention (8 heads, no qkv bias) over the last-stage patch tokens (``feats["last"]``, (B, N, C)) gives
  patch weights w = mean over heads and query rows of the attention map (the reference's
  ``cross_modal_attn(mode="mean")`` reduces to exactly this, since every row sums to 1); tokens are
  re-weighted by w and rescaled so the norm of each sample's *mean over patches* is kept
  (``align_feats``; ``reweight_norm=frobenius`` keeps the whole token matrix's norm instead); each
  sample's re-weighted tokens are flattened to one row (B, N*C) and CORAL aligns student and teacher
  rows, and the pooled embeddings (``feats["embed"]``):
  C(X) = (X - mean)^T (X - mean), CORAL = ||C_s - C_t||_F^2 / (4 d^3) (d = N*C for the patch term),
  with C rescaled to the authors' batch of 256 (``coral_batch``; see :func:`.coral.coral_loss`) so the
  loss weight does not depend on the batch size. ``coral_convention=deep-coral`` gives Sun & Saenko's.
  ``patch_rows=token`` (not the reference) treats every token as a row (BN, C). Student widths are
  mapped to the teacher's by learned linear heads when they differ (only the student side is
  projected, so the alignment cannot be met by shrinking both sides to zero). ``align=sinkhorn``
  replaces CORAL by an exact entropic-OT cost (log-domain Sinkhorn; the paper's framing) with the
  patch weights as marginals.

Loss, as the authors ran it: 0.3 CE + 0.4 KL(T = 3, batchmean, no T^2) + 0.003 (CORAL_patch +
CORAL_pooled) - the defaults of :class:`SemBridgeConfig` (0.003 = lam_ot 0.3 x ot_weights 0.01 in the
reference's ``main_config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cmkd_edge.distill.dataset_tensors import batched_forward, collect_views
from cmkd_edge.distill.losses.base import Batch, DistillContext, LossOutput, ModelOutput
from cmkd_edge.distill.losses.coral import coral_loss, sinkhorn_loss
from cmkd_edge.distill.losses.kd import KDConfig, LogitKD
from cmkd_edge.distill.losses.matching import (
    embed_all,
    load_matcher,
    match_by_similarity,
    random_same_class,
    rematch_by_kl,
    rematch_epochs,
    train_matcher,
)
from cmkd_edge.errors import ConfigError


@dataclass(frozen=True)
class SemBridgeConfig(KDConfig):
    """Options of ``--method sembridge``; defaults are the authors' (arXiv 2511.08901; reference code
    weirl-922/ACKD@21a20f8) except ``pairing`` (``given``) and the matcher's normalised embeddings at
    tau = 0.1 - both written with their reasons in docs/methods.md s.4.

    Attributes:
        ce_weight, kd_weight, temperature, reduction, t2: 0.3, 0.4, 3, batchmean, no T^2.
        align_weight: weight of CORAL_patch + CORAL_pooled (0.003).
        align: "coral" (the authors'), "sinkhorn" (exact entropic OT) or "none".
        coral_convention: "sembridge" (/(4 d^3), C not divided by n) or "deep-coral".
        coral_batch: rescale the covariances to this batch size (the authors' 256), so the loss does
            not grow with the user's batch; None = raw (batch-dependent, the reference at its batch).
        patch_rows: "sample" (each sample's re-weighted tokens flattened to one row, d = N*C; the
            reference) or "token" (every token a row, d = C).
        reweight_norm: "patch-mean" (keep the norm of the mean over patches; the reference) or
            "frobenius" (keep the norm of the whole (N, C) token matrix).
        heads, qkv_bias: attention heads (8; reduced to a divisor of the token width if needed) and
            whether q/k/v projections have a bias (the reference: no).
        teacher_attention: re-weight the teacher's patches with its own learned attention too.
        pairing: "given" (default) | "random-same-class" | "matched" (the paper's unpaired setting).
        matcher: path of a matcher from ``cmkd-edge match``; None trains one in setup
            (``matcher_epochs`` epochs on the training split's paired views).
        matcher_temperature, matcher_normalise: the matcher's contrastive tau and whether its
            embeddings are L2-normalised before the similarities (0.1, True; the reference: 1.0 on
            LayerNorm-ed, not L2-normalised, embeddings).
        rematch: enable dynamic re-matching (pairing=matched only) at e0, de, emu.
        rematch_temperature: T of the re-matching KL (3).
        sinkhorn_eps, sinkhorn_iters: entropic OT settings.
    """

    ce_weight: float = 0.3
    kd_weight: float = 0.4
    temperature: float = 3.0
    reduction: Literal["batchmean", "mean"] = "batchmean"
    t2: bool = False
    align_weight: float = 0.003
    align: Literal["coral", "sinkhorn", "none"] = "coral"
    coral_convention: Literal["sembridge", "deep-coral"] = "sembridge"
    coral_batch: int | None = 256
    patch_rows: Literal["sample", "token"] = "sample"
    reweight_norm: Literal["patch-mean", "frobenius"] = "patch-mean"
    heads: int = 8
    qkv_bias: bool = False
    teacher_attention: bool = True
    patch_feature: str = "last"
    pooled_feature: str = "embed"
    pairing: Literal["given", "random-same-class", "matched"] = "given"
    matcher: str | None = None
    matcher_epochs: int = 20
    matcher_temperature: float = 0.1
    matcher_normalise: bool = True
    rematch: bool = True
    rematch_e0: int = 30
    rematch_de: int = 30
    rematch_emu: int = 5
    rematch_temperature: float = 3.0
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairing not in ("given", "random-same-class", "matched"):
            raise ValueError(f"pairing must be given|random-same-class|matched, got {self.pairing!r}")
        if self.align not in ("coral", "sinkhorn", "none"):
            raise ValueError(f"align must be coral|sinkhorn|none, got {self.align!r}")
        if self.coral_convention not in ("sembridge", "deep-coral"):
            raise ValueError(f"coral_convention must be sembridge|deep-coral, got {self.coral_convention!r}")
        if self.patch_rows not in ("sample", "token"):
            raise ValueError(f"patch_rows must be sample|token, got {self.patch_rows!r}")
        if self.reweight_norm not in ("patch-mean", "frobenius"):
            raise ValueError(f"reweight_norm must be patch-mean|frobenius, got {self.reweight_norm!r}")
        if self.coral_batch is not None and self.coral_batch < 2:
            raise ValueError(f"coral_batch must be >= 2 or none, got {self.coral_batch}")
        if self.matcher_temperature <= 0:
            raise ValueError(f"matcher_temperature must be > 0, got {self.matcher_temperature}")
        if self.heads < 1 or self.matcher_epochs < 0 or self.rematch_de <= 0 or self.rematch_e0 < 0:
            raise ValueError("heads >= 1, matcher_epochs >= 0, rematch_de > 0, rematch_e0 >= 0 required")


def _heads_for(dim: int, heads: int) -> int:
    return max(h for h in range(1, min(heads, dim) + 1) if dim % h == 0)


def attention_patch_weights(tokens: Tensor, attn: nn.MultiheadAttention) -> Tensor:
    """Patch weights (B, N): the mean over query rows of the head-averaged attention map (sums to 1)."""
    _, a = attn(tokens, tokens, tokens, need_weights=True, average_attn_weights=True)
    return a.mean(dim=1)


def reweight_energy_preserving(
    tokens: Tensor, weights: Tensor, norm: Literal["patch-mean", "frobenius"] = "patch-mean", eps: float = 1e-8
) -> Tensor:
    """tokens (B, N, C) * weights (B, N), rescaled per sample so an energy is kept.

    ``patch-mean`` (the reference's ``align_feats``): ||mean_n(w_n x_n)|| = ||mean_n x_n||, i.e. the
    scale is sqrt(||mean_n x_n||^2 / ||mean_n w_n x_n||^2). ``frobenius``: ||w * X||_F = ||X||_F.
    """
    rw = tokens * weights[..., None]
    if norm == "frobenius":
        scale = tokens.flatten(1).norm(dim=1) / (rw.flatten(1).norm(dim=1) + eps)
    else:
        scale = tokens.mean(1).norm(dim=1) / (rw.mean(1).norm(dim=1) + eps)
    return rw * scale[:, None, None]


def _tokens(fmap: Tensor, size: tuple[int, int]) -> Tensor:
    if fmap.shape[-2:] != size:
        fmap = F.adaptive_avg_pool2d(fmap, size)
    return fmap.flatten(2).transpose(1, 2)  # (B, N, C)


class SemBridge(LogitKD):
    """0.3 CE + 0.4 KL(T=3) + 0.003 (CORAL_patch + CORAL_pooled), with student-friendly matching."""

    name = "sembridge"
    Config = SemBridgeConfig

    def __init__(self, cfg: SemBridgeConfig | None = None, task: str = "multiclass") -> None:
        super().__init__(cfg, task)
        self._built = False
        self._bank: Tensor | None = None
        self._student_bank: Tensor | None = None
        self._labels: Tensor | None = None
        self._t_logits: Tensor | None = None
        self._schedule: set[int] = set()
        self.last_rematch: dict[str, float] | None = None
        self.register_buffer("pair", torch.zeros(0, dtype=torch.long))

    # building ------------------------------------------------------------------------------
    def build(self, student_dims: dict[str, int], teacher_dims: dict[str, int]) -> None:
        """Create the projection heads and attention modules for these feature widths."""
        c = self.cfg
        cs, ct = student_dims[c.patch_feature], teacher_dims[c.patch_feature]
        ds_, dt = student_dims[c.pooled_feature], teacher_dims[c.pooled_feature]
        self.proj_patch = nn.Linear(cs, ct) if cs != ct else nn.Identity()
        self.proj_pooled = nn.Linear(ds_, dt) if ds_ != dt else nn.Identity()
        h = _heads_for(ct, c.heads)
        # why bias=qkv_bias: nn.MultiheadAttention's bias covers the q/k/v projections (and the output
        # projection, which the patch weights never pass through), the reference's qkv_bias=False
        self.attn_s = nn.MultiheadAttention(ct, h, bias=c.qkv_bias, batch_first=True)
        self.attn_t = nn.MultiheadAttention(ct, h, bias=c.qkv_bias, batch_first=True) if c.teacher_attention else None
        self._built = True

    def setup(self, ctx: DistillContext) -> None:
        """Build the alignment heads; gather the teacher gallery and compute the initial pairing.

        The heads are built here, every time (unless ``build`` was already called), because setup
        runs before the optimizer is created: only then are the heads' parameters trained.
        """
        c = self.cfg
        if ctx.teacher is None:
            raise ConfigError("sembridge needs a teacher", "pass --teacher")
        super().setup(ctx)
        if not self._built and c.align != "none":
            # why not with align=none: the heads would be unused parameters whose initialisation
            # draws from the global RNG, so the run would no longer equal plain KD with these weights
            self.build(_dims(ctx.student), _dims(ctx.teacher))
        self.to(ctx.device)
        if c.pairing == "given":
            return
        if self.task != "multiclass":
            raise ConfigError(
                f"sembridge pairing={c.pairing} needs single-label classes (task is {self.task})",
                "use --method-opt pairing=given",
            )
        if (torch.as_tensor(ctx.train_set.labels) < 0).any():
            raise ConfigError(f"sembridge pairing={c.pairing} pairs within classes, and some training "
                              "samples have no label", "use --pairing sembridge (the run's pairing rule), "
                              "which pairs unlabelled samples too")
        views, labels = collect_views(ctx.train_set, [ctx.teacher_view, ctx.student_view])
        self._bank, self._student_bank, self._labels = views[ctx.teacher_view], views[ctx.student_view], labels
        ctx.teacher.eval()
        self._t_logits = batched_forward(lambda x: ctx.teacher.forward_all(x)[0], self._bank, ctx.device)
        if c.pairing == "random-same-class":
            pair = random_same_class(labels, labels, torch.Generator().manual_seed(ctx.seed))
        else:
            if c.matcher:
                matcher = load_matcher(c.matcher, self._bank.shape[1], self._student_bank.shape[1])
            else:
                ctx.log(f"sembridge: training the matcher for {c.matcher_epochs} epochs")
                matcher = train_matcher(
                    self._bank,
                    self._student_bank,
                    epochs=c.matcher_epochs,
                    seed=ctx.seed,
                    temperature=c.matcher_temperature,
                    normalise=c.matcher_normalise,
                    log=ctx.log,
                )
            zs = embed_all(matcher.embed_student, self._student_bank)
            zt = embed_all(matcher.embed_teacher, self._bank)
            pair = match_by_similarity(zs, zt, labels, labels)
            if c.rematch:
                self._schedule = set(rematch_epochs(c.rematch_e0, c.rematch_de, c.rematch_emu, 10**6))
        same = float((pair == torch.arange(len(pair))).float().mean())
        ctx.log(f"sembridge: pairing={c.pairing}, {same:.0%} of students paired with their own patch")
        self.pair = pair.to(self.pair.device)

    def on_epoch_start(self, epoch: int, ctx: DistillContext) -> None:
        """Re-pair by least KL at the scheduled epochs (pairing=matched, rematch on)."""
        if epoch not in self._schedule or self._student_bank is None:
            return
        was = ctx.student.training
        ctx.student.eval()
        s_logits = batched_forward(lambda x: ctx.student.forward_all(x)[0], self._student_bank, ctx.device)
        ctx.student.train(was)
        new = rematch_by_kl(s_logits, self._t_logits, self._labels, self._labels, self.cfg.rematch_temperature)
        changed = float((new != self.pair.cpu()).float().mean())
        own = float((new == torch.arange(len(new))).float().mean())
        ctx.log(
            f"sembridge: re-matched at epoch {epoch}, {changed:.0%} of pairs changed, "
            f"{own:.0%} paired with their own sample, {len(torch.unique(new))} distinct teacher samples"
        )
        self.last_rematch = {"epoch": epoch, "changed": changed, "own": own, "distinct": int(len(torch.unique(new)))}
        self.pair = new.to(self.pair.device)

    def teacher_input(self, batch: Batch, ctx: DistillContext) -> Tensor:
        """The paired teacher samples' views (the batch's own views when pairing=given)."""
        if self.cfg.pairing == "given" or self._bank is None:
            return batch.views[ctx.teacher_view]
        idx = self.pair.cpu()[batch.index.cpu().long()]
        return self._bank[idx].to(batch.views[ctx.student_view].device)

    # loss ----------------------------------------------------------------------------------
    def alignment(self, s: ModelOutput, t: ModelOutput) -> tuple[Tensor, Tensor]:
        """(patch term, pooled term) of the CORAL (or Sinkhorn) alignment."""
        c = self.cfg
        fs, ft = s.feats[c.patch_feature], t.feats[c.patch_feature].detach()
        size = (min(fs.shape[-2], ft.shape[-2]), min(fs.shape[-1], ft.shape[-1]))
        ts = self.proj_patch(_tokens(fs, size))
        tt = _tokens(ft, size)
        ws = attention_patch_weights(ts, self.attn_s)
        wt = (
            attention_patch_weights(tt, self.attn_t)
            if self.attn_t is not None
            else torch.full_like(ws, 1 / ws.shape[1])
        )
        rs = reweight_energy_preserving(ts, ws, c.reweight_norm)
        rt = reweight_energy_preserving(tt, wt, c.reweight_norm)
        ps = self.proj_pooled(s.feats[c.pooled_feature])
        pt = t.feats[c.pooled_feature].detach()
        if c.align == "sinkhorn":
            patch = torch.stack(
                [
                    sinkhorn_loss(rs[i], rt[i], ws[i] + 1e-8, wt[i] + 1e-8, c.sinkhorn_eps, c.sinkhorn_iters)
                    for i in range(rs.shape[0])
                ]
            ).mean()
            return patch, sinkhorn_loss(ps, pt, eps=c.sinkhorn_eps, iters=c.sinkhorn_iters)
        if c.patch_rows == "sample":  # the reference: torch.flatten(t_fea_1, 1), rows = samples
            xs, xt = rs.flatten(1), rt.flatten(1)
        else:
            xs, xt = rs.reshape(-1, rs.shape[-1]), rt.reshape(-1, rt.shape[-1])
        patch = coral_loss(xs, xt, c.coral_convention, c.coral_batch)
        return patch, coral_loss(ps, pt, c.coral_convention, c.coral_batch)

    def forward(self, s: ModelOutput, t: ModelOutput | None, targets: Tensor) -> LossOutput:
        if t is None:
            raise ConfigError("sembridge needs a teacher")
        c = self.cfg
        ce = self.task_loss(s.logits, targets)
        kd = self.kd_term(s, t)
        total = c.ce_weight * ce + c.kd_weight * kd
        parts = {"ce": ce.detach(), "kd": kd.detach()}
        if c.align != "none" and c.align_weight > 0:
            if not self._built:
                # why not build lazily here: parameters created after the optimizer was built would
                # never be trained. setup() always builds, so reaching this is a programming error.
                raise RuntimeError(
                    "SemBridge.forward called before setup(): the alignment heads do "
                    "not exist yet (call setup(ctx) before building the optimizer)"
                )
            patch, pooled = self.alignment(s, t)
            total = total + c.align_weight * (patch + pooled)
            parts.update({"align_patch": patch.detach(), "align_pooled": pooled.detach()})
        return LossOutput(total, parts)


def _dims(model: nn.Module) -> dict[str, int]:
    dims = getattr(model, "feature_dims", None)
    if not isinstance(dims, dict):
        raise ConfigError(f"{type(model).__name__} has no feature_dims", "use a cmkd-edge model")
    return dict(dims)
