"""Closed-loop load from wrk (https://github.com/wg/wrk), a C load generator, instead of Python clients.

Why: on a small machine the load generator shares the cores with the service. The bench's Python
clients (``load.closed_loop``, httpx) spend far more CPU per request than wrk, CPU taken from the
purifier beside them. wrk is closed-loop only, so the open-loop runs (``load.open_loop``) stay in
Python; at half and 0.9 of saturation they send few enough requests that their cost is small.

One wrk thread with ``clients`` connections posts a target's bodies in turn (``load.Target``: multipart
PNGs to ``/classify``, or binary tensors to ``/v2/models/{model}/infer``), under the target's headers; a
Lua script counts 200, rejected (429/503) and other answers and prints the latency percentiles and
counts as one JSON line when wrk is done.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from apudae.training.bench.load import REJECTED, Target, run_summary

SCRIPT = """
local bodies, next_body = {}, 0
for i = 0, COUNT - 1 do
  local f = assert(io.open(DIR .. "/" .. i .. ".bin", "rb")); bodies[#bodies + 1] = f:read("*all"); f:close()
end
local threads = {}
function setup(thread) threads[#threads + 1] = thread end
function init(args) ok, rejected, other = 0, 0, 0 end
wrk.method = "POST"
for name, value in pairs(HEADERS) do wrk.headers[name] = value end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, PATH, nil, bodies[next_body])
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif REJECTED[status] then rejected = rejected + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local ok_total, rejected_total, other_total = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok"); rejected_total = rejected_total + t:get("rejected")
    other_total = other_total + t:get("other")
  end
  local e = summary.errors
  io.write(string.format('{"answered": %d, "rejected": %d, "errors": %d, "elapsed_us": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d}\\n', ok_total, rejected_total,
    other_total + e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def available() -> bool:
    """True when a ``wrk`` executable is on the PATH."""
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run saw, in the shape of ``load.LoadRun``: counts, elapsed s, latency percentiles (s)."""

    answered: int
    rejected: int
    errors: int
    elapsed: float
    p50: float
    p90: float
    p99: float

    def summary(self) -> dict:
        """See ``load.run_summary``."""
        return run_summary(self.answered, self.rejected, self.errors, self.elapsed, self.p50, self.p90, self.p99)


def write_script(target: Target, folder: Path) -> Path:
    """Write the target's bodies and the Lua script that posts them into ``folder``."""
    for i, body in enumerate(target.bodies):
        (folder / f"{i}.bin").write_bytes(body)
    rejected = "{" + ", ".join(f"[{code}] = true" for code in REJECTED) + "}"
    headers = "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items()) + "}"
    script = (f"local COUNT, DIR, PATH, REJECTED, HEADERS = {len(target.bodies)}, {json.dumps(str(folder))}, "
              f"{json.dumps(target.path)}, {rejected}, {headers}\n" + SCRIPT)
    (folder / "post.lua").write_text(script)
    return folder / "post.lua"


async def wrk_closed_loop(target: Target, clients: int, duration: float) -> WrkRun:
    """``clients`` connections kept busy for ``duration`` s by one wrk thread (timeout 120 s per request)."""
    with tempfile.TemporaryDirectory(prefix="apudae-wrk-") as folder:
        script = write_script(target, Path(folder))
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "120s", "-s", str(script),
            target.base_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed with status {process.returncode}: {err.decode(errors='replace')[-500:]}")
    line = next((l for l in out.decode().splitlines() if l.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out.decode(errors='replace')[-500:]}")
    r = json.loads(line)
    return WrkRun(r["answered"], r["rejected"], r["errors"], r["elapsed_us"] / 1e6, r["p50_us"] / 1e6,
                  r["p90_us"] / 1e6, r["p99_us"] / 1e6)
