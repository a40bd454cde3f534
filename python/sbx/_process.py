"""Process: a command running in a sandbox, with live output and stdin."""

from __future__ import annotations

import base64
import concurrent.futures
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Union

from . import _workers
from . import exceptions as exc
from ._client import SANDBOX_SERVICE
from ._types import ByteStreamReader, OperationRef, ProcessResult, StreamReader, TerminalResult

if TYPE_CHECKING:  # pragma: no cover
    from ._sandbox import Sandbox

__all__ = ["Process", "StdinWriter", "StreamWriter", "TerminalSession"]

#: Largest piece of stdin sent per call (the server's limit is 1 MiB).
_STDIN_CHUNK = 1 << 20
#: How long an exec waits for its stream's end after the exit event.
_DRAIN_WAIT = 1.0


class StdinWriter:
    """A process's standard input. Writes are sent in order; each returns an
    operation that finishes once the server took the data."""

    def __init__(self, proc: "Process") -> None:
        self._p = proc
        self._q: "queue.Queue[Any]" = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        _workers.go(self._run, "sbx-stdin")

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, fut = item
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(e)

    def _submit(self, fn: Callable[[], None]) -> OperationRef[None]:
        fut: "concurrent.futures.Future[None]" = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        self._q.put((fn, fut))
        return OperationRef(fut)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def write(self, data: Union[str, bytes]) -> OperationRef[None]:
        """Send data (str is encoded as UTF-8) to the process's stdin.

        Raises:
            SandboxExecutionError: stdin was closed (reason STDIN_CLOSED).
        """
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("stdin data must be str or bytes")
        with self._lock:
            if self._closed:
                raise exc.SandboxExecutionError("cannot write to stdin: it is closed", reason="STDIN_CLOSED")
            return self._submit(lambda: self._p._write_stdin(bytes(data)))

    def writeline(self, line: str, encoding: str = "utf-8") -> OperationRef[None]:
        """Send line plus a newline, encoded with encoding."""
        return self.write((line + "\n").encode(encoding))

    def close(self) -> OperationRef[None]:
        """Close stdin, so that the process reads EOF. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return OperationRef.completed(None)
            self._closed = True
            op = self._submit(self._p._close_stdin)
            self._q.put(None)
            return op


#: CoreWeave's name for the stdin writer.
StreamWriter = StdinWriter


class Process(OperationRef[ProcessResult]):
    """A command running in a sandbox, returned by ``Sandbox.exec``.

    ``result()`` / ``await process`` give its ProcessResult (all output);
    ``stdout`` and ``stderr`` stream output as it arrives; ``stdin`` (with
    ``stdin=True``) writes to it.
    """

    def __init__(self, sandbox: "Sandbox", command: List[str], request: Dict[str, Any], check: bool, stdin: bool,
                 raw: bool = False) -> None:
        self._fut: "concurrent.futures.Future[ProcessResult]" = concurrent.futures.Future()
        self._fut.set_running_or_notify_cancel()
        super().__init__(self._fut)
        self._sb = sandbox
        self.command = list(command)
        self._req = request
        self._check = check
        # raw: stdout yields byte chunks (a terminal's output), not text lines.
        self._raw = raw
        self.stdout: StreamReader = ByteStreamReader() if raw else StreamReader()
        self.stderr = StreamReader()
        self.stdin: Optional[StdinWriter] = StdinWriter(self) if stdin else None
        self._started = threading.Event()
        self._start_err: Optional[BaseException] = None
        self.exec_id: Optional[str] = None
        self.pid: Optional[int] = None
        self._returncode: Optional[int] = None
        self._stream: Any = None
        record = getattr(sandbox, "_record_exec", None)
        self._record = record if callable(record) else (lambda _o: None)
        self._record(None)
        _workers.go(self._run, "sbx-exec")

    def __repr__(self) -> str:
        return f"<Process {self.command!r} exec_id={self.exec_id} returncode={self._returncode}>"

    def _run(self) -> None:
        out, err = bytearray(), bytearray()
        try:
            exit_ev: Optional[Dict[str, Any]] = None
            for ev in self._events():
                if "started" in ev:
                    st = ev["started"] or {}
                    self.exec_id = st.get("execId")
                    self.pid = int(st.get("pid") or 0)
                    self._started.set()
                elif "stdout" in ev:
                    b = base64.b64decode(ev["stdout"])
                    if not self._raw:  # a terminal's output is streamed, not kept
                        out += b
                    self.stdout._feed(b)
                elif "stderr" in ev:
                    b = base64.b64decode(ev["stderr"])
                    err += b
                    self.stderr._feed(b)
                elif "exit" in ev:
                    exit_ev = ev["exit"] or {}
                    break
            if exit_ev is None:
                self._stream.close()
                raise exc.SandboxUnavailableError(
                    f"the exec stream of {self.command!r} ended before the process exited", reason="EXEC_STREAM_ENDED")
            code = int(exit_ev.get("code") or 0)
            self._returncode = code
            res = ProcessResult(
                stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"), returncode=code,
                stdout_bytes=bytes(out), stderr_bytes=bytes(err), command=list(self.command),
                signal=exit_ev.get("signal") or None, timed_out=bool(exit_ev.get("timedOut")),
                oom_killed=bool(exit_ev.get("oomKilled")), truncated=bool(exit_ev.get("truncated")),
            )
        except BaseException as e:  # noqa: BLE001 - delivered through result()
            self._start_err = e
            self._started.set()
            self.stdout._close(e)
            self.stderr._close(e)
            self._record("failure")
            self._fut.set_exception(e)
            return
        self._started.set()
        self.stdout._close()
        self.stderr._close()
        self._finish(res, code)
        # The result is out; the stream's end follows the exit event at
        # once: read it, so that the connection serves the next call.
        self._stream.drain(_DRAIN_WAIT)

    def _finish(self, res: ProcessResult, code: int) -> None:
        failed = res.timed_out or (self._check and code != 0)
        self._record("failure" if failed else ("ok" if code == 0 else "nonzero"))
        if res.timed_out:
            self._fut.set_exception(exc.SandboxCommandTimeoutError(
                f"command {self.command!r} ran out of its {self._req.get('timeoutSeconds')}s timeout and was killed",
                exec_result=res, reason="COMMAND_TIMEOUT"))
        elif self._check and code != 0:
            tail = res.stderr.strip().splitlines()[-1:] if res.stderr.strip() else []
            msg = f"command {self.command!r} exited with code {code}" + (f": {tail[0][:200]}" if tail else "")
            self._fut.set_exception(exc.SandboxExecutionError(msg, exec_result=res, reason="NON_ZERO_EXIT"))
        else:
            self._fut.set_result(res)

    def _events(self) -> Iterator[Dict[str, Any]]:
        """The exec's stream of events. A sandbox not known to be running yet
        gets the Exec at once: the server holds it until the sandbox runs
        (as the Go SDK relies on), which spares a fresh sandbox's first exec
        a Wait call. Only if the server answers SANDBOX_NOT_RUNNING before
        the process started (a sandbox that ended, or a server that does not
        hold execs) does it wait, raising why the sandbox will not run, and
        try once more."""
        sb = self._sb
        sb._start()
        retry = not sb._running
        while True:
            sid = sb.sandbox_id
            self._stream = sb._client.stream(SANDBOX_SERVICE, "Exec", dict(self._req, sandboxId=sid), sandbox_id=sid)
            started = False
            try:
                for ev in self._stream:
                    started = started or "started" in ev
                    yield ev
                return
            except exc.SandboxNotRunningError:
                if started or not retry:
                    raise
            self._stream.close()
            retry = False
            sb._ensure_running()

    def _wait_started(self) -> str:
        self._started.wait()
        if self.exec_id is None:
            raise self._start_err or exc.SandboxError("the process did not start")
        return self.exec_id

    def _write_stdin(self, data: bytes) -> None:
        eid = self._wait_started()
        sid = self._sb.sandbox_id
        for i in range(0, max(len(data), 1), _STDIN_CHUNK):
            piece = data[i:i + _STDIN_CHUNK]
            self._sb._client.call(SANDBOX_SERVICE, "WriteStdin", {
                "sandboxId": sid, "execId": eid, "data": base64.b64encode(piece).decode()})

    def _close_stdin(self) -> None:
        eid = self._wait_started()
        self._sb._client.call(SANDBOX_SERVICE, "CloseStdin", {"sandboxId": self._sb.sandbox_id, "execId": eid})

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the process exited, else None."""
        return self._returncode

    def poll(self) -> Optional[int]:
        """Return the exit code if the process has exited, else None, without blocking."""
        return self._returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the process exits (at most timeout seconds) and return its exit code.

        Unlike result(), this does not raise for a non-zero exit under ``check=True``.
        """
        try:
            self._fut.exception(timeout)
        except concurrent.futures.TimeoutError:
            raise exc.SandboxTimeoutError(f"command {self.command!r} still running after {timeout}s") from None
        if self._returncode is None:
            raise self._fut.exception() or exc.SandboxError("the process ended without an exit code")
        return self._returncode

    def send_signal(self, signal: str = "SIGTERM") -> None:
        """Send a signal ("SIGTERM", "KILL", "9") to the process's group."""
        eid = self._wait_started()
        self._sb._client.call(SANDBOX_SERVICE, "SignalExec", {"sandboxId": self._sb.sandbox_id, "execId": eid, "signal": signal})

    def cancel(self) -> bool:  # type: ignore[override]
        """Kill the process (SIGKILL to its group). Returns True if a signal was sent."""
        if self._returncode is not None or self._fut.done():
            return False
        try:
            self.send_signal("SIGKILL")
        except exc.SandboxError:
            return False
        return True


class TerminalSession(OperationRef[TerminalResult]):
    """An interactive command on a pseudo-terminal (``Sandbox.shell()``).

    ``output`` yields raw byte chunks (stdout and stderr merged, escape
    sequences kept; nothing is buffered for the result); ``stdin`` writes
    keystrokes; ``resize(width, height)`` changes the terminal size;
    ``result()`` / ``await`` give a TerminalResult once the command exits.
    """

    def __init__(self, proc: Process) -> None:
        fut: "concurrent.futures.Future[TerminalResult]" = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        super().__init__(fut)
        self._p = proc
        self.output = proc.stdout
        self.stdin: StdinWriter = proc.stdin  # type: ignore[assignment]

        def done(f: "concurrent.futures.Future[ProcessResult]") -> None:
            e = f.exception()
            if e is not None:
                fut.set_exception(e)
            else:
                fut.set_result(TerminalResult(returncode=f.result().returncode, command=list(proc.command)))

        proc._fut.add_done_callback(done)

    @property
    def command(self) -> List[str]:
        """The command that runs on the terminal."""
        return self._p.command

    @property
    def returncode(self) -> Optional[int]:
        """The exit code once the command exited, else None."""
        return self._p.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the command exits (at most timeout seconds); its exit code."""
        return self.result(timeout).returncode

    def resize(self, width: int, height: int) -> None:
        """Set the terminal's size in columns and rows.

        Raises:
            SandboxExecutionError: the session has ended.
        """
        if self._future.done():
            raise exc.SandboxExecutionError("cannot resize: the terminal session has ended", reason="EXEC_ENDED")
        for v in (width, height):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 0xFFFF:
                raise exc.SandboxInvalidArgumentError(f"terminal size {width}x{height}: each must be 1..65535", reason="INVALID_ARGUMENT")
        eid = self._p._wait_started()
        sb = self._p._sb
        sb._client.call(SANDBOX_SERVICE, "ResizeExec", {"sandboxId": sb.sandbox_id, "execId": eid, "rows": height, "cols": width})

    def kill(self) -> bool:
        """End the command (SIGKILL). Returns True if a signal was sent."""
        return self._p.cancel()
