"""Embedding large JPEGs decoded whole vs at reduced scale (``--full-decode`` or not).

Embeds a labelled train (bank) and test folder with a run's encoder both ways, in this
process: seconds of each, the mean cosine between the two sets of features, and the kNN
top-1 (k=20, T=0.1) of each.

Example (the thirty-third session: 300 + 100 flower photos upscaled to 1,500-4,000 px)::

    OMP_NUM_THREADS=2 python benchmarks/reduced_decode.py --run RUN --train big --test big_test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from contrastive.embeddings import embed_folder
from contrastive.encoder import feature_extractor, load_encoder
from contrastive.evaluation.knn import knn_classify
from contrastive.evaluation.labels import labeled_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder or checkpoint")
    parser.add_argument("--train", type=Path, required=True, help="labelled bank folder")
    parser.add_argument("--test", type=Path, required=True, help="labelled test folder")
    args = parser.parse_args()
    encoder = load_encoder(args.run)
    extractors = {"f": feature_extractor(encoder)}
    features = {}
    for full_decode in (True, False):
        started = time.perf_counter()
        train, test = (
            embed_folder(folder, encoder.view_config, extractors, batch_size=64, num_workers=0,
                         progress=False, full_decode=full_decode)["f"]
            for folder in (args.train, args.test)
        )  # fmt: skip
        seconds = time.perf_counter() - started
        pair = labeled_pair(train, test)
        predicted = knn_classify(
            pair.train_features, pair.train_labels, pair.test_features, k=20, temperature=0.1
        )
        predicted = predicted[:, 0] if predicted.ndim == 2 else predicted
        top1 = 100 * (predicted == pair.test_labels).float().mean().item()
        features[full_decode] = pair.train_features
        name = "whole" if full_decode else "reduced"
        print(
            f"{name:8s} {seconds:6.1f} s for {len(train) + len(test)} images, kNN top-1 {top1:.1f}"
        )
    cosine = torch.nn.functional.cosine_similarity(features[True], features[False]).mean()
    print(f"mean cosine between the two decodes' features: {cosine.item():.4f}")


if __name__ == "__main__":
    main()
