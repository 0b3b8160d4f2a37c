"""The records ``select`` writes (``selection.json``) and ``report`` reads: budget, candidates, choice.

Frozen dataclasses read and written by the one codec (``runtime.contract.codec``), like the
manifest's records, so a report never reads the selection by string key and a hand-edited file
that does not fit is one line naming the field and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cmkd_edge.errors import DataError

from ..contract.codec import Record

SCHEMA = "cmkd-edge/selection"
SCHEMA_VERSION = 1
PERCENTILES = ("p50", "p90", "p99")
Percentile = Literal["p50", "p90", "p99"]


class _SelectionRecord(Record):
    _what: ClassVar[str] = "selection"
    _error: ClassVar[type[DataError]] = DataError


@dataclass(frozen=True)
class Budget(_SelectionRecord):
    """What the deployment must meet; None = no limit. Latency in ms at ``percentile`` (end to end,
    at the selection's batch size and thread count), memory and size in MiB, accuracy in percent,
    drop in points below the candidate's own bundle's FP32 on the same samples."""

    __omit_none__: ClassVar[bool] = True

    percentile: Percentile = "p99"
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_size_mb: float | None = None
    min_accuracy: float | None = None
    max_drop: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """``p99 <= 5 ms, size <= 20 MiB``; ``no limits`` for an empty budget."""
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"{self.percentile} latency <= {self.max_latency_ms:g} ms")
        if self.max_memory_mb is not None:
            parts.append(f"memory <= {self.max_memory_mb:g} MiB")
        if self.max_size_mb is not None:
            parts.append(f"size <= {self.max_size_mb:g} MiB")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:g} %")
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop:g} points")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class Failure(_SelectionRecord):
    """One constraint a candidate misses: its value, the limit, by how much (``over``, in ``unit``)."""

    constraint: str
    limit: float
    unit: str
    value: float | None = None
    over: float | None = None
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Candidate(_SelectionRecord):
    """One artifact x backend x thread count of one bundle, measured on this device.

    ``accuracy`` (percent) with its 95 % interval on ``split`` (n samples); ``drop`` in points
    below the bundle's FP32 reference with the 95 % paired interval; ``latency_ms``: end-to-end
    cold start and percentiles at ``batch`` (the profiler's figures); ``memory_mb``: the RSS the
    artifact added (``memory_method`` says how it was measured); ``size_mb``: its files on disk.
    """

    id: str
    bundle: str
    artifact: str
    backend: str
    precision: str
    threads: int
    batch: int
    metric: str
    accuracy: float
    accuracy_interval: tuple[float, float]
    split: str
    n: int
    latency_ms: dict[str, float]
    size_mb: float
    files: dict[str, str]
    memory_mb: float | None = None
    memory_method: str = ""
    drop: float | None = None
    drop_interval: tuple[float, float] | None = None
    reference: str | None = None
    gate: str = "-"
    pareto: bool = False
    fits: bool = False
    fails: tuple[Failure, ...] = ()
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Skip(_SelectionRecord):
    """An artifact x backend this device does not run (or that failed to open), and why."""

    bundle: str
    artifact: str
    backend: str
    why: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BundleEntry(_SelectionRecord):
    """A bundle the selection measured: where, its identity (files + ids hash), data it was scored on."""

    path: str
    key: str
    data: str | None = None
    synthetic: bool | None = None
    split_table: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Selection(_SelectionRecord):
    """The whole decision: budget, every candidate, the Pareto front, the choice or why none."""

    budget: Budget
    batch: int
    threads: tuple[int, ...]
    split: str
    bundles: tuple[BundleEntry, ...]
    candidates: tuple[Candidate, ...]
    front: tuple[str, ...]
    chosen: str | None
    why: str
    device: dict[str, Any]
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    command: str = ""
    task: str = "multiclass"
    nearest: tuple[str, ...] = ()
    binding: str | None = None
    skipped: tuple[Skip, ...] = ()
    method: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schema != SCHEMA or self.schema_version != SCHEMA_VERSION:
            raise DataError(f"selection schema {self.schema!r} version {self.schema_version!r} is not "
                            f"{SCHEMA!r} version {SCHEMA_VERSION}", "re-run cmkd-edge select")

    def candidate(self, cid: str) -> Candidate:
        return next(c for c in self.candidates if c.id == cid)

    def for_bundle(self, key: str) -> tuple[Candidate, ...]:
        """The candidates of the bundle whose key (files + ids hash) is ``key``."""
        paths = {b.path for b in self.bundles if b.key == key}
        return tuple(c for c in self.candidates if c.bundle in paths)
