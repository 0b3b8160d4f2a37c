"""Probabilities of one artifact of a bundle on a list of chips, saved as .npz (torch-free).

Run by benchmarks/aarch64.py on this host and inside the arm64 userland, so both sides use the same
runtime code: ``python _aarch64_probe.py BUNDLE CHIPS_DIR OUT.npz BACKEND ARTIFACT STRIDE``
(CHIPS_DIR/list.txt names the chips; every STRIDE-th of them is run). One artifact per call, so an
emulated run that takes hours keeps what it finished. Exit 3: the backend is not installed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from cmkd_edge.runtime.backends import available
from cmkd_edge.runtime.classifier import Classifier
from cmkd_edge.runtime.formats.chips import read_chips


def main() -> None:
    bundle, chips, out = map(Path, sys.argv[1:4])
    backend, artifact, stride = sys.argv[4], sys.argv[5], int(sys.argv[6])
    if not available(backend):
        print(f"{backend} not installed")
        sys.exit(3)
    rel = (chips / "list.txt").read_text().split()[::stride]
    x = read_chips([chips / r for r in rel])
    with Classifier.open(bundle, backend=backend, artifact=artifact, threads=1, probe=False) as clf:
        p = np.concatenate([clf.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
    tmp = out.with_name(out.stem + ".part.npz")
    np.savez(tmp, p=p)
    tmp.replace(out)
    print(f"{len(x)} chips, {backend}:{artifact}")


if __name__ == "__main__":
    main()
