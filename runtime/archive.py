"""Classify an archive of scenes into a directory: in this process, or on a Dask distributed cluster.

Why a runner of its own: an archive (a country, a season) is hundreds of scenes and hours of work, so
it must survive what single-scene classification never meets - a corrupt scene in the middle, a job
killed by the queue, a re-run after adding scenes - and it must produce the same maps on a laptop and
on a cluster. The rules:

* Inputs (:func:`expand_inputs`): files, folders, glob patterns (expanded here when the shell did not)
  and STAC Item JSONs. A folder holding every model band is one per-band product; any other folder
  contributes its ``*.tif``/``*.tiff`` scenes and ``*.json`` STAC items. Each scene's outputs are named
  by its id (``bandsources.scene_id``); two scenes with one id are refused before anything runs.
* Done = ``<id>.scene.json`` exists and records the same *run key*: the bundle's manifest sha256 (it
  lists every file's sha256) and every setting that changes the maps (stride, blend, batch-independent
  outputs, nodata policy, backend/precision asked). It is written last, atomically, after every output
  of the scene was renamed into place, so a re-run skips exactly the scenes that were finished with
  the same bundle and settings (resumable), and a killed scene is redone from scratch: its temporary
  files (``cog.stale_temporaries``) are removed before it starts.
* A failing scene is recorded (one line: what went wrong) and the others go on; the caller reports the
  failures at the end and exits non-zero. ``summary.json`` / ``summary.csv`` list every scene: status,
  class histogram, seconds, backend, artifact and worker.
* ``workers=None, scheduler=None``: scenes run one after another in this process (dask is never
  imported). ``workers=N``: a ``distributed.LocalCluster`` of N single-threaded worker processes.
  ``scheduler="tcp://..."``: an existing cluster (dask-jobqueue, Kubernetes); its workers need this
  package and must see the bundle and the scenes at the same paths. Either way each worker process
  opens and verifies the bundle once (:func:`_worker_classifier`) and checks its manifest hash equals
  the one this run was keyed by.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cmkd_edge.errors import BackendUnavailableError, CmkdError, ConfigError, DataError
from cmkd_edge.fsutil import atomic_write_json, atomic_write_text, sha256_file

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SceneSettings:
    """Everything that changes a scene's outputs (part of the run key) and how the model is opened."""

    stride: int | None = None
    blend: str = "hann"
    probabilities: bool = False
    confidence: bool = False
    quicklook: bool = False
    prob_dtype: str = "float32"
    nodata_policy: str = "mask"
    backend: str = "auto"
    precision: str = "auto"
    batch: int = 32
    threads: int | None = None

    def key_fields(self) -> dict[str, Any]:
        """The settings a finished scene must match to be skipped (batch and threads change no output)."""
        d = asdict(self)
        d.pop("batch")
        d.pop("threads")
        return d


@dataclass(frozen=True)
class SceneJob:
    """One scene to classify, as sent to a worker (plain data: it is pickled to other processes)."""

    scene: str
    scene_id: str
    bundle: str
    bundle_hash: str
    run_key: str
    out_dir: str
    settings: SceneSettings


@dataclass
class ArchiveRun:
    """What an archive run did: one record per scene (done now, skipped as done before, failed)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    run_key: str = ""
    bundle_hash: str = ""
    summary_json: Path | None = None
    summary_csv: Path | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


def expand_inputs(inputs: list[Path], band_names: tuple[str, ...]) -> list[Path]:
    """The scenes named by ``inputs`` (files, folders, globs, STAC items), in the order given.

    Raises:
        DataError: an input does not exist, a pattern matches nothing, or a folder holds no scene.
    """
    from .formats.bandsources import is_band_folder

    scenes: list[Path] = []
    for p in inputs:
        s = str(p)
        if not p.exists() and _GLOB_CHARS & set(s):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise DataError(f"pattern {s} matches no file")
            scenes.extend(Path(m) for m in matches)
        elif not p.exists():
            raise DataError(f"input {p} does not exist")
        elif p.is_dir() and not is_band_folder(p, band_names):
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                           and (q.suffix.lower() in (".tif", ".tiff") or _is_stac_item(q)))
            if not found:
                raise DataError(f"folder {p} holds no scene (*.tif, *.tiff, STAC *.json) and is not a "
                                f"per-band product (a file per band {','.join(band_names)})")
            scenes.extend(found)
        else:
            scenes.append(p)
    return list(dict.fromkeys(scenes))


def _is_stac_item(path: Path) -> bool:
    """A ``.json`` file that is a STAC Item (not, say, the summary of an earlier run in the same folder)."""
    if path.suffix.lower() != ".json":
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("type") == "Feature" and "assets" in doc


def run_key(bundle_hash: str, settings: SceneSettings) -> str:
    """sha256 of the bundle's manifest hash and the output-changing settings (first 16 hex digits)."""
    blob = json.dumps({"bundle": bundle_hash, **settings.key_fields()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scene_outputs(out_dir: Path, scene_id: str, settings: SceneSettings) -> dict[str, Path | None]:
    """Every file a scene writes into ``out_dir``, its record ``<id>.scene.json`` last."""
    from .scene import output_paths

    paths = output_paths(out_dir / f"{scene_id}_classes.tif", settings.probabilities, settings.confidence,
                         settings.quicklook)
    return {**paths, "record": out_dir / f"{scene_id}.scene.json"}


def is_done(job: SceneJob) -> dict[str, Any] | None:
    """The scene's earlier record when it finished with this run key and its outputs are all there."""
    outs = scene_outputs(Path(job.out_dir), job.scene_id, job.settings)
    try:
        rec = json.loads(outs["record"].read_text(encoding="utf-8"))  # type: ignore[union-attr]
    except (OSError, ValueError):
        return None
    if rec.get("run_key") != job.run_key or rec.get("status") != "done":
        return None
    if not all(p.exists() for k, p in outs.items() if p is not None and k != "record"):
        return None
    return rec


# -- in the worker --------------------------------------------------------------------------------------
_CLASSIFIERS: dict[tuple[str, str, str, int | None], Any] = {}
_OPENS = 0


def _worker_classifier(job: SceneJob) -> Any:
    """This process's classifier for the job's bundle: opened and verified on first use, then reused."""
    global _OPENS
    from .classifier import Classifier

    s = job.settings
    key = (job.bundle, s.backend, s.precision, s.threads)
    clf = _CLASSIFIERS.get(key)
    if clf is None:
        clf = Classifier.open(job.bundle, backend=s.backend, precision=s.precision, threads=s.threads)
        have = sha256_file(clf.bundle.root / "manifest.json")
        if have != job.bundle_hash:
            clf.close()
            raise DataError(f"the bundle at {job.bundle} on this worker (manifest sha256 {have[:12]}) is not "
                            f"the one this run was started with ({job.bundle_hash[:12]})",
                            "give every worker the same bundle path")
        _CLASSIFIERS[key] = clf
        _OPENS += 1
    return clf


def process_scene(job: SceneJob) -> dict[str, Any]:
    """Classify one scene into ``out_dir`` (or find it done); never raises: failures are records.

    Why never raise: on a cluster an exception would be retried or kill the gather; an archive run
    must instead finish the other scenes and list what failed.
    """
    from .formats.cog import stale_temporaries
    from .profiler import peak_rss_mb
    from .scene import classify_scene

    rec: dict[str, Any] = {"scene": job.scene_id, "input": job.scene, "status": "failed", "run_key": job.run_key,
                           "bundle_sha256": job.bundle_hash, "worker_pid": os.getpid()}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        clf = _worker_classifier(job)
        rec.update(backend=clf.backend, artifact=clf.artifact.id, precision=clf.precision, bundle_opens=_OPENS)
        outs = scene_outputs(Path(job.out_dir), job.scene_id, job.settings)
        for target in (p for p in outs.values() if p is not None):
            for tmp in stale_temporaries(target):  # a killed earlier run's partial files
                tmp.unlink(missing_ok=True)
        outs["record"].unlink(missing_ok=True)  # type: ignore[union-attr]  # not done until rewritten
        s = job.settings
        r = classify_scene(clf, job.scene, outs["classes"], stride=s.stride, batch=s.batch,
                           probabilities=str(outs["probabilities"]) if outs["probabilities"] else False,
                           nodata_policy=s.nodata_policy, prob_dtype=s.prob_dtype, progress=False,
                           blend=s.blend, confidence=str(outs["confidence"]) if outs["confidence"] else False,
                           quicklook=str(outs["quicklook"]) if outs["quicklook"] else None)
        rec.update(status="done", classes=str(r.out), height=r.height, width=r.width, patches=r.patches,
                   masked_patches=r.masked, nodata_pixels=r.nodata_pixels,
                   histogram=dict(zip(clf.class_names, r.histogram, strict=True)),
                   outputs={k: str(v) for k, v in outs.items() if v is not None and k != "record"},
                   seconds=round(time.perf_counter() - t0, 3), cpu_seconds=round(time.process_time() - c0, 3),
                   finished=time.time(),
                   peak_rss_mb=round(peak_rss_mb(), 1))
        atomic_write_json(outs["record"], rec)  # type: ignore[arg-type]
    except CmkdError as exc:
        rec.update(error=exc.one_line(), seconds=round(time.perf_counter() - t0, 3))
    except Exception as exc:  # a bug or an unexpected library error: keep its last frame for the report
        last = traceback.extract_tb(exc.__traceback__)[-1]
        rec.update(error=f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})",
                   seconds=round(time.perf_counter() - t0, 3))
    return rec


# -- the driver -----------------------------------------------------------------------------------------
def plan(bundle: Path, inputs: list[Path], out_dir: Path, settings: SceneSettings) -> tuple[list[SceneJob], str]:
    """The jobs of a run (bundle verified once here) and the bundle's manifest hash.

    Raises:
        BundleError: a bad bundle. DataError: missing inputs, duplicate scene ids, ``out_dir`` a file.
    """
    from .contract.bundle import open_bundle
    from .formats.bandsources import scene_id

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is a file", "pass a directory (it is created if missing)")
    b = open_bundle(bundle)
    bundle_hash = sha256_file(b.root / "manifest.json")
    scenes = expand_inputs(inputs, b.manifest.input.band_names)
    ids: dict[str, Path] = {}
    for s in scenes:
        sid = scene_id(s)
        if sid in ids:
            raise DataError(f"two scenes have the id {sid!r} ({ids[sid]} and {s}); their outputs would collide",
                            "classify them into different --out-dir directories")
        ids[sid] = s
    key = run_key(bundle_hash, settings)
    # why the path as given, not the extracted cache: a worker on another machine extracts a packed
    # bundle into its own cache; the manifest hash then proves it is the same bundle
    jobs = [SceneJob(str(s.resolve()), sid, str(bundle.resolve()), bundle_hash, key, str(out_dir.resolve()),
                     settings) for sid, s in ids.items()]
    return jobs, bundle_hash


def run_archive(bundle: Path, inputs: list[Path], out_dir: Path, settings: SceneSettings, *,
                workers: int | None = None, scheduler: str | None = None,
                on_record: Callable[[dict[str, Any]], None] | None = None) -> ArchiveRun:
    """Classify every scene of ``inputs`` into ``out_dir``; skip those already done; never stop early.

    Args:
        workers: run on a LocalCluster of this many single-threaded processes (needs ``[cluster]``).
        scheduler: address of an existing Dask scheduler (needs ``[cluster]``).
        on_record: called in this process with each scene's record as it arrives (progress).

    Returns:
        The run's records; ``summary.json`` and ``summary.csv`` are written to ``out_dir``.
    """
    if workers is not None and scheduler is not None:
        raise ConfigError("--workers and --scheduler both given",
                          "--workers starts a local cluster, --scheduler uses an existing one: pick one")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if workers is not None or scheduler is not None:
        _cluster_modules()  # a missing [cluster] extra is said before any scene is planned
    jobs, bundle_hash = plan(bundle, inputs, out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = ArchiveRun(run_key=jobs[0].run_key if jobs else run_key(bundle_hash, settings), bundle_hash=bundle_hash)
    todo = []
    for job in jobs:
        earlier = is_done(job)
        if earlier is not None:
            rec = {**earlier, "status": "skipped"}
            run.records.append(rec)
            if on_record:
                on_record(rec)
        else:
            todo.append(job)
    if todo:
        if workers is None and scheduler is None:
            for job in todo:
                rec = process_scene(job)
                run.records.append(rec)
                if on_record:
                    on_record(rec)
        else:
            _run_distributed(todo, run, workers, scheduler, on_record)
    order = {j.scene_id: i for i, j in enumerate(jobs)}
    run.records.sort(key=lambda r: order.get(r["scene"], len(order)))
    run.summary_json, run.summary_csv = write_summary(out_dir, run)
    return run


def _cluster_modules() -> tuple[Any, Any, Any, Any]:
    """``dask`` and distributed's ``Client``, ``LocalCluster``, ``as_completed``; the one place that
    says the optional [cluster] extra is missing (the engine is never needed on a device)."""
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise BackendUnavailableError(
            "classify --workers / --scheduler needs dask and distributed, which are not installed "
            "(the [cluster] extra)", "pip install 'cmkd-edge[cluster]'") from exc
    return dask, Client, LocalCluster, as_completed


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded processes, tuned for scenes.

    Why the settings: allowed-failures 0, a scene is done or failed once (a retry after a worker
    died would mask the failure); no worker profiler (its 10 ms stack sampling took ~10 % of a
    worker's CPU per scene here); glibc's own malloc tuning: distributed sets MALLOC_TRIM_THRESHOLD_
    for its workers, which also freezes glibc's mmap threshold, so every array over 128 KiB was
    mapped and unmapped afresh - 30 % more CPU per scene than the same scene in one process
    (measured). ``benchmarks/scenes.py`` starts its running cluster here too.
    """
    dask, _, LocalCluster, _ = _cluster_modules()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.worker.profile.enabled": False,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=40)


def _run_distributed(todo: list[SceneJob], run: ArchiveRun, workers: int | None, scheduler: str | None,
                     on_record: Callable[[dict[str, Any]], None] | None) -> None:
    """Submit every job to a Dask cluster (ours: :func:`local_cluster`) and collect records.

    Retries are the scheduler's setting, read when it starts: :func:`local_cluster` starts ours with
    allowed-failures 0; an external ``scheduler`` keeps its own.
    """
    _, Client, _, as_completed = _cluster_modules()

    if workers is not None:  # run_archive passes workers or a scheduler, never both
        cluster = local_cluster(workers)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({exc})",
                              "start one (dask scheduler) or use --workers N for a local cluster") from exc
        cluster = None
    try:
        futures = {client.submit(process_scene, job, key=f"scene-{job.run_key}-{job.scene_id}", pure=False): job
                   for job in todo}
        for fut in as_completed(list(futures)):
            job = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # the worker process died (KilledWorker) or the task was lost
                rec = {"scene": job.scene_id, "input": job.scene, "status": "failed", "run_key": job.run_key,
                       "error": f"{type(exc).__name__}: {exc}"}
            run.records.append(rec)
            if on_record:
                on_record(rec)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


SUMMARY_COLUMNS = ("scene", "status", "seconds", "backend", "artifact", "precision", "worker_pid", "peak_rss_mb",
                   "height", "width", "nodata_pixels", "classes", "error")


def write_summary(out_dir: Path, run: ArchiveRun) -> tuple[Path, Path]:
    """``summary.json`` (every record) and ``summary.csv`` (one row per scene, a column per class count)."""
    classes = list(dict.fromkeys(c for r in run.records for c in (r.get("histogram") or {})))
    doc = {"run_key": run.run_key, "bundle_sha256": run.bundle_hash, "scenes": len(run.records),
           "done": run.count("done"), "skipped": run.count("skipped"), "failed": run.count("failed"),
           "records": run.records}
    jpath, cpath = out_dir / "summary.json", out_dir / "summary.csv"
    atomic_write_json(jpath, doc)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*SUMMARY_COLUMNS, *(f"px_{c}" for c in classes)])
    for r in run.records:
        hist = r.get("histogram") or {}
        w.writerow([r.get(c, "") for c in SUMMARY_COLUMNS] + [hist.get(c, "") for c in classes])
    atomic_write_text(cpath, buf.getvalue())
    return jpath, cpath


__all__ = ["ArchiveRun", "SceneJob", "SceneSettings", "expand_inputs", "is_done", "plan", "process_scene",
           "run_archive", "run_key", "scene_outputs", "write_summary"]
