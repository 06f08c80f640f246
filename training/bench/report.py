"""docs/PERFORMANCE.md from a bench result: the measured tables between two markers.

Text outside ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` (analysis, the optimisation log) is kept
when the file already has the markers; otherwise the whole file is written.
"""
from __future__ import annotations

import time
from pathlib import Path

from apudae.training.bench.targets import evaluate

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _spread(d: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not d:
        return "–"
    return f"{d['median'] * scale:.{digits}f} ({d['low'] * scale:.{digits}f}–{d['high'] * scale:.{digits}f})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def _machine(result: dict) -> list[str]:
    m = result["machine"]
    return [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on **{m['cpu']}**, {m['cores']} cores "
            f"({m['torch_threads']} torch threads), GPU: {m['gpu'] or 'none'}, device `{m['device']}`; "
            f"Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}; "
            f"commit `{m['git_commit'][:12]}`.", "", f"Command: `{m['command']}`", "",
            "Every figure is the median of repeated runs with (min–max) in brackets.", ""]


def _targets(result: dict) -> list[str]:
    rows = []
    for c in evaluate(result):
        verdict = {True: "met", False: "**not met**", None: "not measured"}[c["met"]]
        value = "–" if c["value"] is None else f"{c['value']:.3f}"
        limit = ("≤ " if c["at_most"] else "≥ ") + f"{c['limit']:g}"
        rows.append([c["target"], value, limit, verdict, c["detail"]])
    if not rows:
        return ["## Targets", "", "None of the measured sections decides a target.", ""]
    return ["## Targets", ""] + _table(["target", "value", "limit", "verdict", "how"], rows)


def _peak(result: dict) -> list[str]:
    rows = [[name, _spread(d, 1e-9), d.get("matrix_size", "")] for name, d in result["peak"].items()]
    return ["## Machine peak (same run)", ""] + _table(["rate", "G per s", "matrix size"], rows)


def _flops(bundle: dict) -> list[str]:
    if not bundle["flops"]:
        return []
    rows = [[v, f"{f['dae_step'] / 1e6:.1f}", f"{f['ideal_per_image'] / 1e9:.3f}",
             f"{f['adversarial_per_image'] / 1e9:.3f} ({f['adversarial_steps']} steps)",
             f"{f['clean_per_image'] / 1e9:.3f} ({f['clean_steps']} steps)", f"{f['classifier'] / 1e6:.2f}"]
            for v, f in bundle["flops"].items()]
    lines = ["### FLOPs of one purification of one image", ""] + _table(
        ["variant", "DAE fwd + input-grad MFLOP", "ideal GFLOP (n steps + classifier)", "counted, adversarial GFLOP",
         "counted, clean GFLOP", "classifier MFLOP"], rows)
    pool = bundle.get("pool_flops")
    if pool:
        lines += [f"Whole pool as one batch of {pool['batch']} (default variant): adversarial "
                  f"{pool['adversarial_per_image'] / 1e9:.3f} GFLOP and {pool['adversarial_mean_steps']:.2f} steps per "
                  f"image, clean {pool['clean_per_image'] / 1e9:.3f} GFLOP and {pool['clean_mean_steps']:.2f} steps "
                  f"(ratio {pool['clean_to_adversarial']:.2f}).", ""]
    return lines


def _sweep(bundle: dict, peak: float, precision: str) -> list[str]:
    floor = {r["batch"]: r for r in bundle["floor"]}
    step_flops = next(iter(bundle["flops"].values()), {}).get("dae_step", 0)
    lines = []
    for variant, rows in bundle["engine"].items():
        loop = {r["batch"]: r for r in bundle["loop"].get(variant, [])}
        adv = {r["batch"]: r for r in rows if r["kind"] == "adversarial"}
        clean = {r["batch"]: r for r in rows if r["kind"] == "clean"}
        counted = bundle["flops"].get(variant, {})
        table = []
        for b in sorted(adv):
            a, c, f, lo = adv[b], clean.get(b), floor.get(b), loop.get(b)
            # this batch's mean steps, the error before (a DAE forward), the error after (another, for the
            # images that moved) and the classifier
            forwards = 1 + a.get("moved_share", 1.0)
            per_image = (a["mean_steps"] * counted.get("dae_step", 0) + forwards * counted.get("dae_forward", 0)
                         + counted.get("classifier", 0))
            achieved = a["images_per_s"]["median"] * per_image
            table.append([b, _spread(f and f["seconds"], 1e3, 2),
                          f"{step_flops * b / f['seconds']['median'] / 1e9:.1f}" if f else "–",
                          _spread(lo and lo["seconds"], 1e3, 0), _spread(lo and lo.get("paired_floor_seconds"), 1e3, 2),
                          f"{lo['overhead_ratio']:.3f}" if lo and lo["overhead_ratio"] else "–",
                          _spread(a["images_per_s"]), f"{a['mean_steps']:.1f}", f"{achieved / 1e9:.1f}",
                          f"{100 * achieved / peak:.0f}%", _spread(c and c["images_per_s"]),
                          f"{c['mean_steps']:.1f}" if c else "–",
                          f"{c['seconds']['median'] / a['seconds']['median']:.2f}" if c else "–"])
        lines += [f"### Offline throughput, variant {variant}", ""] + _table(
            ["batch", "floor ms/step", "floor GFLOP/s", "loop ms", "paired floor ms/step",
             "loop / (steps × paired floor)", "engine PGD images/s",
             "steps", "achieved GFLOP/s", f"of {precision} matmul peak", "engine clean images/s", "steps",
             "clean/PGD cost"], table)
    return lines


def _candidates(bundle: dict) -> list[str]:
    if not bundle.get("candidates"):
        return []
    rows, base = [], {}
    for r in bundle["candidates"]:
        key = (r["layout"], r["precision"])
        if key == ("nchw", "fp32"):
            base[r["batch"]] = r["seconds"]["median"]
        rows.append([r["batch"], f"{key[0]} {key[1]}", _spread(r["seconds"], 1e3, 2),
                     f"×{base[r['batch']] / r['seconds']['median']:.2f}", f"{100 * r['sign_agreement']:.2f}%"])
    return ["### Candidate layouts and precisions of the bare step", ""] + _table(
        ["batch", "candidate", "ms per step", "speed-up vs NCHW fp32", "gradient signs equal to NCHW fp32"], rows)


def _engine_candidates(bundle: dict) -> list[str]:
    p = bundle.get("engine_candidates")
    if not p or "skipped" in p:
        return []
    rows = [[f"{r['layout']} {r['precision']}", _spread(r["images_per_s"]), f"×{r['speedup']:.2f}",
             f"{100 * r['clean_accuracy']:.2f}%", f"{100 * r['pgd_accuracy']:.2f}% ({r['pgd_delta_points']:+.2f})",
             f"{r['clean_differ']} / {r['pgd_differ']}"] for r in p["candidates"]]
    return ["### Engine candidates end to end", "", f"{p['images']} test images; attack: {p['attack']}; "
            f"throughput on PGD images at batch {p['batch']}; `{p['settings']}`.", ""] + _table(
        ["candidate", "images/s", "speed-up", "clean accuracy", "PGD accuracy (Δ points)",
         "predictions differing from NCHW fp32 (clean / PGD)"], rows)


SERVED_KINDS = {"batched": "multipart PNG", "unbatched": "multipart PNG", "tensor": "binary UINT8 tensor",
                "photo": "clean JPEG photos (multipart)"}
"""Served sweep (a key of the bench result's ``served``) -> what its requests were."""


def _served(served: dict) -> list[str]:
    lines = ["## Served throughput and latency", "", f"Bundle `{served['bundle']}`, {served['inputs']}; "
             "latencies in ms, open-loop latency counted from each request's scheduled departure; compute duty: "
             "the share of the run the compute thread ran batches, in-batch images/s: images per second of that "
             "compute (served images/s = duty x in-batch rate, to set beside the offline engine); CPU: the "
             "service process's and the load generator's CPU time (both on this machine's cores), and their sum "
             "as a share of all cores over the run.", ""]
    generators = next(served[k] for k in SERVED_KINDS if k in served).get("closed_loop_generator", "python")
    lines += [f"Load generators: closed loop {'wrk (C, one thread)' if generators == 'wrk' else 'Python (httpx)'}, "
              "open loop Python (httpx).", ""]
    for label, kind in SERVED_KINDS.items():
        if label not in served:
            continue
        s = served[label]
        lines += [f"### {kind} to `{s['path']}`, max batch {s['max_batch_size']} (wait {s['max_batch_wait'] * 1e3:g} ms): saturation "
                  f"{s['saturation_throughput']:.1f} images/s", ""]
        for mode, key in (("closed loop", "clients"), ("open loop", "rate")):
            rows = [[f"{r[key]:g}" if key == "clients" else f"{r[key]:.1f}", _spread(r["throughput"]),
                     _spread(r["p50"], 1e3, 0), _spread(r["p90"], 1e3, 0), _spread(r["p99"], 1e3, 0),
                     _spread(r["mean_batch"]), _spread(r.get("compute_duty"), 100, 0), _spread(r.get("in_batch_rate")),
                     _spread(r["rejected_share"], 100, 1), r["errors"],
                     _spread(r.get("server_cpu_per_image"), 1e3, 1), _spread(r.get("client_cpu_per_request"), 1e3, 1),
                     _spread(r.get("cpu_busy_share"), 100, 0)]
                    for r in s["closed_loop" if key == "clients" else "open_loop"]]
            lines += [f"{mode}:", ""] + _table([key if key == "clients" else "rate req/s", "images/s", "p50", "p90",
                                                "p99", "mean batch", "compute duty %", "in-batch images/s",
                                                "rejected %", "errors", "service CPU ms/image",
                                                "load generator CPU ms/request", "CPU busy %"], rows)
    return lines


def render(result: dict) -> str:
    """The measured part of docs/PERFORMANCE.md."""
    lines = [BEGIN, "", "## Measurements", ""] + _machine(result) + _targets(result) + _peak(result)
    for name, bundle in result["bundles"].items():
        precision = bundle.get("precision", "fp32")
        peak = result["peak"].get(f"{precision}_matmul_flops", result["peak"]["fp32_matmul_flops"])["median"]
        lines += [f"## Bundle `{name}`", "", f"Inputs: {bundle['inputs']}; adversarial: {bundle['attack']}. "
                  f"Settings: `{bundle['default_settings']}`; purification precision {precision} (floor, loop and "
                  "engine).", ""] + _flops(bundle) + _sweep(bundle, peak, precision) + _candidates(bundle) \
            + _engine_candidates(bundle)
    if result.get("served"):
        lines += _served(result["served"])
    return "\n".join(lines + [END, ""])


def write_report(result: dict, path: Path) -> None:
    """Write (or update between the markers) the markdown report at ``path``."""
    body = render(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        body = old[:old.index(BEGIN)] + body.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        covers = ("purification variants, bundle " if result.get("options", {}).get("sweep_variants") else "bundles ")
        body = f"# Performance: {covers}{', '.join(result['bundles'])}\n\nGenerated by `apudae bench` (training/bench/).\n\n" + body
    path.write_text(body)
