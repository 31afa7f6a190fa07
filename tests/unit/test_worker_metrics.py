"""Quantiles estimated from Prometheus histograms (used by the demo and the stream benchmark)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from worker.metrics import histogram_quantile


def test_histogram_quantile_interpolates_like_promql() -> None:
    histogram = Histogram("h", "test", buckets=(0.01, 0.1, 1.0), registry=CollectorRegistry())
    assert histogram_quantile(histogram, 0.5) is None
    for value in [0.005] * 50 + [0.05] * 40 + [0.5] * 10:
        histogram.observe(value)
    # 50 of 100 in (0, 0.01]: the median is that bucket's upper edge
    assert histogram_quantile(histogram, 0.5) == 0.01
    # the 95th is half-way through the 10 observations in (0.1, 1.0]
    assert abs(histogram_quantile(histogram, 0.95) - 0.55) < 1e-9
