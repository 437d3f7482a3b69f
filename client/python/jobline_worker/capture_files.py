"""Capture files on disk: how they are named and how a tree is read.

A capture tree holds one folder per deployment (station), one folder per
day under it, and one image per capture whose name starts with the time it
was taken::

    ROOT/deployment-60/2025-11-12/20251112190059-snapshot.jpg

Only the file name carries meaning: its leading 14 digits are the capture
time (YYYYMMDDHHMMSS, read as UTC) and its top-level folder names the
deployment. The day folders are for people; the reader does not rely on
them. ``tools/make-captures`` writes trees in this layout
(:mod:`jobline_worker.make_captures`) and the populate executor reads them.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from typing import List, Optional

# A capture file name: 14 digits of time, anything, an image extension.
_NAME = re.compile(r"^(\d{14})[^/]*\.(?:jpe?g|png|tiff?)$", re.IGNORECASE)

# A deployment folder that names its deployment's id.
_DEPLOYMENT_FOLDER = re.compile(r"^deployment-(\d+)$")

_TIME_FORMAT = "%Y%m%d%H%M%S"


@dataclasses.dataclass(frozen=True, order=True)
class CaptureFile:
    """One image file of a capture tree.

    Instances order by time, then path, which is the order the sampling
    methods return them in.
    """

    # When the image was taken (timezone-aware, UTC).
    timestamp: datetime.datetime
    # Path relative to the tree's root, with "/" separators.
    path: str

    @property
    def deployment_folder(self) -> str:
        """The top-level folder of the file ("" for a file at the root)."""
        head, sep, _ = self.path.partition("/")
        return head if sep else ""

    @property
    def deployment_id(self) -> Optional[int]:
        """The id in a "deployment-<id>" folder name, else None."""
        match = _DEPLOYMENT_FOLDER.match(self.deployment_folder)
        return int(match.group(1)) if match else None


def capture_path(deployment_id: int, timestamp: datetime.datetime) -> str:
    """Returns the relative path a capture of `deployment_id` taken at
    `timestamp` has in a tree, e.g. "deployment-60/2025-11-12/
    20251112190059-snapshot.jpg". `timestamp` is used as given (its
    wall-clock fields); sub-second parts are dropped."""
    return (f"deployment-{deployment_id}/{timestamp:%Y-%m-%d}/"
            f"{timestamp.strftime(_TIME_FORMAT)}-snapshot.jpg")


def parse_capture_path(path: str) -> Optional[CaptureFile]:
    """Returns the capture that the relative `path` ("/"-separated) names,
    or None when its file name is not a capture name (no leading 14-digit
    time that is a real date and time, or not an image extension)."""
    match = _NAME.match(path.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        naive = datetime.datetime.strptime(match.group(1), _TIME_FORMAT)
    except ValueError:
        return None
    return CaptureFile(
        timestamp=naive.replace(tzinfo=datetime.timezone.utc), path=path)


def scan_tree(root: str) -> List[CaptureFile]:
    """Returns every capture file under the folder `root`, in time order.

    Files whose names are not capture names are skipped, and so are
    symbolic links to folders (they are not followed). Raises
    NotADirectoryError if `root` is not a folder, and OSError if it cannot
    be read.
    """
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{root} is not a folder")
    captures: List[CaptureFile] = []

    def fail(error: OSError) -> None:
        raise error

    for folder, subfolders, files in os.walk(root, onerror=fail):
        subfolders.sort()
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            capture = parse_capture_path(prefix + name)
            if capture is not None:
                captures.append(capture)
    captures.sort()
    return captures
