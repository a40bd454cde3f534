"""File transfer and log streaming of a Sandbox (a mixin, to keep _sandbox.py small)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Union

from . import _bulk, _workers
from ._client import SANDBOX_SERVICE, Client, MappedStream
from ._types import OperationRef, StreamReader

__all__ = ["FilesMixin", "CHUNK"]

#: File chunk size of read_file / write_file (the server's limit).
CHUNK = 1 << 20


class FilesMixin:
    """read_file, write_file and stream_logs of Sandbox."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Sandbox
        _id: Optional[str]

        @property
        def _client(self) -> Client: ...

        def _ensure_running(self, timeout: Optional[float] = None) -> None: ...

        def _start(self) -> None: ...

    # ---- files -----------------------------------------------------------------

    def read_file(self, path: str) -> OperationRef[bytes]:
        """Read a whole file from the sandbox; the operation returns its bytes.

        The bytes come as one raw body from the server's bulk endpoint, or,
        from a server without it, as ReadFile RPC chunks of 1 MiB.
        """

        def run() -> bytes:
            self._ensure_running()
            sid = self._id or ""
            if self._client.bulk_usable():
                try:
                    return self._client.bulk_read(sid, path)
                except _bulk.NoBulk:
                    pass
            buf = bytearray()
            s = self._client.stream(SANDBOX_SERVICE, "ReadFile", {"sandboxId": sid, "path": path}, filepath=path, sandbox_id=self._id)
            try:
                for m in s:
                    if m.get("data"):
                        buf += base64.b64decode(m["data"])
            finally:
                s.close()
            return bytes(buf)

        return OperationRef.spawn(run, name="sbx-read")

    def write_file(self, path: str, data: Union[bytes, bytearray, memoryview, str], mode: int = 0) -> OperationRef[None]:
        """Write data to a file in the sandbox (atomically: the old file stays
        until all of data arrived).

        Missing parent directories are created; mode 0 means 0644. Data of
        at least 1 MiB goes as one raw body to the server's bulk endpoint,
        straight from its buffer; smaller data, and data for a server
        without the endpoint, as WriteFile RPC chunks of 1 MiB.
        """
        if isinstance(data, str):
            data = data.encode()
        view = memoryview(bytes(data) if not isinstance(data, (bytes, memoryview)) else data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        elif view.ndim != 1 or view.format != "B":
            view = view.cast("B")  # count bytes, not items
        # Modes the server would refuse go the RPC way, for its exact answer.
        bulk_mode = int(mode) if isinstance(mode, int) and 0 <= mode <= 0o7777 else None

        def messages(sid: str) -> Iterator[Dict[str, Any]]:
            hdr: Dict[str, Any] = {"sandboxId": sid, "path": path}
            if mode:
                hdr["mode"] = int(mode)
            yield {"header": hdr}
            for i in range(0, len(view), CHUNK):
                yield {"data": base64.b64encode(view[i:i + CHUNK]).decode()}

        def run() -> None:
            self._ensure_running()
            if len(view) >= _bulk.MIN_BYTES and bulk_mode is not None and self._client.bulk_usable():
                try:
                    self._client.bulk_write(self._id or "", path, view, bulk_mode)
                    return
                except _bulk.NoBulk:
                    pass
            self._client.upload(SANDBOX_SERVICE, "WriteFile", messages(self._id or ""), filepath=path, sandbox_id=self._id)

        return OperationRef.spawn(run, name="sbx-write")

    # ---- logs --------------------------------------------------------------------

    def stream_logs(self, follow: bool = False, tail_lines: Optional[int] = None) -> StreamReader:
        """Stream the main command's output (stdout and stderr interleaved) as text lines.

        With follow, keep streaming until the main command exits.
        """
        reader = StreamReader()

        def run() -> None:
            try:
                self._ensure_running() if follow else self._start()
                req: Dict[str, Any] = {"sandboxId": self._id, "follow": bool(follow)}
                if tail_lines:
                    req["tailLines"] = int(tail_lines)
                s: MappedStream = self._client.stream(SANDBOX_SERVICE, "StreamLogs", req, sandbox_id=self._id)
                try:
                    for m in s:
                        for k in ("stdout", "stderr"):
                            if m.get(k):
                                reader._feed(base64.b64decode(m[k]))
                finally:
                    s.close()
            except BaseException as e:  # noqa: BLE001 - raised to the reader
                reader._close(e)
                return
            reader._close()

        _workers.go(run, "sbx-logs")
        return reader
