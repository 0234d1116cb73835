"""HTTP load test of `python -m kb serve`: starts the server, warms it up, then N users ask distinct questions
for a fixed time through real HTTP (httpx, asyncio) and the figures are printed.

Bounded and local: it only ever sends to 127.0.0.1, stops after --seconds or --max-requests, and stops the server
it started. Each user sends its next question as soon as the previous answer arrived (closed loop). Questions
are half STARD (Chinese) and half SciFact (English), distinct, in a shuffled order per user.

    .venv/bin/python scripts/httpload.py                      # bundled index, 20 users, 60 s, a worker per core
    .venv/bin/python scripts/httpload.py --index DIR --users 20 --seconds 60 --warmup 10 --json out.json

Prints throughput, p50/p95/p99 latency, errors, and the server's CPU seconds per question (all its processes,
from /proc) with the throughput that CPU cost implies on this machine's cores: the ceiling beside the measured figure.
Every --window seconds (default 5) it also writes a line to stderr, so a run that slows down shows where and why:
answers and latency in the window, the server's CPU per answer, each worker's share of a core and its open
connections and memory, and the cores the client, other processes and the hypervisor (steal) took meanwhile.
The JSON (stdout, --json) has the same series under "windows".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from kb import config

HOST = "127.0.0.1"  # the only address this script sends to


def questions(n: int) -> list[str]:
    """n distinct questions: half the first STARD train questions (Chinese), half SciFact test claims (English)."""
    bench = config.SHARED / "benchmarks"
    stard = [
        json.loads(x)["query"]
        for x in (bench / "stard" / "train.jsonl").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    scifact = [
        json.loads(x)["text"]
        for x in (bench / "scifact" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    out = list(dict.fromkeys(stard[: n // 2] + scifact[: n - n // 2]))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tree(root: int) -> list[int]:
    """A process and all its descendants alive now (the server's parent and its workers)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        out.append(pid)
    return out


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and all its descendants that are alive now (from /proc)."""
    return sum(process_cpu(pid) for pid in tree(root))


def machine_seconds() -> dict[str, float]:
    """The machine's CPU seconds so far, all cores together: busy (any process), steal (taken by the hypervisor
    for other guests) and idle, from the first line of /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "steal": steal / tick,
        "idle": (idle + iowait) / tick,
    }


def connections(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections to the server's port held by each of these processes (/proc/net/tcp)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes[f"socket:[{f[9]}]"] = 0
    out = {}
    for pid in pids:
        n = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    n += os.readlink(fd) in inodes
        out[pid] = n
    return out


def rss_mb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return 0


def sample(root: int | None, port: int) -> dict:
    """What the windows are computed from: the time, each server process's CPU seconds, RSS and connections,
    the machine's CPU seconds, the client's own CPU seconds."""
    pids = tree(root) if root else []
    conns = connections(pids, port) if pids else {}
    return {
        "t": time.perf_counter(),
        "cpu": {pid: process_cpu(pid) for pid in pids},
        "rss": {pid: rss_mb(pid) for pid in pids},
        "conns": conns,
        "machine": machine_seconds(),
        "client": time.process_time(),
    }


def windows(samples: list[dict], done: list[tuple[float, float]], root: int | None) -> list[dict]:
    """Per window between two samples: answers, latency of the answers that arrived in it, server CPU per answer,
    each worker's cores, connections and RSS, and the cores the client, other processes and steal took."""
    out = []
    for a, b in zip(samples, samples[1:]):
        span = b["t"] - a["t"]
        lat = [ms for t, ms in done if a["t"] <= t < b["t"]]
        used = {pid: b["cpu"][pid] - a["cpu"].get(pid, 0.0) for pid in b["cpu"]}
        server = sum(used.values())
        client = b["client"] - a["client"]
        busy = b["machine"]["busy"] - a["machine"]["busy"]
        workers = [pid for pid in b["cpu"] if pid != root]
        out.append(
            {
                "t_end_s": round(b["t"] - samples[0]["t"], 1),
                "answered": len(lat),
                "qps": round(len(lat) / span, 1),
                "p50_ms": round(pct(lat, 50)) if lat else 0,
                "p95_ms": round(pct(lat, 95)) if lat else 0,
                "server_cpu_s_per_question": round(server / len(lat), 4) if lat else None,
                "server_cores": round(server / span, 2),
                "worker_cores": [round(used[pid] / span, 2) for pid in workers],
                "worker_connections": [b["conns"].get(pid, 0) for pid in workers],
                "worker_rss_mb": [b["rss"].get(pid, 0) for pid in workers],
                "client_cores": round(client / span, 2),
                "other_cores": round(max(0.0, busy - server - client) / span, 2),
                "steal_cores": round((b["machine"]["steal"] - a["machine"]["steal"]) / span, 2),
            }
        )
    return out


def print_windows(rows: list[dict]) -> None:
    """The series as a table on stderr (stdout stays one JSON line)."""
    head = "   t s  answered   q/s  p50 ms  p95 ms  CPU s/q  server cores  worker cores  conns    RSS MB      client  other  steal"
    print(head, file=sys.stderr)
    for w in rows:
        cpu = "-" if w["server_cpu_s_per_question"] is None else f"{w['server_cpu_s_per_question']:.4f}"
        print(
            f"{w['t_end_s']:6.1f} {w['answered']:9d} {w['qps']:5.1f} {w['p50_ms']:7d} {w['p95_ms']:7d}  {cpu:>7s}"
            f"  {w['server_cores']:12.2f}  {'/'.join(f'{c:.2f}' for c in w['worker_cores']):>12s}"
            f"  {'/'.join(map(str, w['worker_connections'])):>5s}  {'/'.join(map(str, w['worker_rss_mb'])):>9s}"
            f"  {w['client_cores']:10.2f}  {w['other_cores']:5.2f}  {w['steal_cores']:5.2f}",
            file=sys.stderr,
        )


def memory(root: int) -> list[dict[str, float]]:
    """Per server process (the parent and each worker): RSS, PSS (shared pages split between the processes
    mapping them), anonymous memory (the process's own heap) and file-backed PSS (memory-mapped index files,
    model files) in MB, from /proc/PID/smaps_rollup."""
    out = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        mb = {k: int(v.split()[0]) / 1024 for k, v in fields.items() if v.strip().endswith("kB")}
        out.append(
            {
                "pid": pid,
                "rss_mb": round(mb.get("Rss", 0.0)),
                "pss_mb": round(mb.get("Pss", 0.0)),
                "anon_mb": round(mb.get("Anonymous", 0.0)),
                "file_pss_mb": round(mb.get("Pss_File", 0.0)),
                "shared_clean_mb": round(mb.get("Shared_Clean", 0.0)),
            }
        )
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else math.nan


async def run_users(
    url: str,
    qs: list[str],
    users: int,
    seconds: float,
    max_requests: int,
    k: int,
    headers: dict[str, str],
    probe: Callable[[], dict] | None = None,
    window: float = 5.0,
) -> dict:
    """Closed-loop users for `seconds`; with a probe, a sample every `window` seconds (and at both ends)."""
    latencies: list[float] = []
    done: list[tuple[float, float]] = []  # (when the answer arrived, its latency in ms), for the windows
    errors: dict[str, int] = {}
    samples: list[dict] = []
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0, headers=headers) as client:

        async def user(n: int) -> None:
            nonlocal sent
            order = qs[:]
            random.Random(n).shuffle(order)
            i = 0
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                q = order[i % len(order)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.get("/search", params={"q": q, "k": k})
                    ok = r.status_code == 200 and isinstance(r.json(), list)
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                if key is None:
                    t1 = time.perf_counter()
                    latencies.append(t1 - t0)
                    done.append((t1, (t1 - t0) * 1000))
                else:
                    errors[key] = errors.get(key, 0) + 1

        async def sampler() -> None:
            assert probe is not None
            samples.append(probe())
            while (left := deadline - time.perf_counter()) > window / 2:
                await asyncio.sleep(min(window, left))
                samples.append(probe())

        t0 = time.perf_counter()
        tasks = [user(n) for n in range(users)]
        await asyncio.gather(*tasks, *([sampler()] if probe else []))
        wall = time.perf_counter() - t0
        if probe:
            samples.append(probe())  # the answers that arrived after the deadline
    return {"wall": wall, "latencies": latencies, "done": done, "errors": errors, "samples": samples}


def stop(proc: subprocess.Popen) -> None:
    """Stop the server this script started and every process of its group (the workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float, headers: dict[str, str]) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"error: the server exited with status {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/health", timeout=2.0, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"error: {url}/health did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, default=config.DEFAULT_INDEX)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring (not counted)")
    p.add_argument("--questions", type=int, default=440, help="distinct questions (half STARD, half SciFact)")
    p.add_argument("--workers", type=int, default=None, help="server worker processes (default: one per core)")
    p.add_argument("--threads", type=int, default=None, help="server searches per worker at once (default 4)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests in any case")
    p.add_argument("--port", type=int, default=None, help="use the server already listening on 127.0.0.1:PORT")
    p.add_argument("--api-key", default=None, help="bearer key, when the server was started with KB_API_KEY")
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--window", type=float, default=5.0, help="seconds per line of the series on stderr")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    qs = questions(args.questions)
    proc = None
    port = args.port or free_port()
    url = f"http://{HOST}:{port}"
    t_start = time.perf_counter()
    if args.port is None:
        cmd = [sys.executable, "-m", "kb", "serve", "--index", str(args.index), "--host", HOST, "--port", str(port)]
        cmd += ["--workers", str(args.workers)] if args.workers else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        # Its own process group: stopping it stops the workers too, even ones still loading (which an orphaned
        # uvicorn worker would go on doing).
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(url, proc, args.start_timeout, headers)
        ready = time.perf_counter() - t_start
        if args.warmup > 0:
            asyncio.run(run_users(url, qs, args.users, args.warmup, args.max_requests, args.k, headers))
        cpu0 = cpu_seconds(proc.pid) if proc else float("nan")
        client0 = time.process_time()
        root = proc.pid if proc else None
        res = asyncio.run(
            run_users(
                url,
                qs,
                args.users,
                args.seconds,
                args.max_requests,
                args.k,
                headers,
                probe=lambda: sample(root, port),
                window=args.window,
            )
        )
        server_cpu = (cpu_seconds(proc.pid) - cpu0) if proc else float("nan")
        mem = memory(proc.pid) if proc else []
        client_cpu = time.process_time() - client0
    finally:
        if proc is not None:
            stop(proc)
    lat = [x * 1000 for x in res["latencies"]]
    done = len(lat)
    cores = os.cpu_count() or 1
    per_q = server_cpu / done if done else float("nan")
    out = {
        "index": str(args.index),
        "users": args.users,
        "seconds": round(res["wall"], 1),
        "distinct_questions": len(qs),
        "answered": done,
        "errors": sum(res["errors"].values()),
        "error_kinds": res["errors"],
        "throughput_qps": round(done / res["wall"], 1),
        "p50_ms": round(pct(lat, 50), 1),
        "p95_ms": round(pct(lat, 95), 1),
        "p99_ms": round(pct(lat, 99), 1),
        "server_cpu_s_per_question": round(per_q, 4),
        "ceiling_qps_from_cpu": round(cores / per_q, 1) if done else None,
        "client_cpu_s_per_question": round(client_cpu / done, 4) if done else None,
        "cores": cores,
        "load_average_after": os.getloadavg(),
        "server_ready_s": round(ready, 1),
        "server_memory": mem,
        "windows": windows(res["samples"], res["done"], proc.pid if proc else None),
    }
    print_windows(out["windows"])
    text = json.dumps(out, ensure_ascii=False)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
