"""Tests of the sampling methods."""

from __future__ import annotations

import datetime
import random
import unittest
from typing import List

from jobline_worker.capture_files import CaptureFile, capture_path
from jobline_worker.sampling import SamplingError, plan, sample

_NIGHT = datetime.datetime(2025, 11, 12, 19, 0, tzinfo=datetime.timezone.utc)


def _files(deployment_id: int, minutes: List[int]) -> List[CaptureFile]:
    """Captures of one deployment, `minutes` after 19:00 on one night."""
    captures = []
    for minute in minutes:
        when = _NIGHT + datetime.timedelta(minutes=minute)
        captures.append(CaptureFile(timestamp=when,
                                    path=capture_path(deployment_id, when)))
    return captures


class PlanTest(unittest.TestCase):

    def test_random_params_are_logged_as_antenna_logs_them(self) -> None:
        sampling = plan("random", {"size": 1000.0})
        self.assertEqual(sampling.function_name, "sample_random")
        self.assertEqual(
            str(sampling.params),
            "{'size': 1000, 'event_ids': None, 'deployment_ids': None}")

    def test_defaults(self) -> None:
        self.assertEqual(plan("random", {}).params["size"], 100)
        self.assertEqual(plan("interval", {}).params["minute_interval"], 10)
        self.assertEqual(plan("full", {}).params,
                         {"event_ids": None, "deployment_ids": None})

    def test_whole_numbers_become_ints(self) -> None:
        sampling = plan("interval", {"minute_interval": 15.0,
                                     "deployment_ids": [60.0]})
        self.assertEqual(sampling.params["minute_interval"], 15)
        self.assertIsInstance(sampling.params["minute_interval"], int)
        self.assertEqual(sampling.params["deployment_ids"], [60])
        self.assertEqual(
            plan("interval", {"minute_interval": 2.5})
            .params["minute_interval"], 2.5)

    def test_an_unknown_method_names_the_supported_ones(self) -> None:
        with self.assertRaisesRegex(
                SamplingError,
                r"^sampling method 'starred' is not supported by this "
                r"worker \(supported: full, interval, random\)$"):
            plan("starred", {})

    def test_an_unknown_parameter_is_refused(self) -> None:
        with self.assertRaisesRegex(SamplingError,
                                    "unknown parameter 'sise'.*'random'"):
            plan("random", {"sise": 10})

    def test_bad_values_are_refused(self) -> None:
        for method, kwargs, pattern in [
                ("random", {"size": -1}, "^size must be a whole number"),
                ("random", {"size": 1.5}, "^size must"),
                ("random", {"size": "10"}, "^size must"),
                ("random", {"size": True}, "^size must"),
                ("random", {"size": float("inf")}, "^size must"),
                ("interval", {"minute_interval": 0}, "^minute_interval"),
                ("interval", {"minute_interval": float("nan")},
                 "^minute_interval"),
                ("full", {"deployment_ids": 60}, "^deployment_ids must"),
                ("full", {"deployment_ids": [0]}, "^deployment_ids must"),
                ("full", {"event_ids": [1]}, "^event_ids must be null"),
        ]:
            with self.subTest(method=method, kwargs=kwargs):
                with self.assertRaisesRegex(SamplingError, pattern):
                    plan(method, kwargs)


class SampleTest(unittest.TestCase):

    def test_random_draws_size_files_in_time_order(self) -> None:
        files = _files(60, list(range(0, 500, 5)))
        chosen = sample(plan("random", {"size": 10}), files,
                        random.Random(1))
        self.assertEqual(len(chosen), 10)
        self.assertEqual(len(set(chosen)), 10)
        self.assertTrue(set(chosen) <= set(files))
        self.assertEqual(chosen, sorted(chosen))
        self.assertEqual(
            sample(plan("random", {"size": 10}), files, random.Random(1)),
            chosen)
        self.assertNotEqual(
            sample(plan("random", {"size": 10}), files, random.Random(2)),
            chosen)

    def test_random_takes_every_file_when_there_are_fewer(self) -> None:
        files = _files(60, [30, 10, 20])
        self.assertEqual(sample(plan("random", {"size": 1000}), files),
                         sorted(files))
        self.assertEqual(sample(plan("random", {"size": 0}), files), [])

    def test_full_takes_every_file(self) -> None:
        files = _files(61, [5, 1]) + _files(60, [3])
        self.assertEqual(sample(plan("full", {}), files), sorted(files))

    def test_interval_keeps_one_capture_per_interval_per_folder(self) -> None:
        station_60 = _files(60, [0, 5, 10, 12, 25, 34, 35])
        station_61 = _files(61, [3, 4])
        chosen = sample(plan("interval", {"minute_interval": 10}),
                        station_60 + station_61)
        self.assertEqual(
            chosen,
            sorted([station_60[0], station_60[2], station_60[4],
                    station_60[6], station_61[0]]))

    def test_interval_default_is_ten_minutes(self) -> None:
        files = _files(60, [0, 9, 10, 19, 20])
        self.assertEqual(sample(plan("interval", {}), files),
                         [files[0], files[2], files[4]])

    def test_deployment_ids_keep_those_folders(self) -> None:
        station_60 = _files(60, [0, 1])
        station_61 = _files(61, [0, 1])
        chosen = sample(plan("full", {"deployment_ids": [61]}),
                        station_60 + station_61)
        self.assertEqual(chosen, station_61)


if __name__ == "__main__":
    unittest.main()
