"""The one module that talks to Prometheus: an instant query that must yield one number."""

from __future__ import annotations

import math

import httpx

from .redact import redact


class PrometheusError(Exception):
    """The query could not be answered (unreachable, bad query, ambiguous result)."""


def query_value(address: str, promql: str, timeout: float) -> float | None:
    """The single value of an instant query; None when the result is empty (no data)."""
    url = address.rstrip("/") + "/api/v1/query"
    try:
        response = httpx.get(url, params={"query": promql}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PrometheusError(redact(f"Prometheus unreachable at {address}: {exc}")) from None
    try:
        payload = response.json()
    except ValueError:
        raise PrometheusError(
            f"Prometheus answered HTTP {response.status_code} without JSON"
        ) from None
    if payload.get("status") != "success":
        raise PrometheusError(f"query failed: {payload.get('error', response.status_code)}")
    data = payload.get("data", {})
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _number(result[1])
    if kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(
                f"query returned {len(result)} series; aggregate it to one (sum, max, ...)"
            )
        return _number(result[0]["value"][1])
    raise PrometheusError(f"query returned a {kind}; an instant vector or scalar is needed")


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) else value


def known_metrics(address: str, timeout: float) -> set[str]:
    """Every metric name Prometheus has series for."""
    url = address.rstrip("/") + "/api/v1/label/__name__/values"
    try:
        response = httpx.get(url, timeout=timeout)
        payload = response.json()
    except httpx.HTTPError as exc:
        raise PrometheusError(redact(f"Prometheus unreachable at {address}: {exc}")) from None
    except ValueError:
        raise PrometheusError(
            f"Prometheus answered HTTP {response.status_code} without JSON"
        ) from None
    if payload.get("status") != "success":
        raise PrometheusError(f"listing metric names failed: {payload.get('error')}")
    return {str(name) for name in payload.get("data") or []}
