"""Probabilities of every artifact of a bundle on a list of chips, saved as .npz (torch-free).

Run by benchmarks/aarch64.py on this host and inside the arm64 userland, so both sides use the same
runtime code: ``python _aarch64_probe.py BUNDLE CHIPS_DIR OUT.npz`` (CHIPS_DIR/list.txt names the chips).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from cmkd_edge.runtime.backends import available
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.contract.manifest import read_manifest
from cmkd_edge.runtime.formats.chips import read_chips


def main() -> None:
    bundle, chips, out = map(Path, sys.argv[1:4])
    x = read_chips([chips / r for r in (chips / "list.txt").read_text().split()])
    res, skipped = {}, []
    for a in read_manifest(bundle).artifacts:
        if not available(a.backend):
            skipped.append(f"{a.id} ({a.backend} not installed)")
            continue
        with Classifier.open(bundle, backend=a.backend, artifact=a.id, threads=1, probe=False) as clf:
            res[f"{a.backend}__{a.id}"] = np.concatenate([clf.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
    tmp = out.with_name(out.stem + ".part.npz")
    np.savez(tmp, **res)
    tmp.replace(out)
    print(f"{len(x)} chips, {', '.join(res)}" + (f"; skipped {', '.join(skipped)}" if skipped else ""))


if __name__ == "__main__":
    main()
