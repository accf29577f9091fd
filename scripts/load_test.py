"""Load test: N sessions watching one live run - how fast updates reach them, and how
much they slow the worker.

Serves the dashboard (``streamlit run``) and trains one real experiment per mode. While the
worker is in its steady fine-tuning epochs, the watchers are switched off and on in
alternating windows of ``--window`` seconds (``--cycles`` times), so the worker's pace with
and without watchers is compared inside the same run: slow drifts (other programs on the
machine, thermal limits) hit both alike. Then the run is stopped and a JSON summary printed.

Modes (``--modes``, comma-separated):

* ``ws:N`` - N websocket sessions (:mod:`ws_watchers`): the server does all it does for a
  browser, nothing is drawn here - as when the audience's browsers run on their own devices;
* ``mixed:N`` - N-1 websocket sessions and one headless Chromium page that draws;
* ``browser:N`` - N headless Chromium pages (one browser, a context each) drawing on the
  same CPUs as the worker: the worst case, everything on one laptop.

Figures per mode:

* **update latency** - for every epoch row written in an "on" window: the time from the
  row's write (the store's ``time``) until each session has it: for a page, when its
  side-by-side chart shows the point (read in the page every 50 ms); for a websocket
  session, when the caption counting the points arrives. Median, p95, max over rows x
  sessions;
* **slowdown** - median seconds per fine-tuning epoch (per arm) in "on" windows against
  "off" windows;
* CPU: cores used by the server and by Chromium in "on" windows, and by everything else on
  the machine in both (``other_cores``: a busy machine makes the comparison noisy).

**Groups** (``--groups N``, instead of the modes): the group exercise under load. A seminar
exercise is opened, N groups join and each starts its run at once (tiny runs on generated
images: Lite0, ``--group-image-size`` px, ``--group-per-class`` images per class, one
epoch), and the dashboard's warm pool trains them one at a time while ``--group-watchers``
websocket sessions watch the Groups board. Figures: whether every run completed, none was
lost and they ran in the order queued (each started after the one before had ended);
seconds per run; and the **board's lag**: for the k-th run to finish, the time from its
``completed`` in the store until each session's board caption counts k finished runs.

Run from the repository root::

    python scripts/load_test.py
    python scripts/load_test.py --modes ws:10 --cycles 5 --json load.json
    python scripts/load_test.py --groups 30 --json groups.json

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the Python ``playwright`` package
for the browser modes; uses ``DATASETS_DIR``'s ``horses-or-humans/`` when present, else
generated images. Everything it writes lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import psutil  # noqa: E402
from ws_watchers import BOARD, Watchers  # noqa: E402

from pipelines.runs import lifecycle  # noqa: E402
from pipelines.runs.jobs import JobManager  # noqa: E402
from pipelines.runs.store import RunStore  # noqa: E402
from pipelines.training.config import ExperimentConfig  # noqa: E402
from tests.served import Server, launch_chromium, until  # noqa: E402

# Counts of epoch points per arm in the side-by-side chart: the first lines+markers trace
# (train loss) of each column's top subplot (axes x, x2); first time seen, in ms.
RECORDER_JS = """() => {
  window.__seen = {};
  const counts = () => {
    const gd = document.querySelector('.js-plotly-plot');
    if (!gd || !gd.data) return null;
    return ['x', 'x2'].map(ax => {
      const t = gd.data.find(t => (t.xaxis || 'x') === ax && t.mode === 'lines+markers');
      return t ? (t.x || []).length : 0;
    });
  };
  setInterval(() => {
    const c = counts();
    if (!c) return;
    c.forEach((k, arm) => {
      for (let i = 1; i <= k; i++) {
        const key = arm + ':' + i;
        if (!(key in window.__seen)) window.__seen[key] = Date.now();
      }
    });
  }, 50);
}"""
CHART_READY_JS = "() => !!document.querySelector('.js-plotly-plot')?.data"
ARMS = ("imagenet", "random")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", default="ws:10,mixed:10,browser:10", help="see above")
    p.add_argument("--cycles", type=int, default=3, help="off/on window pairs per mode")
    p.add_argument("--window", type=float, default=20.0, help="seconds per window")
    p.add_argument("--per-class", type=int, default=200, help="training images per class")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--unfreeze", type=int, default=8, help="blocks fine-tuned in phase 2")
    p.add_argument("--json", type=Path, help="also write the summary to this file")
    p.add_argument("--groups", type=int, default=0, help="the group exercise with N groups")
    p.add_argument("--group-watchers", type=int, default=3, help="sessions on the board")
    p.add_argument("--group-per-class", type=int, default=20)
    p.add_argument("--group-image-size", type=int, default=32)
    return p.parse_args(argv)


def parse_mode(token: str) -> tuple[str, int]:
    """``"ws:10"`` -> ``("ws", 10)``."""
    kind, _, n = token.strip().partition(":")
    if kind not in ("ws", "browser", "mixed") or not n.isdigit() or int(n) < 1:
        raise SystemExit(f"--modes: {token!r} is not ws:N, browser:N or mixed:N")
    return kind, int(n)


def experiment(args: argparse.Namespace, dataset: str) -> ExperimentConfig:
    """Long enough for every window; the script stops it when done."""
    return ExperimentConfig().with_overrides(
        [
            f"dataset={dataset}",
            f"train_per_class={args.per_class}",
            f"image_size={args.image_size}",
            "batch_size=32",
            "phase1.epochs=1",
            "phase2.epochs=1000",
            f"phase2.unfreeze_blocks={args.unfreeze}",
        ]
    )


def dataset_for(tmp: Path, per_class: int) -> str:
    """Horses or Humans where ``DATASETS_DIR`` has it, else a generated 2-class folder."""
    from pipelines import settings

    root = settings.datasets_dir()
    if root is not None and (root / "horses-or-humans" / "train").is_dir():
        return "horses_or_humans"
    from tests.conftest_data import make_image_folder

    return str(make_image_folder(tmp / "generated", train=per_class, validation=64))


# --- CPU accounting -------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


@dataclass
class CpuMeter:
    """Cores used between :meth:`start` and :meth:`stop`: by the server, by Chromium, and
    by everything else on the machine except the worker and this script."""

    server: psutil.Process
    worker: psutil.Process
    result: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, Any]:
        busy = psutil.cpu_times()
        chromium = [p for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "")]
        return {
            "time": time.monotonic(),
            "machine": sum(busy) - busy.idle - busy.iowait,
            "server": _cpu(self.server),
            "worker": _cpu(self.worker),
            "script": _cpu(psutil.Process()),
            "chromium": {p.pid: _cpu(p) for p in chromium},
        }

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after, before = self._sample(), self._before
        # Chromium processes come and go: count what each one used since it was first seen.
        pids = after.pop("chromium")
        chromium = sum(cpu - before["chromium"].get(pid, 0.0) for pid, cpu in pids.items())
        before = {k: v for k, v in before.items() if k != "chromium"}
        d = {k: after[k] - before[k] for k in after}
        d["chromium"] = chromium
        seconds = max(d.pop("time"), 1e-9)
        ours = d["server"] + d["worker"] + d["script"] + d["chromium"]
        self.result = {
            "server_cores": d["server"] / seconds,
            "chromium_cores": d["chromium"] / seconds,
            "worker_cores": d["worker"] / seconds,
            "other_cores": max(d["machine"] - ours, 0.0) / seconds,
        }
        return self.result


# --- watchers -------------------------------------------------------------------------------


class Audience:
    """The sessions of one "on" window: websocket sessions and Chromium pages."""

    def __init__(self, url: str, run_id: str, kind: str, n: int, playwright) -> None:
        self.url, self.run_id, self.playwright = url, run_id, playwright
        self.pages_n = {"browser": n, "mixed": 1}.get(kind, 0)
        self.ws_n = {"ws": n, "mixed": n - 1}.get(kind, 0)
        self.ws: Watchers | None = None
        self.browser = None
        self.pages: list = []

    def open(self) -> None:
        if self.ws_n:
            self.ws = Watchers(self.url, self.run_id, self.ws_n)
            self.ws.start()
        if self.pages_n:
            self.browser = launch_chromium(self.playwright)
            for _ in range(self.pages_n):
                context = self.browser.new_context(viewport={"width": 1400, "height": 1400})
                page = context.new_page()
                page.set_default_timeout(120_000)
                page.goto(f"{self.url}/?run={self.run_id}")
                self.pages.append(page)
            for page in self.pages:
                page.wait_for_function(CHART_READY_JS)
                page.evaluate(RECORDER_JS)
        if self.ws is not None and not self.ws.ready.wait(120):
            raise TimeoutError("the websocket sessions did not show the run")

    def close(self) -> tuple[list[dict[tuple[int, int], float]], list[str]]:
        """Each session's ``{(arm index, points): first seen (Unix s)}``, and errors."""
        seen: list[dict[tuple[int, int], float]] = []
        for page in self.pages:
            raw = page.evaluate("() => window.__seen")
            seen.append({tuple(map(int, k.split(":"))): ms / 1000 for k, ms in raw.items()})
        errors: list[str] = []
        if self.ws is not None:
            self.ws.stop()
            seen += [s.seen for s in self.ws.sessions]
            errors = [s.error for s in self.ws.sessions if s.error]
        if self.browser is not None:
            self.browser.close()
        return seen, errors


# --- one mode -------------------------------------------------------------------------------


@dataclass
class Window:
    watched: bool
    start: float  # Unix s
    end: float
    cpu: dict[str, float]
    seen: list[dict[tuple[int, int], float]] = field(default_factory=list)


def steady_rows(store: RunStore, run_id: str):
    """Fine-tuning epoch rows after each arm's first (which traces the graph)."""
    epochs = store.curves(run_id, kind="epoch")
    tuning = epochs[epochs["phase"] == "fine_tuning"]
    first = tuning.groupby("arm")["epoch"].transform("min")
    return tuning[tuning["epoch"] > first]


def measure(
    server: Server,
    store: RunStore,
    config: ExperimentConfig,
    mode: tuple[str, int],
    args: argparse.Namespace,
    features: Path,
    playwright,
) -> dict[str, Any]:
    """One run of ``config``: ``args.cycles`` off/on window pairs, then stopped."""
    kind, n = mode
    os.environ["FEATURE_CACHE_DIR"] = str(features)  # a cold cache for every run alike
    jobs = JobManager(store)
    run_id = jobs.start(config)
    until(lambda: len(steady_rows(store, run_id)) >= 2, 600, "steady fine-tuning epochs")
    worker = psutil.Process(store.get_run(run_id).worker_pid)
    meter = CpuMeter(psutil.Process(server.proc.pid), worker)
    windows: list[Window] = []
    errors: list[str] = []
    for _ in range(args.cycles):
        start = time.time()
        meter.start()
        time.sleep(args.window)
        windows.append(Window(False, start, time.time(), meter.stop()))
        audience = Audience(server.url, run_id, kind, n, playwright)
        audience.open()
        start = time.time()
        meter.start()
        time.sleep(args.window)
        end = time.time()
        cpu = meter.stop()
        seen, problems = audience.close()
        windows.append(Window(True, start, end, cpu, seen))
        errors += problems
    lifecycle.request_stop(store, run_id)
    until(lambda: not jobs.status(run_id).active, 120, "the run to stop")  # reaped too
    out = summarise(store, run_id, windows)
    out = {"mode": f"{kind}:{n}", **out}
    if errors:
        out["session_errors"] = sorted(set(errors))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(store: RunStore, run_id: str, windows: list[Window]) -> dict[str, Any]:
    rows = steady_rows(store, run_id)
    epoch_s: dict[bool, list[float]] = {False: [], True: []}
    for written, took in zip(rows["time"], rows["epoch_s"], strict=True):
        for w in windows:
            if w.start <= written - took and written <= w.end:
                epoch_s[w.watched].append(float(took))
    latencies, missed = [], 0
    epochs = store.curves(run_id, kind="epoch")
    for index, arm in enumerate(ARMS):
        mine = epochs[epochs["arm"] == arm].reset_index(drop=True)
        for k, written in enumerate(mine["time"], start=1):
            for w in windows:
                if not (w.watched and w.start <= written <= w.end - 2.0):
                    continue
                for session in w.seen:
                    at = session.get((index, k))
                    if at is None:
                        missed += 1
                    else:
                        latencies.append(at - written)
    off = statistics.median(epoch_s[False]) if epoch_s[False] else None
    on = statistics.median(epoch_s[True]) if epoch_s[True] else None

    def mean_cpu(watched: bool, key: str) -> float:
        values = [w.cpu[key] for w in windows if w.watched is watched]
        return round(statistics.mean(values), 2) if values else 0.0

    return {
        "run_id": run_id,
        "epochs_off": len(epoch_s[False]),
        "epochs_on": len(epoch_s[True]),
        "s_per_epoch_off": round(off, 3) if off else None,
        "s_per_epoch_on": round(on, 3) if on else None,
        "slowdown_pct": round(100 * (on / off - 1), 1) if on and off else None,
        "updates_measured": len(latencies),
        "updates_missed": missed,
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "latency_s_p95": round(percentile(latencies, 0.95), 3) if latencies else None,
        "latency_s_max": round(max(latencies), 3) if latencies else None,
        "server_cores_on": mean_cpu(True, "server_cores"),
        "chromium_cores_on": mean_cpu(True, "chromium_cores"),
        "other_cores_off": mean_cpu(False, "other_cores"),
        "other_cores_on": mean_cpu(True, "other_cores"),
    }


# --- the group exercise ----------------------------------------------------------------------


def group_experiment(args: argparse.Namespace, dataset: str) -> ExperimentConfig:
    """A tiny run: one epoch of feature extraction."""
    return ExperimentConfig().with_overrides(
        [
            f"dataset={dataset}",
            f"train_per_class={args.group_per_class}",
            f"image_size={args.group_image_size}",
            "batch_size=8",
            "phase1.epochs=1",
            "phase2.epochs=0",
        ]
    )


def measure_groups(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """N groups, one run each, one at a time, the board watched (see the docstring)."""
    from pipelines.runs import exercise as ex
    from tests.conftest_data import make_image_folder

    n = args.groups
    data = make_image_folder(tmp / "group-data", train=args.group_per_class, validation=8)
    config = group_experiment(args, str(data))
    runs_dir = tmp / "group-runs"
    env = {
        "RUNS_DIR": str(runs_dir),
        "FEATURE_CACHE_DIR": str(tmp / "group-features"),
        "WARM_WORKERS": "1",
        "MAX_RUNNING_EXPERIMENTS": "1",
    }
    os.environ.update(env)
    store = RunStore(runs_dir)
    with Server(env, tmp / "streamlit-groups.log") as server:
        server_proc = psutil.Process(server.proc.pid)
        exercise = ex.open_exercise(store, "Load test", ex.Rules(base=config.to_dict()))
        names = [f"Group {i:02d}" for i in range(n)]
        members = [ex.join(store, exercise.exercise_id, name) for name in names]
        watchers = Watchers(server.url, None, args.group_watchers, page="groups", pattern=BOARD)
        watchers.start()
        if not watchers.ready.wait(120):
            raise RuntimeError("the board sessions did not show the board within 120 s")
        until(lambda: lifecycle.live_pool_workers(store), 120, "the dashboard's warm pool")
        jobs = JobManager(store, max_running=1, warm_workers=0)  # the pool trains
        cpu_before, t0 = _cpu(server_proc), time.monotonic()
        started = [
            ex.start_run(jobs, exercise.exercise_id, g.name, exercise.rules.config_for(g.side))
            for g in members
        ]

        def finished() -> bool:  # read only: the served dashboard reaps and supervises
            return all(not r.active for r in store.runs_of_exercise(exercise.exercise_id))

        until(finished, 60.0 * n, f"{n} group runs", every=0.5)
        wall = time.monotonic() - t0
        server_cores = (_cpu(server_proc) - cpu_before) / wall
        time.sleep(3.0)  # the board's last refresh
        watchers.stop()
    runs = store.runs_of_exercise(exercise.exercise_id)
    began = [(store.events(r.run_id) or [{"time": r.updated}])[0]["time"] for r in runs]
    seconds = [r.updated - b for r, b in zip(runs, began, strict=True)]
    in_order = [r.run_id for r in runs] == started and all(
        began[i + 1] >= runs[i].updated for i in range(len(runs) - 1)
    )
    done_at = sorted(r.updated for r in runs if r.status == "completed")
    lags, missed = [], 0
    for session in watchers.sessions:
        for k, when in enumerate(done_at, start=1):
            seen = session.seen.get((1, k))
            if seen is None:
                missed += 1
            else:
                lags.append(seen - when)
    store.close()
    return {
        "groups": n,
        "runs_started": len(started),
        "runs_in_store": len(runs),
        "completed": sum(r.status == "completed" for r in runs),
        "statuses": sorted({r.status for r in runs}),
        "errors": sorted({r.error for r in runs if r.error}),
        "in_order": in_order,
        "wall_s": round(wall, 1),
        "s_per_run_median": round(statistics.median(seconds), 2),
        "s_per_run_max": round(max(seconds), 2),
        "board_sessions": args.group_watchers,
        "board_updates_measured": len(lags),
        "board_updates_missed": missed,
        "board_lag_s_median": round(statistics.median(lags), 3) if lags else None,
        "board_lag_s_p95": round(percentile(lags, 0.95), 3) if lags else None,
        "board_lag_s_max": round(max(lags), 3) if lags else None,
        "server_cores": round(server_cores, 2),
        "session_errors": sorted({s.error for s in watchers.sessions if s.error}),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.groups:
        with tempfile.TemporaryDirectory(prefix="load-test-") as folder:
            result = measure_groups(args, Path(folder))
        result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        text = json.dumps(result, indent=1)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0
    modes = [parse_mode(token) for token in args.modes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="load-test-") as folder:
        tmp = Path(folder)
        os.environ["RUNS_DIR"] = str(tmp / "runs")
        config = experiment(args, dataset_for(tmp, args.per_class))
        store = RunStore()
        env = {"RUNS_DIR": os.environ["RUNS_DIR"]}
        playwright = None
        if any(kind != "ws" for kind, _ in modes):
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
        try:
            with Server(env, tmp / "streamlit.log") as server:
                for i, mode in enumerate(modes):
                    result = measure(
                        server, store, config, mode, args, tmp / f"features-{i}", playwright
                    )
                    print(json.dumps(result), file=sys.stderr, flush=True)
                    results.append(result)
        finally:
            if playwright is not None:
                playwright.stop()
            store.close()
    summary = {
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": sys.version.split()[0],
        },
        "experiment": {
            "dataset": config.dataset,
            "train_per_class": config.train_per_class,
            "image_size": config.image_size,
            "unfreeze_blocks": config.phase2.unfreeze_blocks,
            "batch_size": config.batch_size,
        },
        "window_s": args.window,
        "cycles": args.cycles,
        "modes": results,
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
