"""The performance targets, checked against one bench result (the served bundle, its default variant)."""
from __future__ import annotations


def _median(row: dict, key: str) -> float:
    return row[key]["median"]


def _by_batch(rows: list[dict], kind: str | None = None) -> dict[int, dict]:
    return {row["batch"]: row for row in rows if kind is None or row.get("kind") == kind}


def _check(name: str, value: float | None, limit: float, at_most: bool, detail: str) -> dict:
    met = None if value is None else (value <= limit if at_most else value >= limit)
    return {"target": name, "value": value, "limit": limit, "at_most": at_most, "met": met, "detail": detail}


def evaluate(result: dict) -> list[dict]:
    """One verdict per target: value, limit, met (None when not measured) and how the value was formed."""
    served = result.get("served")
    name = served["bundle"] if served else next(iter(result["bundles"]))
    bundle = result["bundles"][name]
    checks = _candidate_checks(bundle)
    if "pool_flops" in bundle:
        pool = bundle["pool_flops"]
        checks.insert(0, _check("clean image <= 50% of adversarial (FLOPs)", pool["clean_to_adversarial"], 0.5,
                                True, f"counted FLOPs per image, pool of {pool['batch']} as one batch: clean "
                                f"{pool['clean_mean_steps']:.2f} steps, adversarial {pool['adversarial_mean_steps']:.2f}"))
    if not bundle.get("engine"):
        return checks
    variant = next(iter(bundle["engine"]))
    adversarial = _by_batch(bundle["engine"][variant], "adversarial")
    clean = _by_batch(bundle["engine"][variant], "clean")
    loop = bundle["loop"].get(variant, [])
    worst = max((row["overhead_ratio"] for row in loop if row["overhead_ratio"]), default=None)
    ratios = [_median(clean[b], "seconds") / _median(adversarial[b], "seconds") for b in clean if b in adversarial]
    checks = [_check("loop <= 1.1 x steps x floor", worst, 1.1, True,
                     f"{name}/{variant}: worst batch size of the median per-call purify() time / "
                     "(its mean steps x the bare step timed beside it)"),
              _check("clean image <= 50% of adversarial", sum(ratios) / len(ratios) if ratios else None, 0.5, True,
                     "engine seconds clean / adversarial, mean over batch sizes")] + checks
    return checks + (_served_checks(served, adversarial) if served else [])


def _served_checks(served: dict, adversarial: dict[int, dict]) -> list[dict]:
    best_batch = max(adversarial, key=lambda b: _median(adversarial[b], "images_per_s"))
    best = _median(adversarial[best_batch], "images_per_s")
    engine = f"served saturation / engine best ({best:.1f} images/s at batch {best_batch})"
    checks = []
    if "batched" in served:
        gain = best / _median(adversarial[min(adversarial)], "images_per_s")
        batched, unbatched = served["batched"], served["unbatched"]
        needed = 0.8 * gain * unbatched["saturation_throughput"]
        checks += [_check("served PNG >= 70% of offline best", batched["saturation_throughput"] / best, 0.70, False,
                          f"multipart PNG to /classify: {engine}"),
                   _check("batching gain", batched["saturation_throughput"] / needed if needed else None, 1.0, False,
                          f"served batched / (0.8 x engine best/batch-1 ratio {gain:.2f} x served max-batch-1 "
                          f"{unbatched['saturation_throughput']:.1f} images/s)"),
                   _latency_check(batched, adversarial, "PNG")]
    if "tensor" in served:
        tensor = served["tensor"]
        checks += [_check("served tensor >= 85% of offline best", tensor["saturation_throughput"] / best, 0.85, False,
                          f"binary UINT8 tensor to /v2 infer: {engine}"),
                   _latency_check(tensor, adversarial, "tensor")]
    return checks


def _candidate_checks(bundle: dict) -> list[dict]:
    candidates = bundle.get("engine_candidates", {}).get("candidates", [])
    bf16 = next((row for row in candidates if row["precision"] == "bf16"), None)
    if not bf16:
        return []
    return [_check("bf16 robust accuracy within 0.5 points", abs(bf16["pgd_delta_points"]), 0.5, True,
                   f"|{bf16['layout']} bf16 - NCHW fp32| PGD accuracy on {bundle['engine_candidates']['images']} "
                   f"images; engine speed-up x{bf16['speedup']:.2f}")]


def _latency_check(batched: dict, adversarial: dict[int, dict], kind: str) -> dict:
    name = f"{kind} p99 at half load <= 3 x full batch"
    half = [row for row in batched["open_loop"] if row["p99"]]
    if not half:
        return _check(name, None, 3.0, True, "no open-loop run")
    target_rate = batched["saturation_throughput"] / 2
    row = min(half, key=lambda r: abs(r["rate"] - target_rate))
    batch = max((b for b in adversarial if b <= batched["max_batch_size"]), default=min(adversarial))
    compute = _median(adversarial[batch], "seconds")
    return _check(name, row["p99"]["median"] / compute, 3.0, True,
                  f"p99 {row['p99']['median']:.3f} s at {row['rate']:.1f} req/s over the offline time of a "
                  f"batch of {batch} ({compute:.3f} s)")
