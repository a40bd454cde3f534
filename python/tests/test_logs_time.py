"""stream_logs(since_time=, timestamps=) against the real server, as CoreWeave's
cwsandbox defines them: a main command prints a line, sleeps, prints another."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, List, Tuple

import pytest

import sbx
from sbx import Sandbox


def stamped(lines: List[str]) -> List[Tuple[datetime, str]]:
    """(time, text) of lines read with timestamps=True; the prefix is fixed-width
    RFC 3339 in UTC with nanoseconds and a space."""
    out = []
    for line in lines:
        ts, _, text = line.partition(" ")
        assert len(ts) == len("2026-01-02T03:04:05.123456789Z") and ts.endswith("Z"), line
        # datetime keeps microseconds: drop the last three digits.
        at = datetime.strptime(ts[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
        out.append((at, text))
    return out


def test_stream_logs_since_and_timestamps(server: Any) -> None:
    before = datetime.now(timezone.utc)
    sb = Sandbox.run("sh", "-c", "echo first; sleep 2; echo second", container_image="busybox",
                     max_lifetime_seconds=300)
    try:
        # Follow with timestamps: both lines, then the stream ends with the command.
        followed = stamped(list(sb.stream_logs(follow=True, timestamps=True)))
        after = datetime.now(timezone.utc)
        assert [t for _, t in followed] == ["first\n", "second\n"]
        # Times are in order and within the test's wall-clock window (the prefix
        # is cut to microseconds, so the window starts a microsecond early).
        (t1, _), (t2, _) = followed
        assert t1 < t2
        for at, text in followed:
            assert before - timedelta(microseconds=1) <= at <= after, (text, at, before, after)

        sb.wait_until_complete(timeout=120).result()
        mid = t1 + (t2 - t1) / 2
        assert list(sb.stream_logs(since_time=mid)) == ["second\n"]
        assert list(sb.stream_logs(since_time=mid.timestamp())) == ["second\n"]  # Unix seconds
        # A naive datetime is local time, as datetime.timestamp() reads it.
        assert list(sb.stream_logs(since_time=mid.astimezone().replace(tzinfo=None))) == ["second\n"]
        assert list(sb.stream_logs(since_time=before - timedelta(hours=1))) == ["first\n", "second\n"]
        assert list(sb.stream_logs(since_time=after + timedelta(hours=1))) == []
        # With tail_lines the later start wins.
        assert list(sb.stream_logs(since_time=mid, tail_lines=2)) == ["second\n"]
        assert list(sb.stream_logs(since_time=before, tail_lines=1)) == ["second\n"]
        [(at, text)] = stamped(list(sb.stream_logs(since_time=mid, timestamps=True)))
        assert text == "second\n" and at == t2
        assert stamped(list(sb.stream_logs(tail_lines=1, timestamps=True))) == [(t2, "second\n")]
    finally:
        sb.stop(missing_ok=True).result()


def test_stream_logs_follow_since(server: Any) -> None:
    sb = Sandbox.run("sh", "-c", "echo first; sleep 2; echo second", container_image="busybox",
                     max_lifetime_seconds=300)
    try:
        sb.wait()
        deadline = time.monotonic() + 120
        while True:
            lines = list(sb.stream_logs(timestamps=True, timeout_seconds=60))
            if lines:
                break
            assert time.monotonic() < deadline, "the first line never came"
            time.sleep(0.05)
        [(t1, _)] = stamped(lines[:1])
        # From just after the first line on, following: only the second comes.
        got = list(sb.stream_logs(follow=True, since_time=t1 + timedelta(milliseconds=1)))
        assert got == ["second\n"]
    finally:
        sb.stop(missing_ok=True).result()


def test_stream_logs_since_time_type() -> None:
    sb = Sandbox(command="true")
    with pytest.raises(TypeError):
        sb.stream_logs(since_time="10m")
    with pytest.raises(sbx.SandboxInvalidArgumentError):
        sb.stream_logs(since_time=1e300)
