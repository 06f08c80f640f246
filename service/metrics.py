"""Prometheus metrics of the service, one registry per app, named per Prometheus practice.

Prefix ``apudae_``, base units (seconds), ``_total`` on counters, histograms (which aggregate
across replicas) rather than summaries, and only low-cardinality labels: route templates,
status codes, model names, operations and rejection reasons.

Drift monitoring: ``apudae_input_reconstruction_error`` is the per-image reconstruction error
(eq. 7) *before* purification, bucketed with the calibration histogram's fixed edges
(``models.calibration.ERROR_BUCKETS``); the calibration's mu and sigma are exported as gauges
and ``apudae_input_outliers_total`` counts inputs with z > 3, so PromQL rules in
``deploy/prometheus/`` compare the live distribution with the calibration across replicas.

Detection (models/detector.py): ``apudae_detector_checked_images_total`` counts the images the detector
judged and ``apudae_flagged_images_total`` those it flagged, per model, false-positive rate used and (for
flags) reason ("score": the reconstruction error above the threshold); ``apudae_detector_false_positive_rate``
exports each stored rate as a number, so the drift alert compares the flagged share with the rate in use.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               disable_created_metrics)

from apudae.models.calibration import ERROR_BUCKETS, Calibration

if TYPE_CHECKING:
    from apudae.service.engine import Purified, Scored

OUTLIER_Z = 3.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STEP_BUCKETS = (0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100)
disable_created_metrics()  # no *_created series: they only add clutter to the dashboards


class ServiceMetrics:
    """All metric families of one app, registered in their own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux)
        self.requests = Counter("apudae_http_requests_total", "HTTP requests answered, by route template and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("apudae_http_request_duration_seconds", "HTTP request latency",
                                         ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("apudae_batch_queue_wait_seconds", "time a request waited before its batch ran",
                                    ["model", "operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("apudae_batch_size_images", "images per computed batch",
                                    ["model", "operation"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("apudae_batch_compute_duration_seconds", "compute time of one batch",
                                       ["model", "operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("apudae_queue_depth_images", "images waiting in the batcher",
                                 ["model", "operation"], registry=r)
        self.in_flight = Gauge("apudae_requests_in_flight", "requests to the model routes admitted and not yet "
                               "answered (their uploads being read, queued or computed)", registry=r)
        self.rejections = Counter("apudae_rejected_requests_total",
                                  "requests refused: queue_full (429), deadline or shutting_down (503)",
                                  ["reason"], registry=r)
        self.steps = Histogram("apudae_purification_steps", "purification steps taken per image",
                               ["model"], buckets=STEP_BUCKETS, registry=r)
        self.input_error = Histogram("apudae_input_reconstruction_error",
                                     "per-image DAE reconstruction error (eq. 7) of inputs, before purification",
                                     ["model"], buckets=ERROR_BUCKETS, registry=r)
        self.outliers = Counter("apudae_input_outliers_total", f"inputs whose error z-score exceeds {OUTLIER_Z:g}",
                                ["model"], registry=r)
        self.calibration_mean = Gauge("apudae_calibration_error_mean", "calibration mu of the clean error",
                                      ["model"], registry=r)
        self.calibration_stddev = Gauge("apudae_calibration_error_stddev", "calibration sigma of the clean error",
                                        ["model"], registry=r)
        self.detector_checked = Counter("apudae_detector_checked_images_total",
                                        "images judged by the detector, by false-positive rate used",
                                        ["model", "fpr"], registry=r)
        self.flagged = Counter("apudae_flagged_images_total", "images the detector flagged, by false-positive "
                               "rate used and reason (score: reconstruction error above the threshold)",
                               ["model", "reason", "fpr"], registry=r)
        self.detector_rate = Gauge("apudae_detector_false_positive_rate", "a stored false-positive rate of the "
                                   "detector's thresholds (the fpr label as a number)", ["model", "fpr"], registry=r)
        self.models_ready = Gauge("apudae_models_ready", "bundles loaded and warmed up", registry=r)
        self.evaluation_jobs = Counter("apudae_evaluation_jobs_total", "finished /evaluate jobs, by status",
                                       ["status"], registry=r)
        for reason in ("queue_full", "deadline", "shutting_down"):
            self.rejections.labels(reason)

    def set_calibration(self, model: str, calibration: Calibration) -> None:
        """Export one bundle's calibration baseline (and its detector's rates) and create its series at zero."""
        self.calibration_mean.labels(model).set(calibration.mu)
        self.calibration_stddev.labels(model).set(calibration.sigma)
        self.input_error.labels(model)
        self.outliers.labels(model)
        for rate in calibration.detector.rates if calibration.detector else ():
            self.detector_rate.labels(model, f"{rate:g}").set(rate)
            self.detector_checked.labels(model, f"{rate:g}")
            self.flagged.labels(model, "score", f"{rate:g}")

    def observe_detection(self, model: str, fpr: float, flags: Iterable[bool]) -> None:
        """Count the images the detector judged at ``fpr`` and those it flagged (reason "score")."""
        flags = list(flags)
        self.detector_checked.labels(model, f"{fpr:g}").inc(len(flags))
        self.flagged.labels(model, "score", f"{fpr:g}").inc(sum(flags))

    def observe_inputs(self, model: str, scores: Iterable[Scored]) -> None:
        """Record the pre-purification errors of served images (drift monitoring)."""
        histogram, outliers = self.input_error.labels(model), self.outliers.labels(model)
        for score in scores:
            histogram.observe(score.error)
            if score.z_score > OUTLIER_Z:
                outliers.inc()

    def observe_purified(self, model: str, purified: Iterable[Purified]) -> None:
        """Record input errors and steps of purified images."""
        purified = list(purified)
        self.observe_inputs(model, (p.before for p in purified))
        steps = self.steps.labels(model)
        for p in purified:
            steps.observe(p.steps)
