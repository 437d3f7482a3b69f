"""tools/make-captures: writes a tree of capture image files for demos.

    tools/make-captures ROOT [--count N] [--seed S] [--deployments 60,61]
                        [--nights 5] [--first_night 2025-11-08]

The captures are spread evenly over the deployments and the nights; each
night runs from 19:00 to 05:00, with one capture every (night length /
captures of the night) seconds, shifted by a random part of that gap. The
files are tiny valid JPEG images (1x1 grey) whose comment is their path,
laid out as :mod:`jobline_worker.capture_files` describes. The same
arguments always give the same tree, byte for byte.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import struct
import sys
from typing import List, Optional, Sequence

from jobline_worker.capture_files import capture_path

NIGHT_START = datetime.time(19, 0)
NIGHT_SECONDS = 10 * 3600


def night_captures(count: int, deployment_ids: Sequence[int], nights: int,
                   first_night: datetime.date, seed: int) -> List[str]:
    """The relative paths of `count` captures of `deployment_ids` over
    `nights` nights from `first_night`, in the order they were generated.
    Deterministic in its arguments. Raises ValueError when the arguments
    cannot give distinct captures."""
    if count < 0:
        raise ValueError("the count must not be negative")
    if not deployment_ids or nights < 1:
        raise ValueError("there must be a deployment and a night")
    slots = len(deployment_ids) * nights
    if -(-count // slots) > NIGHT_SECONDS:
        raise ValueError(f"{count} captures do not fit in {nights} nights of "
                         f"{len(deployment_ids)} deployments, one a second")
    rng = random.Random(seed)
    paths: List[str] = []
    slot = 0
    for deployment_id in deployment_ids:
        for night in range(nights):
            in_slot = count // slots + (1 if slot < count % slots else 0)
            slot += 1
            if in_slot == 0:
                continue
            start = datetime.datetime.combine(
                first_night + datetime.timedelta(days=night), NIGHT_START)
            gap = NIGHT_SECONDS / in_slot
            last = -1
            for i in range(in_slot):
                # Jittered, but strictly later than the previous capture.
                second = max(int(i * gap + rng.uniform(0, gap / 2)),
                             last + 1)
                last = second
                paths.append(capture_path(
                    deployment_id,
                    start + datetime.timedelta(seconds=second)))
    return paths


def tiny_jpeg(comment: str) -> bytes:
    """A valid baseline JPEG of one grey pixel, with `comment` (up to
    65,000 bytes of UTF-8) in a COM segment."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) \
            + payload

    # One Huffman code of length 1, for symbol 0 (DC difference 0 / EOB).
    one_code = bytes([1] + [0] * 15) + b"\x00"
    return b"".join([
        b"\xff\xd8",                                          # SOI
        segment(0xFE, comment.encode("utf-8")),               # COM
        segment(0xDB, b"\x00" + b"\x01" * 64),                # DQT
        segment(0xC0, bytes([8, 0, 1, 0, 1, 1, 1, 0x11, 0])),  # SOF0 1x1
        segment(0xC4, b"\x00" + one_code),                    # DHT DC 0
        segment(0xC4, b"\x10" + one_code),                    # DHT AC 0
        segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0])),         # SOS
        b"\x3f",                 # DC diff 0, EOB, padded with 1 bits
        b"\xff\xd9",                                          # EOI
    ])


def write_tree(root: str, paths: Sequence[str]) -> None:
    """Writes a tiny JPEG at each of `paths` under `root`, creating
    folders; existing files of the same names are replaced."""
    for path in paths:
        full = os.path.join(root, *path.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as image:
            image.write(tiny_jpeg(path))


def _deployment_list(text: str) -> List[int]:
    """Parses "60,61" for argparse."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of ids: {text!r}") from None
    if any(i < 1 for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(
            f"ids must be positive and distinct: {text!r}")
    return ids


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; returns the exit status (0, or 2 for bad
    arguments, 1 when the files cannot be written)."""
    parser = argparse.ArgumentParser(
        prog="make-captures",
        description="Write a deterministic tree of tiny capture images: "
        "ROOT/deployment-ID/YYYY-MM-DD/YYYYMMDDHHMMSS-snapshot.jpg.")
    parser.add_argument("root", metavar="ROOT",
                        help="folder to write the tree in (created if "
                        "missing)")
    parser.add_argument("--count", type=int, default=5000,
                        help="number of captures (default 5000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the capture times (default 0)")
    parser.add_argument("--deployments", type=_deployment_list,
                        default=[60, 61],
                        help="comma-separated deployment ids (default "
                        "60,61)")
    parser.add_argument("--nights", type=int, default=5,
                        help="nights the captures span (default 5)")
    parser.add_argument("--first_night", type=datetime.date.fromisoformat,
                        default=datetime.date(2025, 11, 8),
                        help="date of the first night (default 2025-11-08)")
    args = parser.parse_args(argv)

    try:
        paths = night_captures(args.count, args.deployments, args.nights,
                               args.first_night, args.seed)
    except ValueError as error:
        parser.error(str(error))
    try:
        write_tree(args.root, paths)
    except OSError as error:
        print(f"make-captures: {error}", file=sys.stderr)
        return 1
    print(f"make-captures: wrote {len(paths)} captures of "
          f"{len(args.deployments)} deployments over {args.nights} nights "
          f"under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
