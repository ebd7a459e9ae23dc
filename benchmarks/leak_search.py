"""``curate --against``'s copy searches: the folder's own links reused, or searched again.

``contrastive curate --data TRAIN --against TEST`` lists the folder's duplicate groups and the
groups it shares with the other folder (leakage). Until the forty-third session the second
list came from one more search over both folders together, which searched the folder's own
pairs a second time; :func:`~contrastive.curation.duplicates.leak_groups` reuses the
folder's links and searches only the other folder, within itself and against the folder
both ways, and adds a group for each image with a copy in the other folder that the
groups leave out. This script runs both on the same fingerprints, in one process, order
alternated (one-two-two-one), and compares what they find: the groups, the links, and the
images of each folder that the leak groups hold, against those that have a copy in the
other folder.

Example (CIFAR-10's 50,000 training images against its 10,000 test images)::

    python benchmarks/leak_search.py --data ~/.cache/contrastive/cifar10/train \\
        --against ~/.cache/contrastive/cifar10/test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from contrastive.curation.duplicates import (
    DuplicateGroup,
    copy_links,
    cross_groups,
    duplicate_groups,
    exact_copy_links,
    file_digests,
    groups_from_links,
    leak_groups,
)
from contrastive.data.folder import ImageFolder
from contrastive.data.near_copies import (
    detail_thumbnails,
    fingerprints_and_spreads,
    near_copy_pairs,
)


def searched_together(fingerprints, digests, paths, split):
    """The earlier way: the folder alone, then both folders in one search."""
    thumbnails = detail_thumbnails()
    duplicates = duplicate_groups(
        fingerprints[:split], digests[:split], paths=paths[:split], thumbnails=thumbnails
    )
    both = duplicate_groups(fingerprints, digests, paths=paths, thumbnails=thumbnails)
    return duplicates, cross_groups(both, split)


def links_reused(fingerprints, digests, paths, split):
    """``curate``'s way now: the folder's links, grouped, then reused by the leak search."""
    thumbnails = detail_thumbnails()
    links = copy_links(
        fingerprints[:split], digests[:split], paths=paths[:split], thumbnails=thumbnails
    )
    duplicates = groups_from_links(links, fingerprints[:split], digests[:split])
    leaks = leak_groups(fingerprints, digests, split, links, paths=paths, thumbnails=thumbnails)
    return duplicates, leaks


def link_sets(fingerprints, split) -> tuple[set, set]:
    """The near-copy links (fingerprints only) of one search over both folders, and of the
    folder's search plus the three of :func:`leak_groups`."""

    def pairs(search, query_offset=0, reference_offset=0):
        return {
            tuple(sorted((q + query_offset, r + reference_offset)))
            for q, r in zip(search.query.tolist(), search.reference.tolist(), strict=True)
        }

    first, second = fingerprints[:split], fingerprints[split:]
    together = pairs(near_copy_pairs(fingerprints))
    reused = pairs(near_copy_pairs(first))
    reused |= pairs(near_copy_pairs(second), split, split)
    reused |= pairs(near_copy_pairs(second, first), split, 0)
    reused |= pairs(near_copy_pairs(first, second), 0, split)
    return together, reused


def _summary(groups: list[DuplicateGroup], split: int, linked: set[int]) -> dict[str, int]:
    """Group count, the unique images of each folder in them, and the images with a copy in
    the other folder (``linked``) that none of them holds."""
    members = [int(member) for group in groups for member in group.members]
    unique = set(members)
    return {
        "groups": len(groups),
        "folder_images": sum(member < split for member in unique),
        "other_images": sum(member >= split for member in unique),
        "listed_again": len(members) - len(unique),
        "linked_folder_images_left_out": sum(member < split for member in linked - unique),
        "linked_other_images_left_out": sum(member >= split for member in linked - unique),
    }


def linked_images(fingerprints, digests, split) -> set[int]:
    """The images with a near copy (fingerprints only) or an exact copy in the other folder."""
    first, second = fingerprints[:split], fingerprints[split:]
    forth, back = near_copy_pairs(second, first), near_copy_pairs(first, second)
    exact_first, exact_second = exact_copy_links(digests)
    across = (exact_first < split) != (exact_second < split)
    exact = np.concatenate([exact_first[across], exact_second[across]])
    folder = {*forth.reference.tolist(), *back.query.tolist(), *exact[exact < split].tolist()}
    other = {*(forth.query + split).tolist(), *(back.reference + split).tolist()}
    other |= set(exact[exact >= split].tolist())
    return folder | other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder curated")
    parser.add_argument("--against", type=Path, required=True, help="the other folder")
    parser.add_argument("--out", type=Path, help="JSON file for the numbers")
    args = parser.parse_args()
    paths = [*ImageFolder.scan(args.data).paths, *ImageFolder.scan(args.against).paths]
    split = len(ImageFolder.scan(args.data).paths)
    started = time.perf_counter()
    fingerprints, _spreads = fingerprints_and_spreads(paths)
    digests = file_digests(paths)
    prepared = time.perf_counter() - started
    print(f"{split:,} + {len(paths) - split:,} images: fingerprints and digests {prepared:.1f} s")
    ways = {"searched together": searched_together, "links reused": links_reused}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    found = {}
    for name in [*ways, *reversed(ways)]:
        started = time.perf_counter()
        found[name] = ways[name](fingerprints, digests, paths, split)
        seconds[name].append(time.perf_counter() - started)
        print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    old, new = found["searched together"], found["links reused"]
    linked = linked_images(fingerprints, digests, split)
    result = {
        "images": [split, len(paths) - split],
        "torch_threads": torch.get_num_threads(),
        "fingerprints_and_digests_s": round(prepared, 1),
        "seconds": {name: [round(s, 2) for s in values] for name, values in seconds.items()},
        "speed-up": round(sum(seconds["searched together"]) / sum(seconds["links reused"]), 2),
        "same_duplicate_groups": [g.members.tolist() for g in old[0]]
        == [g.members.tolist() for g in new[0]],
        "images_with_a_copy_in_the_other_folder": {
            "folder_images": sum(member < split for member in linked),
            "other_images": sum(member >= split for member in linked),
        },
        "leaks": {
            "searched together": _summary(old[1], split, linked),
            "links reused": _summary(new[1], split, linked),
        },
    }
    together, reused = link_sets(fingerprints, split)
    result["near_copy_links"] = {
        "searched together": len(together),
        "links reused": len(reused),
        "every link of the search together found": together <= reused,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
