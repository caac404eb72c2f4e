"""The order notices (notify) in the independent checker, written from
services/notify/src/hooks/design.md and ARCHITECTURE.md (*Notify*),
sharing no code with the system.

Which notices must exist it derives from the orders and payments folds
alone: one per admitted `OrderConfirmed`, `OrderRejected` (not for
`customer_unknown`: the saga judged that no such user exists) and
`OrderPaymentRejected` of an order, and `RefundIssued` of its payment;
email always, SMS when the customer registered with a phone. A notice's
notification id is UUIDv5(notices namespace, "<event id>/<channel>"), so
the checker names every expected notification itself. What was delivered
it asks the fake providers (`GET /v1/fake/accepted`: acceptances per
notification id; both honour `Idempotency-Key`, so ARCHITECTURE.md allows
each notification to be accepted at most once by each), and what notify
recorded it folds from `notify.events` through its own gate.

Anomaly kinds added:
  notice-lost        an expected notification no provider accepted
  notice-twice       a notification accepted twice by one provider, sent
                     by two, or recorded sent twice in notify.events
  notice-phantom     a notification delivered or queued that no admitted
                     event of the saga calls for (a duplicate's, a stale
                     decision's, a rejected command's)
  notice-unsettled   a queued notification with no recorded outcome (sent
                     or failed) at quiescence
"""

import json
import urllib.request
import uuid
from collections import Counter, defaultdict

from gate import REJECTED, admitted

NOTICES_NAMESPACE = uuid.UUID(int=0x0D1CE5A13F7B4C2E8A916B0F2D4E7C35)
NNS = "foldline.notify."
EVENTS = {NNS + name for name in (
    "NotificationQueued", "ProviderFailedOver", "NotificationSent", "NotificationAttemptFailed",
    "NotificationFailed")}
ORDER_NOTICES = {
    "foldline.orders.OrderConfirmed": "order.confirmed",
    "foldline.orders.OrderRejected": "order.rejected",
    "foldline.orders.OrderPaymentRejected": "order.rejected",
}
REFUND_NOTICE = ("foldline.payments.RefundIssued", "order.refunded")


def notification_id(event_id, channel):
    return str(uuid.uuid5(NOTICES_NAMESPACE, f"{event_id}/{channel}"))


def customer_phones(operations):
    """user id -> whether its registration carried a phone, for every
    registration an answer named (201: the user, 202: its user id)."""
    phones = {}
    for invoke, completion in operations:
        if invoke["f"] != "register" or completion["type"] != "ok":
            continue
        body = completion.get("body") if isinstance(completion.get("body"), dict) else {}
        user = body.get("id") if completion.get("status") == 201 else body.get("user_id")
        if completion.get("status") in (201, 202) and isinstance(user, str):
            request = invoke.get("request") or {}
            phones[user] = bool(request.get("phone"))
    return phones


def expected_notices(orders, payments, users, phones):
    """notification id -> (channel, template, order id, cause) of every
    notification the saga's admitted events call for."""
    expected = {}
    order_of_payment = {pid: slot["state"]["order_id"] for pid, slot in payments.payments().items()}
    causes = []
    for settled in orders.settled.values():
        template = ORDER_NOTICES.get(settled["event_type"])
        if template:
            causes.append((settled, template, settled["aggregate_id"]))
    for settled in payments.settled.values():
        if settled["event_type"] == REFUND_NOTICE[0]:
            causes.append((settled, REFUND_NOTICE[1], order_of_payment.get(settled["aggregate_id"])))
    for settled, template, order_id in causes:
        slot = orders.aggregates.get(order_id)
        order = slot["state"] if slot else None
        if order is None:
            continue
        if settled["event_type"] == "foldline.orders.OrderRejected" and (order.get("rejection") or {}).get("code") == "customer_unknown":
            continue
        user = users.get(order["customer_id"])
        if user is None or user["state"]["status"] == "erased" or order["customer_id"] not in phones:
            # Not a customer of this run's registrations, or erased:
            # recorded skipped (hooks/design.md), nothing to expect.
            continue
        channels = ["email"] + (["sms"] if phones[order["customer_id"]] else [])
        for channel in channels:
            expected[notification_id(settled["event_id"], channel)] = (channel, template, order_id, settled["event_id"])
    return expected


def fetch_accepted(url):
    with urllib.request.urlopen(url.rstrip("/") + "/v1/fake/accepted", timeout=10) as response:
        return json.load(response)


def fold_notify(events, decode, undecodable, anomalies, stats):
    """notification id -> Counter of admitted notify event names."""
    recorded = defaultdict(Counter)
    for partition, raw, name, record in admitted(events, decode, undecodable, EVENTS, anomalies, stats,
                                                 label="notify ", topic="notify.events"):
        if name != REJECTED:
            recorded[record["metadata"]["aggregate_id"]][name] += 1
    return recorded


def check_notices(expected, accepted_by_channel, recorded, found):
    """Every expected notification accepted exactly once by its channel's
    provider; nothing else delivered or queued; one outcome per queued
    notification."""
    for channel, accepted in accepted_by_channel.items():
        for notification, times in sorted(accepted["accepted"].items()):
            if notification not in expected:
                found.add("notice-phantom", f"the {channel} provider accepted {notification}, a notice no admitted event calls for")
            elif times > 1:
                found.add("notice-twice", f"the {channel} provider accepted {notification} {times} times "
                          f"({expected[notification][1]} of order {expected[notification][2]})")
    others = {channel: set(accepted["accepted"]) for channel, accepted in accepted_by_channel.items()}
    for notification, (channel, template, order_id, cause) in sorted(expected.items()):
        if notification not in others.get(channel, set()):
            found.add("notice-lost", f"{template} ({channel}) of order {order_id} (event {cause}): notification "
                      f"{notification} reached no provider")
        for other, ids in others.items():
            if other != channel and notification in ids:
                found.add("notice-twice", f"{notification} ({channel}) was accepted by the {other} provider too")
    for notification, names in sorted(recorded.items()):
        if NNS + "NotificationQueued" in names and notification not in expected:
            found.add("notice-phantom", f"notify.events queued {notification}, a notice no admitted event calls for")
        if names[NNS + "NotificationQueued"] > 1 or names[NNS + "NotificationSent"] > 1:
            found.add("notice-twice", f"notify.events recorded {notification}: {dict(names)}")
        if names[NNS + "NotificationSent"] + names[NNS + "NotificationFailed"] != 1:
            found.add("notice-unsettled", f"notify.events recorded {notification} with no single outcome: {dict(names)}")
    for notification in sorted(set(expected) - set(recorded)):
        found.add("notice-lost", f"{notification} ({expected[notification][1]} of order {expected[notification][2]}) "
                  "was never queued in notify.events")
