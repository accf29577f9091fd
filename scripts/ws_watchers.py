"""Browser-less dashboard sessions: Streamlit's own websocket protocol, no rendering.

A :class:`Watchers` thread runs N sessions on one asyncio loop. Each connects to
``/_stcore/stream`` as the browser does, asks for the page with ``?run=ID``, answers every
``auto_rerun`` (the live panel's ``run_every`` timer, which the browser drives) with a
fragment rerun, keeps the browser's message cache (large elements it has already received
are sent again as a reference only), and records when the "Epoch points" caption first
reports each count: the moment that update reached the session, before any drawing. The
server does exactly the work it does for a browser; the client's own cost is parsing
protobufs.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

# "Epoch points — ImageNet weights: 3 · Random weights: 2 (of 22)" (English texts).
POINTS = re.compile(r"Epoch points — ImageNet weights: (\d+) · Random weights: (\d+)")
# The Groups board: "30 groups · 12 runs finished · 1 running · 17 queued".
BOARD = re.compile(r"(\d+) groups · (\d+) runs finished")


class Session:
    """One session's record: ``seen[(index, count)]`` = arrival time (Unix s) of the
    ``count`` in the caption's ``index``-th number (``pattern``: :data:`POINTS`, the arms'
    epoch points; :data:`BOARD`, groups and finished runs)."""

    def __init__(self, pattern: re.Pattern = POINTS) -> None:
        self.pattern = pattern
        self.seen: dict[tuple[int, int], float] = {}
        self.messages = 0
        self.bytes = 0
        self.reruns = 0
        self.page = ""  # the page's script hash, as the server names it
        self.cache: dict[str, bytes] = {}  # cacheable messages by hash, as the browser keeps
        self.error: str | None = None

    def note(self, body: str) -> None:
        m = self.pattern.search(body)
        if not m:
            return
        now = time.time()
        for arm, count in enumerate(map(int, m.groups())):
            for k in range(1, count + 1):
                self.seen.setdefault((arm, k), now)


class Watchers(threading.Thread):
    """``n`` sessions on ``url`` (``http://host:port``) watching ``?run=run_id`` until
    :meth:`stop`; their records in :attr:`sessions`. With ``page`` (a page's URL path,
    e.g. ``groups``) they open that page instead, and read captions with ``pattern``."""

    def __init__(
        self,
        url: str,
        run_id: str | None,
        n: int,
        *,
        page: str = "",
        pattern: re.Pattern = POINTS,
    ) -> None:
        super().__init__(daemon=True)
        self.ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.query = f"run={run_id}" if run_id else ""
        self.page_name = page
        self.sessions = [Session(pattern) for _ in range(n)]
        self.ready = threading.Event()  # every session has drawn its first chart caption
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks = [asyncio.create_task(self._session(s)) for s in self.sessions]
        asyncio.create_task(self._watch_ready())
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_ready(self) -> None:
        while not all(s.seen or s.error for s in self.sessions):
            await asyncio.sleep(0.1)
        self.ready.set()

    async def _session(self, session: Session) -> None:
        try:
            async with websockets.connect(
                self.ws_url, subprotocols=["streamlit"], max_size=None
            ) as ws:
                await ws.send(self._rerun(session.page))
                timers: dict[str, asyncio.Task] = {}
                async for data in ws:
                    msg = ForwardMsg()
                    msg.ParseFromString(data)
                    session.messages += 1
                    session.bytes += len(data)
                    if msg.WhichOneof("type") == "ref_hash":
                        msg.ParseFromString(session.cache[msg.ref_hash])
                    elif msg.metadata.cacheable:
                        session.cache[msg.hash] = data
                    kind = msg.WhichOneof("type")
                    if kind == "new_session":
                        session.page = msg.new_session.page_script_hash or session.page
                    elif kind == "navigation":
                        session.page = msg.navigation.page_script_hash or session.page
                    elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                        element = msg.delta.new_element
                        if element.WhichOneof("type") == "markdown":
                            session.note(element.markdown.body)
                    elif kind == "auto_rerun":
                        rerun = msg.auto_rerun
                        old = timers.pop(rerun.fragment_id, None)
                        if old:
                            old.cancel()
                        timers[rerun.fragment_id] = asyncio.create_task(
                            self._every(ws, session, rerun.interval, rerun.fragment_id)
                        )
                    elif kind == "stop_auto_rerun":
                        for task in timers.values():
                            task.cancel()
                        timers.clear()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported in the summary
            session.error = f"{type(e).__name__}: {e}"

    async def _every(self, ws, session: Session, interval: float, fragment: str) -> None:
        """What the browser does for ``run_every``: rerun the fragment every ``interval``."""
        while True:
            await asyncio.sleep(interval)
            session.reruns += 1
            try:
                await ws.send(self._rerun(session.page, fragment, list(session.cache)))
            except websockets.ConnectionClosed:
                return  # the session's reader reports why

    def _rerun(self, page: str, fragment: str = "", cached: list[str] | None = None) -> bytes:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = page
        if not page:
            state.page_name = self.page_name  # the first request names the page
        state.cached_message_hashes.extend(cached or [])
        if fragment:
            state.fragment_id = fragment
            state.is_auto_rerun = True
        return msg.SerializeToString()
