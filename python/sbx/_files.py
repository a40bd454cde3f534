"""File transfer and log streaming of a Sandbox (a mixin, to keep _sandbox.py small)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, Optional, Union

from . import _bulk, _workers
from . import exceptions as exc
from ._client import SANDBOX_SERVICE, Client, MappedStream
from ._types import ByteStreamReader, OperationRef, StreamReader
from ._wire import resolve_path

__all__ = ["FilesMixin", "ByteStreamReader", "CHUNK"]

#: File chunk size of read_file / write_file (the server's limit).
CHUNK = 1 << 20


def _bounded(op: OperationRef[Any], timeout: Optional[float], what: str) -> OperationRef[Any]:
    """op, or when timeout is set an operation that fails with
    SandboxTimeoutError if op has not finished within timeout seconds (op
    itself goes on; a write that finishes later is still atomic)."""
    if timeout is None:
        return op

    def run() -> Any:
        try:
            return op._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if op._future.done():
                raise
            raise exc.SandboxTimeoutError(f"{what} did not finish within {timeout}s") from None

    return OperationRef.spawn(run, name="sbx-timeout")


def _pull_async(source: Any, loop: "asyncio.AbstractEventLoop") -> Iterator[Any]:
    """Iterate an async iterable that lives on loop, from a worker thread."""
    it = source.__aiter__()
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(it.__anext__(), loop).result()
        except StopAsyncIteration:
            return


def _since_wire(since_time: Any) -> Optional[str]:
    """since_time as a protobuf JSON Timestamp (RFC 3339, UTC); None for None."""
    if since_time is None:
        return None
    try:
        if isinstance(since_time, datetime):
            dt = since_time.astimezone(timezone.utc)
        elif isinstance(since_time, (int, float)) and not isinstance(since_time, bool):
            dt = datetime.fromtimestamp(float(since_time), timezone.utc)
        else:
            raise TypeError(f"stream_logs: since_time must be a datetime or Unix seconds, got {type(since_time).__name__}")
    except (OverflowError, OSError, ValueError) as e:
        raise exc.SandboxInvalidArgumentError(
            f"stream_logs: since_time {since_time!r} is out of range ({e}); give a datetime or Unix seconds",
            reason="INVALID_ARGUMENT") from None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _log_time(v: Optional[str]) -> bytes:
    """The line prefix for a protobuf JSON Timestamp: fixed-width RFC 3339 with
    nanoseconds (as the Go SDK and CLI print it) and a space; none when unknown."""
    if not v:
        return b""
    base, _, frac = v.rstrip("Z").partition(".")
    return f"{base}.{(frac + '000000000')[:9]}Z ".encode()


def _stamp(data: bytes, at: Optional[str], mid_line: bool) -> "tuple[bytes, bool]":
    """data with every line it starts prefixed with at; and whether it ends mid-line."""
    prefix = _log_time(at)
    out = []
    i = 0
    while i < len(data):
        j = data.find(b"\n", i)
        j = len(data) if j < 0 else j + 1
        if not mid_line:
            out.append(prefix)
        out.append(data[i:j])
        mid_line = data[j - 1:j] != b"\n"
        i = j
    return b"".join(out), mid_line


class FilesMixin:
    """read_file, write_file and stream_logs of Sandbox."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        _id: Optional[str]
        _working_dir: Optional[str]

        @property
        def _client(self) -> Client: ...

        def _ensure_running(self, timeout: Optional[float] = None) -> None: ...

        def _start(self) -> None: ...

    # ---- files -----------------------------------------------------------------

    def _path(self, filepath: Any, path: Any = None) -> str:
        """The absolute path of filepath (or the old keyword path=) inside the
        sandbox: a relative one is taken from the sandbox's working dir."""
        p = filepath if filepath is not None else path
        if p is None:
            raise TypeError("give the file's path in the sandbox, e.g. read_file('/app/out.txt')")
        return resolve_path(os.fspath(p), self._working_dir)

    def read_file(self, filepath: Any = None, *, timeout_seconds: Optional[float] = None, path: Any = None) -> OperationRef[bytes]:
        """Read a whole file from the sandbox; the operation returns its bytes.

        A relative filepath is taken from the sandbox's working dir (its
        ``working_dir=``, else the image's WORKDIR, else ``/``). The bytes come as one raw body from
        the server's bulk endpoint, or, from a server without it, as ReadFile
        RPC chunks of 1 MiB. timeout_seconds bounds the whole read
        (SandboxTimeoutError).
        """
        fp = self._path(filepath, path)

        def run() -> bytes:
            self._ensure_running()
            sid = self._id or ""
            if self._client.bulk_usable():
                try:
                    return self._client.bulk_read(sid, fp)
                except _bulk.NoBulk:
                    pass
            buf = bytearray()
            for chunk in self._read_chunks(fp):
                buf += chunk
            return bytes(buf)

        return _bounded(OperationRef.spawn(run, name="sbx-read"), timeout_seconds, f"read_file({fp!r})")

    def _read_chunks(self, fp: str) -> Iterator[bytes]:
        s = self._client.stream(SANDBOX_SERVICE, "ReadFile", {"sandboxId": self._id or "", "path": fp}, filepath=fp, sandbox_id=self._id)
        try:
            for m in s:
                if m.get("data"):
                    yield base64.b64decode(m["data"])
        finally:
            s.close()

    def read_file_streaming(self, filepath: Any = None, *, timeout_seconds: Optional[float] = None, path: Any = None) -> "ByteStreamReader":
        """Read a file as a stream of byte chunks (at most 1 MiB each), without
        holding it whole: ``for chunk in sandbox.read_file_streaming(p)`` (or
        ``async for``). Errors (SandboxFileError, ...) are raised by the
        iteration; timeout_seconds ends it with SandboxTimeoutError."""
        fp = self._path(filepath, path)
        reader = ByteStreamReader()
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds

        def run() -> None:
            try:
                self._ensure_running()
                for chunk in self._read_chunks(fp):
                    if reader._consumer_closed:
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        raise exc.SandboxTimeoutError(f"read_file_streaming({fp!r}) did not finish within {timeout_seconds}s")
                    reader._feed(chunk)
            except BaseException as e:  # noqa: BLE001 - raised to the reader
                reader._close(e)
                return
            reader._close()

        _workers.go(run, "sbx-read-stream")
        return reader

    def write_file(
        self,
        filepath: Any = None,
        contents: Union[bytes, bytearray, memoryview, str, None] = None,
        mode: int = 0,
        *,
        timeout_seconds: Optional[float] = None,
        path: Any = None,
        data: Union[bytes, bytearray, memoryview, str, None] = None,
    ) -> OperationRef[None]:
        """Write contents to a file in the sandbox (atomically: the old file stays
        until all of it arrived).

        A relative filepath is taken from the sandbox's working dir. Missing
        parent directories are created; mode 0 means 0644. Data of at least
        1 MiB goes as one raw body to the server's bulk endpoint, straight
        from its buffer; smaller data, and data for a server without the
        endpoint, as WriteFile RPC chunks of 1 MiB. timeout_seconds bounds the
        whole write (SandboxTimeoutError).
        """
        fp = self._path(filepath, path)
        if contents is None:
            contents = data
        if contents is None:
            raise TypeError("give the file's contents, e.g. write_file('/app/in.txt', b'data')")
        if isinstance(contents, str):
            contents = contents.encode()
        view = memoryview(bytes(contents) if not isinstance(contents, (bytes, memoryview)) else contents)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        elif view.ndim != 1 or view.format != "B":
            view = view.cast("B")  # count bytes, not items
        # Modes the server would refuse go the RPC way, for its exact answer.
        bulk_mode = int(mode) if isinstance(mode, int) and 0 <= mode <= 0o7777 else None

        def chunks() -> Iterator[Any]:
            for i in range(0, len(view), CHUNK):
                yield view[i:i + CHUNK]

        def run() -> None:
            self._ensure_running()
            if len(view) >= _bulk.MIN_BYTES and bulk_mode is not None and self._client.bulk_usable():
                try:
                    self._client.bulk_write(self._id or "", fp, view, bulk_mode)
                    return
                except _bulk.NoBulk:
                    pass
            self._upload(fp, chunks(), mode)

        return _bounded(OperationRef.spawn(run, name="sbx-write"), timeout_seconds, f"write_file({fp!r})")

    def _upload(self, fp: str, chunks: Iterable[Any], mode: int) -> None:
        def messages() -> Iterator[Dict[str, Any]]:
            hdr: Dict[str, Any] = {"sandboxId": self._id or "", "path": fp}
            if mode:
                hdr["mode"] = int(mode)
            yield {"header": hdr}
            for c in chunks:
                yield {"data": base64.b64encode(c).decode()}

        self._client.upload(SANDBOX_SERVICE, "WriteFile", messages(), filepath=fp, sandbox_id=self._id)

    def write_file_streaming(
        self, filepath: Any, source: Any, *, timeout_seconds: Optional[float] = None, mode: int = 0,
    ) -> OperationRef[None]:
        """Write a file from bytes, an iterable of byte chunks (a file opened
        ``"rb"``, a generator) or an async iterable, without holding it whole.
        The file is replaced atomically once the source ends (a failed or
        abandoned write leaves the old file). Chunks go as they come, in
        WriteFile RPC messages of at most 1 MiB."""
        fp = self._path(filepath)
        loop = None
        if hasattr(source, "__aiter__"):
            try:
                loop = asyncio.get_running_loop()  # the async source lives on the caller's loop
            except RuntimeError:
                raise TypeError("write_file_streaming: an async iterable source needs a running event loop; "
                                "call it from async code, or pass a plain iterable") from None

        def pieces() -> Iterator[Any]:
            if isinstance(source, (bytes, bytearray, memoryview, str)):
                it: Any = iter([source.encode() if isinstance(source, str) else source])
            elif loop is not None:
                it = _pull_async(source, loop)
            else:
                it = iter(source)
            for c in it:
                if isinstance(c, str):
                    c = c.encode()
                if not isinstance(c, (bytes, bytearray, memoryview)):
                    raise TypeError(f"write_file_streaming: chunks must be bytes, got {type(c).__name__}")
                v = memoryview(c).cast("B") if memoryview(c).c_contiguous else memoryview(bytes(c))
                for i in range(0, len(v), CHUNK):
                    yield v[i:i + CHUNK]

        def run() -> None:
            self._ensure_running()
            self._upload(fp, pieces(), mode)

        return _bounded(OperationRef.spawn(run, name="sbx-write-stream"), timeout_seconds, f"write_file_streaming({fp!r})")

    # ---- logs --------------------------------------------------------------------

    def stream_logs(
        self,
        follow: bool = False,
        tail_lines: Optional[int] = None,
        *,
        since_time: Any = None,
        timestamps: bool = False,
        timeout_seconds: Optional[float] = None,
    ) -> StreamReader:
        """Stream the main command's output (stdout and stderr interleaved) as text lines.

        With follow, keep streaming until the main command exits. tail_lines starts
        with the last lines kept. since_time (a datetime, naive meaning local time,
        or Unix seconds) starts with the first line written at or after it; with
        tail_lines the later start wins. timestamps=True prefixes each line with
        the time the sandbox read it, RFC 3339 in UTC with nanoseconds and a space
        (``2026-11-27T03:21:28.123456789Z line``). timeout_seconds ends a stream
        that is not following after that long (SandboxTimeoutError from the
        iteration).
        """
        since = _since_wire(since_time)
        if tail_lines is not None and (isinstance(tail_lines, bool) or int(tail_lines) < 0):
            raise exc.SandboxInvalidArgumentError(f"tail_lines must be >= 0, got {tail_lines!r}", reason="INVALID_ARGUMENT")
        reader = StreamReader()
        deadline = None if (timeout_seconds is None or follow) else time.monotonic() + timeout_seconds

        def run() -> None:
            try:
                self._ensure_running() if follow else self._start()
                req: Dict[str, Any] = {"sandboxId": self._id, "follow": bool(follow)}
                if tail_lines:
                    req["tailLines"] = int(tail_lines)
                if since is not None:
                    req["since"] = since
                if timestamps:
                    req["timestamps"] = True
                mid_line = False
                s: MappedStream = self._client.stream(SANDBOX_SERVICE, "StreamLogs", req, sandbox_id=self._id)
                try:
                    for m in s:
                        if reader._consumer_closed:
                            break
                        if deadline is not None and time.monotonic() > deadline:
                            raise exc.SandboxTimeoutError(f"stream_logs did not finish within {timeout_seconds}s")
                        for k in ("stdout", "stderr"):
                            if m.get(k):
                                data = base64.b64decode(m[k])
                                if timestamps:
                                    data, mid_line = _stamp(data, m.get("time"), mid_line)
                                reader._feed(data)
                finally:
                    s.close()
            except BaseException as e:  # noqa: BLE001 - raised to the reader
                reader._close(e)
                return
            reader._close()

        _workers.go(run, "sbx-logs")
        return reader
