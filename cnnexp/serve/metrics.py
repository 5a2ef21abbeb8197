"""What GET /metrics shows an operator, in Prometheus' text format through the official client library
(prometheus-client): requests by route and status, request and forward-pass seconds, batch sizes, images
refused by reason, and which model answers (an info metric: a gauge of 1 whose labels are the run,
checkpoint and epoch).

Each app has its own registry: importing cnnexp registers nothing in prometheus-client's global one.
With several workers the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh folder before they start
(prometheus-client's multiprocess mode): each worker writes its values there, and /metrics adds up every
worker's, so a scrape that lands on any worker sees the whole service."""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ROUTES = ("/", "/health", "/info", "/metrics", "/predict")  # any other path is counted as "other"
REFUSALS = ("too_large", "not_an_image", "no_face")
ONE_RUN = "run"  # the `run` label of a service of one run (named runs: each run's name)
INFO_LABELS = ("run", "folder", "checkpoint", "epoch", "model", "backend")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self):
        shared = os.environ.get(MULTIPROCESS_ENV)
        own = None if shared else CollectorRegistry()  # multiprocess: values live in files, read by the collector
        self.requests = Counter("cnnexp_requests", "HTTP requests answered, by route and status", ["route", "status"],
                                registry=own)
        self.latency = Histogram("cnnexp_request_seconds", "Seconds from a request's arrival to its answer, by route",
                                 ["route"], buckets=SECONDS, registry=own)
        self.model_seconds = Histogram("cnnexp_model_seconds", "Seconds of one forward pass (a batch), by run", ["run"],
                                       buckets=SECONDS, registry=own)
        self.batch_size = Histogram("cnnexp_batch_size", "Images in one forward pass, by run", ["run"],
                                    buckets=BATCH_SIZES, registry=own)
        self.refused = Counter("cnnexp_images_refused", "Images refused, by reason: too_large (max_upload_mb or "
                               "max_pixels), not_an_image (undecodable or a format not opened), no_face (detect_face)",
                               ["reason"], registry=own)
        self.model = Gauge("cnnexp_model_info", "The served model (1): its run name, run folder, checkpoint, epoch, "
                           "model and backend", INFO_LABELS, multiprocess_mode="max", registry=own)
        for reason in REFUSALS:  # every reason shows from the start, at 0
            self.refused.labels(reason)
        self.registry = own or CollectorRegistry()
        if shared:
            MultiProcessCollector(self.registry, shared)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def refuse(self, reason: str) -> None:
        self.refused.labels(reason).inc()

    def forward_passes(self, name: str | None):
        """What a run's batcher calls after each forward pass: (seconds, images)."""
        seconds_of, size_of = self.model_seconds.labels(name or ONE_RUN), self.batch_size.labels(name or ONE_RUN)

        def observe(seconds: float, images: int) -> None:
            seconds_of.observe(seconds)
            size_of.observe(images)

        return observe

    def describe(self, name: str | None, info: dict) -> None:
        """The info metric of one loaded run (`ServedModel.info()`)."""
        self.model.labels(name or ONE_RUN, info["run"] or "", info["checkpoint"], str(info["epoch"]), info["model"],
                          info["backend"]).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
