"""Tests of capture file names, tree scanning and the tree generator."""

from __future__ import annotations

import collections
import contextlib
import datetime
import io
import os
import shutil
import tempfile
import unittest

from jobline_worker import make_captures
from jobline_worker.capture_files import (capture_path, parse_capture_path,
                                          scan_tree)

_UTC = datetime.timezone.utc


class CaptureNameTest(unittest.TestCase):

    def test_capture_path_layout(self) -> None:
        self.assertEqual(
            capture_path(60, datetime.datetime(2025, 11, 12, 19, 0, 59)),
            "deployment-60/2025-11-12/20251112190059-snapshot.jpg")

    def test_parse_reads_the_time_and_the_deployment(self) -> None:
        capture = parse_capture_path(
            "deployment-60/2025-11-12/20251112190059-snapshot.jpg")
        self.assertEqual(capture.timestamp,
                         datetime.datetime(2025, 11, 12, 19, 0, 59,
                                           tzinfo=_UTC))
        self.assertEqual(capture.deployment_folder, "deployment-60")
        self.assertEqual(capture.deployment_id, 60)

    def test_parse_accepts_other_image_names(self) -> None:
        for path in ["20251112190059.JPG", "a/b/20251112190059_x.jpeg",
                     "station/20251112190059.png"]:
            with self.subTest(path=path):
                self.assertIsNotNone(parse_capture_path(path))
        self.assertIsNone(
            parse_capture_path("station/20251112190059.png").deployment_id)
        self.assertEqual(
            parse_capture_path("20251112190059.jpg").deployment_folder, "")

    def test_parse_refuses_what_is_not_a_capture(self) -> None:
        for path in ["deployment-60/notes.txt", "2025111219005.jpg",
                     "20251312190059.jpg", "20251112190059.txt",
                     "x20251112190059.jpg"]:
            with self.subTest(path=path):
                self.assertIsNone(parse_capture_path(path))


class ScanTreeTest(unittest.TestCase):

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)

    def write(self, path: str) -> None:
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb"):
            pass

    def test_finds_captures_in_time_order_and_skips_the_rest(self) -> None:
        self.write("deployment-61/2025-11-12/20251112190000-snapshot.jpg")
        self.write("deployment-60/2025-11-12/20251112200000-snapshot.jpg")
        self.write("deployment-60/2025-11-12/README.txt")
        self.write("20251112180000.jpg")
        self.assertEqual(
            [c.path for c in scan_tree(self.root)],
            ["20251112180000.jpg",
             "deployment-61/2025-11-12/20251112190000-snapshot.jpg",
             "deployment-60/2025-11-12/20251112200000-snapshot.jpg"])

    def test_a_missing_folder_is_an_error(self) -> None:
        with self.assertRaises(NotADirectoryError):
            scan_tree(os.path.join(self.root, "missing"))


class MakeCapturesTest(unittest.TestCase):

    def paths(self, count: int = 5000, seed: int = 1):
        return make_captures.night_captures(
            count, [60, 61], 5, datetime.date(2025, 11, 8), seed)

    def test_is_deterministic_in_its_seed(self) -> None:
        self.assertEqual(self.paths(seed=1), self.paths(seed=1))
        self.assertNotEqual(self.paths(seed=1), self.paths(seed=2))

    def test_spreads_distinct_captures_over_deployments_and_nights(
            self) -> None:
        paths = self.paths()
        self.assertEqual(len(paths), 5000)
        self.assertEqual(len(set(paths)), 5000)
        captures = [parse_capture_path(p) for p in paths]
        self.assertEqual(
            collections.Counter(c.deployment_id for c in captures),
            {60: 2500, 61: 2500})
        for capture in captures:
            hour = capture.timestamp.hour
            self.assertTrue(hour >= 19 or hour < 5, capture.path)
        nights = {(c.timestamp - datetime.timedelta(hours=12)).date()
                  for c in captures}
        self.assertEqual(len(nights), 5)

    def test_uneven_counts_are_exact(self) -> None:
        self.assertEqual(len(self.paths(count=7)), 7)
        self.assertEqual(self.paths(count=0), [])

    def test_too_many_captures_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            make_captures.night_captures(36001, [60], 1,
                                         datetime.date(2025, 11, 8), 0)

    def test_images_are_tiny_jpegs_with_their_path(self) -> None:
        image = make_captures.tiny_jpeg("deployment-60/x.jpg")
        self.assertTrue(image.startswith(b"\xff\xd8\xff\xfe"))
        self.assertTrue(image.endswith(b"\xff\xd9"))
        self.assertIn(b"deployment-60/x.jpg", image)
        self.assertLess(len(image), 200)

    def test_the_command_writes_a_tree_the_scanner_reads(self) -> None:
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            status = make_captures.main([root, "--count", "40", "--seed",
                                         "3", "--nights", "2"])
        self.assertEqual(status, 0)
        self.assertIn("wrote 40 captures", out.getvalue())
        found = scan_tree(root)
        self.assertEqual(sorted(c.path for c in found),
                         sorted(make_captures.night_captures(
                             40, [60, 61], 2, datetime.date(2025, 11, 8), 3)))
        first = os.path.join(root, *found[0].path.split("/"))
        with open(first, "rb") as image:
            self.assertEqual(image.read(),
                             make_captures.tiny_jpeg(found[0].path))


if __name__ == "__main__":
    unittest.main()
