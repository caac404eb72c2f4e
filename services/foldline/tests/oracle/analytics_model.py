"""Analytics in the independent checker: the figures analytics serves
(`GET /v1/analytics/summary`, `GET /v1/analytics/series`) recomputed from
the checker's own folds of the events topics and its own reading of the
dead-letter topics, written from services/analytics/src/design.md (rules 2,
3, 5 and 6, the metric tables) and sharing no code with the system.

- Events count once each, through the checker's gate (what its folds
  admitted), in the minute, the hour and all time of their `occurred_at`;
  a `CommandRejected` counts as `<domain>.commands_rejected`.
- A dead letter counts once per origin (its `dlq-original-*` headers, or
  its own place without them) per dead-letter partition, in the minute of
  its broker timestamp: `dlq.<domain>` and `dlq.<domain>.<cause>`.
- Latencies are HdrHistograms of 2 significant digits from 1 ms to a day:
  the checker keeps every sample and computes what such a histogram
  answers (count, p50, p90, p99, max), exactly.

Anomaly kinds added:
  analytics-figure    a sum, an approval or a latency summary (all time, or
                      of one minute's bucket) that differs from the
                      checker's own figure from the events
  analytics-phantom   a metric analytics serves that no admitted record
                      produced
"""

import math
import urllib.parse
from collections import defaultdict

from gate import REJECTED

MINUTE_MS = 60_000
MAX_LATENCY_MS = 24 * 3_600_000
ORDER_NOTICE_TEMPLATES = {"order.confirmed", "order.rejected", "order.refunded"}
DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET, DLQ_CAUSE = (
    "dlq-original-topic", "dlq-original-partition", "dlq-original-offset", "dlq-cause")


# ---------------------------------------------------------------- HdrHistogram, 2 significant digits

SUB_BUCKET_COUNT_MAGNITUDE = math.ceil(math.log2(2 * 10 ** 2))
SUB_BUCKET_HALF_COUNT_MAGNITUDE = SUB_BUCKET_COUNT_MAGNITUDE - 1
SUB_BUCKET_COUNT = 1 << SUB_BUCKET_COUNT_MAGNITUDE
SUB_BUCKET_MASK = SUB_BUCKET_COUNT - 1


def highest_equivalent(value):
    """The largest value a histogram of 2 significant digits (unit 1)
    cannot tell from `value`."""
    bucket = max((value | SUB_BUCKET_MASK).bit_length() - SUB_BUCKET_COUNT_MAGNITUDE, 0)
    sub_bucket = value >> bucket
    size = 1 << (bucket + (1 if sub_bucket >= SUB_BUCKET_COUNT else 0))
    lowest = sub_bucket << bucket
    return lowest + size - 1


def latency_summary(samples):
    """{count, p50, p90, p99, max} as analytics' histogram answers it."""
    if not samples:
        return {"count": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    ordered = sorted(min(max(sample, 0), MAX_LATENCY_MS) for sample in samples)

    def at(quantile):
        rank = max(math.ceil(quantile * len(ordered)), 1)
        return highest_equivalent(ordered[rank - 1])
    return {"count": len(ordered), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
            "max": highest_equivalent(ordered[-1])}


# ---------------------------------------------------------------- the figures

class Figures:
    """Sums and latency samples, all time and per minute bucket."""

    def __init__(self):
        self.sums = defaultdict(int)
        self.latencies = defaultdict(list)
        self.minutes = defaultdict(lambda: defaultdict(int))
        self.minute_latencies = defaultdict(lambda: defaultdict(list))

    def add(self, at, metric, amount=1):
        self.sums[metric] += amount
        if at is not None:
            self.minutes[at // MINUTE_MS * MINUTE_MS][metric] += amount

    def latency(self, at, metric, millis):
        self.latencies[metric].append(millis)
        self.minute_latencies[at // MINUTE_MS * MINUTE_MS][metric].append(millis)


def member(name):
    """A provider or template name as a metric family member."""
    return "".join(c.lower() if c.isascii() and c.isalnum() else "_" for c in name)[:32]


def fold_events(domain, records, figures, adapter):
    """A domain's admitted records into figures: a refusal counts as
    `<domain>.commands_rejected`, an event as its adapter says, given the
    facts its aggregate's earlier events left (`join`)."""
    joins = defaultdict(dict)
    for _, _, name, record in records:
        meta = record["metadata"]
        if name == REJECTED:
            figures.add(meta["occurred_at"], f"{domain}.commands_rejected")
        else:
            adapter(name.rsplit(".", 1)[1], meta, record, joins[meta["aggregate_id"]], figures)


def orders_adapter(kind, meta, record, join, figures):
    at = meta["occurred_at"]
    if kind in ("OrderConfirmed", "OrderPaymentRejected") and "placed_at" in join:
        figures.latency(at, "orders.order_to_payment_ms", at - join["placed_at"])
    if kind == "OrderPlaced":
        figures.add(at, "orders.placed")
        figures.add(at, f"orders.placed_value.{record['currency']}", record["total"])
        join.update(placed_at=at, currency=record["currency"])
    elif kind == "OrderConfirmed":
        figures.add(at, "orders.confirmed")
        figures.add(at, "orders.payment_approved")
        figures.add(at, f"orders.revenue.{join.get('currency', 'unknown')}", record["amount"])
    elif kind == "OrderPaymentRejected":
        figures.add(at, "orders.rejected")
        figures.add(at, "orders.payment_declined")
    elif kind in ("OrderRejected", "OrderCancelled", "OrderShipped"):
        figures.add(at, {"OrderRejected": "orders.rejected", "OrderCancelled": "orders.cancelled",
                         "OrderShipped": "orders.shipped"}[kind])


USERS_COUNTED = {"UserRegistered": "users.registered", "UserRegistrationRefused": "users.registration_refused",
                 "UserDeactivated": "users.deactivated", "PersonalDataErased": "users.erased"}


def users_adapter(kind, meta, record, join, figures):
    if kind in USERS_COUNTED:
        figures.add(meta["occurred_at"], USERS_COUNTED[kind])


PAYMENTS_COUNTED = {"CaptureFailed": "payments.capture_failed", "RefundFailed": "payments.refund_failed",
                    "AuthorizationVoided": "payments.voided"}
PAYMENTS_AMOUNTS = {"PaymentAuthorized": "payments.authorized_amount", "PaymentCaptured": "payments.captured_amount",
                    "RefundIssued": "payments.refunded_amount"}


def payments_adapter(kind, meta, record, join, figures):
    at = meta["occurred_at"]
    if kind in ("PaymentAuthorized", "PaymentDeclined") and "requested_at" in join:
        figures.latency(at, "payments.request_to_outcome_ms", at - join["requested_at"])
    if kind in PAYMENTS_AMOUNTS:
        figures.add(at, f"{PAYMENTS_AMOUNTS[kind]}.{record['currency']}", record["amount"])
    if kind in PAYMENTS_COUNTED:
        figures.add(at, PAYMENTS_COUNTED[kind])
    elif kind == "PaymentRequested":
        figures.add(at, "payments.requested")
        join["requested_at"] = at
    elif kind == "PaymentAuthorized":
        figures.add(at, "payments.authorized")
    elif kind == "PaymentDeclined":
        figures.add(at, "payments.declined")
        figures.add(at, f"payments.declined.{record['code']}")


def notify_adapter(kind, meta, record, join, figures):
    at = meta["occurred_at"]
    channel = join.get("channel", "unknown")
    if kind == "NotificationQueued":
        figures.add(at, "notify.queued")
        figures.add(at, f"notify.queued.{member(record['channel'])}")
        join["channel"] = member(record["channel"])
        if meta["causation_id"] != meta["command_id"] and record["template"] in ORDER_NOTICE_TEMPLATES:
            join["notice"] = member(record["template"])
    elif kind == "NotificationSent":
        figures.add(at, "notify.sent")
        figures.add(at, f"notify.sent.{channel}.{member(record['provider'])}")
        figures.latency(at, "notify.delivery_ms", record["latency_ms"])
        if "notice" in join:
            figures.add(at, "notify.order_notices_sent")
            figures.add(at, f"notify.order_notices_sent.{join['notice']}")
            figures.latency(at, "notify.order_to_notification_ms", record["latency_ms"])
    elif kind == "ProviderFailedOver":
        figures.add(at, "notify.failovers")
        figures.add(at, f"notify.failovers.{channel}.{member(record['from_provider'])}")
    elif kind == "NotificationFailed":
        figures.add(at, "notify.failed")
        figures.add(at, f"notify.failed.{channel}")


ADAPTERS = {"orders": orders_adapter, "users": users_adapter, "payments": payments_adapter, "notify": notify_adapter}


def fold_dead_letters(domain, dlq_topic, figures, stats):
    """Each distinct origin of each dead-letter partition once."""
    seen = set()
    for partition, records in dlq_topic.items():
        for raw in records:
            headers = {name: (value.decode(errors="replace") if value is not None else None)
                       for name, value in raw.headers.items()}
            if headers.get(DLQ_TOPIC) and headers.get(DLQ_PARTITION) and headers.get(DLQ_OFFSET):
                origin = f"{headers[DLQ_TOPIC]}/{headers[DLQ_PARTITION]}/{headers[DLQ_OFFSET]}"
            else:
                origin = f"{domain}.dlq/{partition}/{raw.offset} (no origin headers)"
            stats[f"{domain} dead letters"] += 1
            if (partition, origin) in seen:
                stats[f"{domain} dead letters of an origin counted already"] += 1
                continue
            seen.add((partition, origin))
            cause = headers.get(DLQ_CAUSE) or "unknown"
            figures.add(raw.timestamp, f"dlq.{domain}")
            figures.add(raw.timestamp, f"dlq.{domain}.{cause}")


def expected_figures(folds, dead_letters, stats):
    """The figures of `folds` (domain -> the fold's admitted records) and
    `dead_letters` (domain -> its dlq topic)."""
    figures = Figures()
    for domain, adapter in ADAPTERS.items():
        fold_events(domain, folds[domain], figures, adapter)
    for domain, topic in sorted(dead_letters.items()):
        fold_dead_letters(domain, topic, figures, stats)
    return figures


def approval(sums, approved, declined):
    a, d = sums.get(approved, 0), sums.get(declined, 0)
    return {"approved": a, "declined": d, "rate_basis_points": (a * 10_000 // (a + d)) if a + d else None}


def summary_view(figures):
    sums = {metric: value for metric, value in figures.sums.items()}
    return {
        "sums": sums,
        "revenue": {metric[len("orders.revenue."):]: value for metric, value in sums.items()
                    if metric.startswith("orders.revenue.")},
        "payment_approval": approval(sums, "orders.payment_approved", "orders.payment_declined"),
        "provider_approval": approval(sums, "payments.authorized", "payments.declined"),
        "latencies_ms": {metric: latency_summary(samples) for metric, samples in figures.latencies.items()},
    }


def dump_analytics(http_get, figures):
    """The summary, and one minute series per metric over the run's minutes."""
    dump = {"summary": http_get("/v1/analytics/summary"), "series": {}}
    minutes = sorted(figures.minutes) + sorted(figures.minute_latencies)
    if not minutes:
        return dump
    first, last = min(minutes), max(minutes)
    for metric in sorted(set(figures.sums) | set(figures.latencies)):
        query = urllib.parse.urlencode({"metric": metric, "resolution": "minute", "from": first, "to": last})
        dump["series"][metric] = http_get(f"/v1/analytics/series?{query}")
    return dump


def check_analytics(dump, figures, found):
    status, served = dump["summary"]
    if status != 200 or not isinstance(served, dict):
        found.add("analytics-figure", f"GET /v1/analytics/summary answers {status} {served}")
        return
    expected = summary_view(figures)
    served_sums = served.get("sums", {})
    for metric in sorted(set(served_sums) | set(expected["sums"])):
        if metric not in expected["sums"]:
            found.add("analytics-phantom", f"summary: {metric} = {served_sums[metric]}, which no admitted record produced")
        elif served_sums.get(metric) != expected["sums"][metric]:
            found.add("analytics-figure", f"summary: {metric} = {served_sums.get(metric)}; the events sum to "
                      f"{expected['sums'][metric]}")
    for field in ("revenue", "payment_approval", "provider_approval"):
        if served.get(field) != expected[field]:
            found.add("analytics-figure", f"summary: {field} = {served.get(field)}; the events make {expected[field]}")
    served_latencies = served.get("latencies_ms", {})
    for metric in sorted(set(served_latencies) | set(expected["latencies_ms"])):
        if metric not in expected["latencies_ms"]:
            found.add("analytics-phantom", f"summary: latency {metric} {served_latencies[metric]}, of no admitted record")
        elif served_latencies.get(metric) != expected["latencies_ms"][metric]:
            found.add("analytics-figure", f"summary: latency {metric} = {served_latencies.get(metric)}; the events' "
                      f"samples make {expected['latencies_ms'][metric]}")
    for metric, (status, body) in sorted(dump["series"].items()):
        if status != 200 or not isinstance(body, dict):
            found.add("analytics-figure", f"series of {metric} answers {status} {body}")
            continue
        for point in body.get("points", []):
            start = point.get("start_ms")
            if metric in figures.latencies:
                wanted = latency_summary(figures.minute_latencies.get(start, {}).get(metric, []))
                got = point.get("latency")
            else:
                wanted = figures.minutes.get(start, {}).get(metric, 0)
                got = point.get("value")
            if got != wanted:
                found.add("analytics-figure", f"series of {metric}, minute {point.get('start')}: {got}; the events "
                          f"of that minute make {wanted}")
