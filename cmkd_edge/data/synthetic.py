"""Deterministic SYNTHETIC paired optical/SAR patches: the embedded default for ``demo`` and tests.

Made so that cross-modal distillation has something to show within a minute on two cores:

* **optical** (13 bands, EuroSAT order, reflectance x 1e4) carries most of the class information:
  each class has a spectral signature; ``Wheat`` and ``Maize`` share their visible bands and differ
  only in red-edge/NIR (B05-B08, B8A), so even RGB cannot separate them;
* **SAR** (VV, VH in dB, 4-look speckle) is learnable but harder: classes differ in backscatter level
  and texture (dark smooth water, bright point scatterers in urban areas, volume texture in forest),
  a per-patch offset (incidence angle, soil moisture) blurs the levels, and the crops differ by only
  half a dB in VV-VH;
* patches mix a main class with a blob of a second class, co-registered in both sensors, so an
  optical teacher's soft outputs carry per-patch information a SAR student can learn from.

Everything is generated from a fixed seed, so the data (and its train/val/test split) is the same in
every run; it is labelled synthetic in ``describe()`` and everywhere results are reported.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from cmkd_edge.data.bands import EUROSAT_BANDS, OPTICAL_UNITS, S1_BANDS
from cmkd_edge.data.catalog import Catalog
from cmkd_edge.data.splits import stratified_split
from cmkd_edge.errors import ConfigError

CLASS_NAMES = ("Water", "Forest", "Urban", "Grassland", "Wheat", "Maize")

# Spectral signatures (reflectance x 1e4), EuroSAT band order:
#            B01   B02   B03   B04   B05   B06   B07   B08   B09  B10   B11   B12   B8A
_OPTICAL = np.array([
    [1300, 1000,  800,  500,  400,  300,  250,  200,  100,  10,  100,   50,  200],  # Water
    [1200,  900,  800,  500,  900, 2200, 2700, 3000,  900,  15, 1500,  700, 3100],  # Forest
    [1500, 1300, 1300, 1400, 1600, 1800, 1900, 2000,  700,  20, 2600, 2200, 2100],  # Urban
    [1250,  950, 1000,  800, 1300, 2300, 2700, 2900,  850,  15, 2200, 1300, 3000],  # Grassland
    [1250,  950,  950,  700, 1250, 2600, 3200, 3500,  950,  15, 2000, 1100, 3600],  # Wheat
    [1250,  950,  950,  700, 1050, 1900, 2400, 2700,  820,  15, 2000, 1100, 2750],  # Maize
], dtype=np.float32)
# Mean backscatter (dB): VV, VH.
_SAR = np.array([
    [-22.0, -28.0],   # Water
    [-8.0, -14.5],    # Forest
    [-4.0, -11.0],    # Urban (plus bright point scatterers)
    [-11.5, -18.5],   # Grassland
    [-10.0, -16.0],   # Wheat
    [-10.0, -15.5],   # Maize
], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size of the synthetic set. Defaults keep the whole demo around a minute on two cores."""

    num_classes: int = 6
    per_class: int = 80
    size: int = 32
    looks: float = 4.0
    seed: int = 0
    val: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.val < 1 and 0 < self.test < 1 and self.val + self.test < 1):
            raise ConfigError("synthetic val and test fractions must be in (0, 1) and leave a train split")
        if not 2 <= self.num_classes <= len(CLASS_NAMES):
            raise ConfigError(f"synthetic num_classes must be 2..{len(CLASS_NAMES)}")
        if self.per_class < 3 or self.size < 4 or self.looks <= 0:
            raise ConfigError("synthetic per_class must be >= 3, size >= 4 and looks > 0")


def parse_synthetic(spec: str) -> SyntheticConfig:
    """``synthetic`` or ``synthetic:per_class=20,size=16[,num_classes=4,looks=4,seed=1,val=0.2,test=0.2]``."""
    _, _, arg = spec.partition(":")
    kwargs: dict[str, float | int] = {}
    fields = {f.name: f.type for f in dataclasses.fields(SyntheticConfig)}
    for item in filter(None, (a.strip() for a in arg.split(","))):
        key, _, value = item.partition("=")
        if key not in fields:
            raise ConfigError(f"unknown synthetic option {key!r}", f"valid: {', '.join(fields)}")
        try:
            kwargs[key] = float(value) if key in ("looks", "val", "test") else int(value)
        except ValueError:
            raise ConfigError(f"synthetic option {key} needs a number, got {value!r}") from None
    return SyntheticConfig(**kwargs)  # type: ignore[arg-type]


def _blobs(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth random fields ``(n, size, size)``: a sum of three low-frequency plane waves."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((n, size, size), dtype=np.float32)
    for _ in range(3):
        freq = rng.uniform(0.5, 2.0, size=(n, 2)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
        fx = (freq[:, 0, None, None] * np.cos(angle))
        fy = (freq[:, 1, None, None] * np.sin(angle))
        field += np.cos(2 * np.pi * (fx * xx + fy * yy) + phase)
    return field


@functools.lru_cache(maxsize=4)
def generate(cfg: SyntheticConfig = SyntheticConfig()) -> Catalog:
    """Generate the synthetic catalog for ``cfg`` (cached: the same object for the same config)."""
    rng = np.random.default_rng(cfg.seed)
    k, n, s = cfg.num_classes, cfg.num_classes * cfg.per_class, cfg.size
    labels = np.repeat(np.arange(k), cfg.per_class).astype(np.int64)

    # spatial layout: main class plus a blob (0-35 % of the patch) of another class
    other = (labels + rng.integers(1, k, size=n)) % k
    frac = rng.uniform(0.0, 0.35, size=n).astype(np.float32)
    field = _blobs(rng, n, s).reshape(n, -1)
    rank = field.argsort(axis=1).argsort(axis=1).reshape(n, s, s) / float(s * s)
    cls_map = np.where(rank >= 1.0 - frac[:, None, None], other[:, None, None],
                       labels[:, None, None])

    # optical: signature x brightness x per-band jitter x texture + sensor noise
    opt = _OPTICAL[:k][cls_map].transpose(0, 3, 1, 2)  # (n, 13, s, s)
    bright = rng.uniform(0.85, 1.15, size=(n, 1, 1, 1)).astype(np.float32)
    jitter = rng.normal(1.0, 0.03, size=(n, 13, 1, 1)).astype(np.float32)
    texture = 1.0 + 0.05 * _blobs(rng, n, s)[:, None] / 3.0
    opt = opt * bright * jitter * texture
    opt += rng.normal(0.0, 1.0, size=opt.shape).astype(np.float32) * (0.02 * opt + 30.0)
    s2 = np.round(np.clip(opt, 1.0, 20000.0)).astype(np.float32)

    # SAR: class level + per-patch offset + forest texture + urban point scatterers, then speckle
    db = _SAR[:k][cls_map].transpose(0, 3, 1, 2)  # (n, 2, s, s)
    db = db + rng.normal(0.0, 1.5, size=(n, 1, 1, 1)).astype(np.float32)
    forest = (cls_map == 1)[:, None]
    db = db + forest * 1.5 * _blobs(rng, n, s)[:, None] / 3.0
    if k > 2:
        points = (cls_map == 2) & (rng.random(size=(n, s, s)) < 0.05)
        db = db + points[:, None] * 10.0
    power = 10.0 ** (db / 10.0) * rng.gamma(cfg.looks, 1.0 / cfg.looks, size=db.shape)
    s1 = (10.0 * np.log10(np.maximum(power, 1e-10))).astype(np.float32)

    ids = [f"syn{i:05d}" for i in range(n)]
    fractions = (1.0 - cfg.val - cfg.test, cfg.val, cfg.test)
    splits = stratified_split(labels, seed=cfg.seed, fractions=fractions)
    spec = (f"synthetic:num_classes={k},per_class={cfg.per_class},size={s},looks={cfg.looks:g},"
            f"seed={cfg.seed}")
    if (cfg.val, cfg.test) != (0.2, 0.2):  # older specs name the default split as before
        spec += f",val={cfg.val:g},test={cfg.test:g}"
    return Catalog("synthetic", spec, ids, labels, list(CLASS_NAMES[:k]), "multiclass",
                   {"s2": s2, "s1": s1}, {"s2": EUROSAT_BANDS, "s1": S1_BANDS},
                   {"s2": OPTICAL_UNITS, "s1": "db"}, splits, synthetic=True,
                   notes=["SYNTHETIC data from the built-in generator; not real imagery"])
