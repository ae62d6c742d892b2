"""Nearest vs cluster-centre support (SAM-MPA) with the slices ``samfewshot suggest`` picks.

``samfewshot bench`` draws evenly spaced slices, where the drawn slice nearest along z is mostly
also the nearest in appearance; here the k drawn slices of each structure are the ones
``suggest_slices`` picks (K-center greedy + k-centroid refinement on intensity features, as
``samfewshot suggest IMAGE --k K --range FIRST:LAST`` with the structure's extent as the range),
copied from the reference, and each engine propagates them. Prints the same table as ``bench``.

    PYTHONPATH=$PWD python benchmarks/bench_support.py IMAGE REFERENCE --labels 5=liver,1=spleen \\
        --k 3,5,10 --engines register:dis,register:dis:kcentroid [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.bench import BenchRecord, BenchResult
from SAMFewShotLib.cli.arguments import parse_ints, parse_labels
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.metrics import evaluate
from SAMFewShotLib.suggest import suggest_slices
from SAMFewShotLib.volume_io import read_labels, read_volume


def suggested_annotation(
    image_stack: np.ndarray, reference, value: int, k: int
) -> tuple[SparseAnnotation, list[int]]:
    """The annotation (numpy axis 0) of label ``value`` on the k slices suggest picks inside its
    extent; ``image_stack`` (z, y, x)."""
    present = np.flatnonzero((reference.array == value).any(axis=(1, 2)))
    candidates = range(int(present[0]), int(present[-1]) + 1)
    slices = suggest_slices(image_stack, k, candidates).slices
    drawn = np.zeros_like(reference.array)
    for z in slices:
        drawn[z][reference.array[z] == value] = value
    return SparseAnnotation.from_labels(reference.with_array(drawn), axis=0), slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("reference")
    parser.add_argument("--labels", required=True)
    parser.add_argument("--k", default="3,5,10")
    parser.add_argument("--engines", default="register:dis,register:dis:kcentroid")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    image, reference = read_volume(args.image), read_labels(args.reference)
    labels = parse_labels(args.labels, reference)
    engines = {name: make_engine(name) for name in args.engines.split(",")}
    result = BenchResult(image=args.image, reference=args.reference)
    for value, name in labels.items():
        truth = reference.array == value
        for k in parse_ints(args.k, "--k values"):
            annotation, slices = suggested_annotation(image.array, reference, value, k)
            for engine_name, engine in engines.items():
                start = time.perf_counter()
                prediction = engine.propagate(image, annotation)
                seconds = time.perf_counter() - start
                scores = evaluate(prediction.labels.array == value, truth, image.spacing_zyx)
                record = BenchRecord(
                    engine=engine_name, label=value, name=name, k=k, slices=slices, seconds=seconds, **scores
                )
                result.records.append(record)
    print(result.table())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.as_json(), out, indent=1)


if __name__ == "__main__":
    main()
