"""File transfer and log streaming of a Sandbox (a mixin, to keep _sandbox.py small)."""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Union

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
        """Read a whole file from the sandbox (streamed in 1 MiB chunks); the operation returns its bytes."""

        def run() -> bytes:
            self._ensure_running()
            buf = bytearray()
            s = self._client.stream(SANDBOX_SERVICE, "ReadFile", {"sandboxId": self._id, "path": path}, filepath=path, sandbox_id=self._id)
            try:
                for m in s:
                    if m.get("data"):
                        buf += base64.b64decode(m["data"])
            finally:
                s.close()
            return bytes(buf)

        return OperationRef.spawn(run, name="sbx-read")

    def write_file(self, path: str, data: Union[bytes, bytearray, memoryview, str], mode: int = 0) -> OperationRef[None]:
        """Write data to a file in the sandbox (atomically, streamed in 1 MiB chunks).

        Missing parent directories are created; mode 0 means 0644.
        """
        if isinstance(data, str):
            data = data.encode()
        view = memoryview(bytes(data) if not isinstance(data, (bytes, memoryview)) else data)

        def messages(sid: str) -> Iterator[Dict[str, Any]]:
            hdr: Dict[str, Any] = {"sandboxId": sid, "path": path}
            if mode:
                hdr["mode"] = int(mode)
            yield {"header": hdr}
            for i in range(0, len(view), CHUNK):
                yield {"data": base64.b64encode(view[i:i + CHUNK]).decode()}

        def run() -> None:
            self._ensure_running()
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

        threading.Thread(target=run, name="sbx-logs", daemon=True).start()
        return reader
