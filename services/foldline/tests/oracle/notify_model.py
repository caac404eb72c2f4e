"""Notify in the independent checker: its own model of a notification
stream (written from services/notify/src/domain/decider.rs and the records
of schemas/avro/notify), notify's read models compared row by row and field
by field with that fold, and the order notices judged against the contract
of services/notify/src/hooks/design.md, sharing no code with the system.

Which notices must exist it derives from the orders and payments folds
alone: one per admitted `OrderConfirmed`, `OrderRejected` and
`OrderPaymentRejected` of an order, and `RefundIssued` of its payment;
email always, SMS when the customer registered with a phone. A notice's
notification id is UUIDv5(notices namespace, "<event id>/<channel>"), so
the checker names every expected notification itself. What became of each
notice notify records in `notify_order_notices` (`GET
/v1/notifications/notices?order_id=`); hooks/design.md says what it may be:

  the customer is active or deactivated   queued, email (+ SMS), to the
                                          address they registered ("a
                                          deactivated user: notified")
  the customer erased their data          skipped `recipient_erased` when
                                          the relay's read came after the
                                          erasure (the contact row folded
                                          it, or the data key was already
                                          destroyed); queued when it came
                                          before both
  the saga judged `customer_unknown`      skipped `recipient_unknown`, or
                                          any of the above once the user
                                          is folded
  no such user at all                     skipped `recipient_unknown`

The relay's read lies after the causing event was logged (its broker
timestamp) and before the outcome row (`recorded_at`); the erasure's key
destruction lies after the `PersonalDataErased` record was logged and
before its follow-up `ReleaseEmail` was produced (users' follow-ups: the
key first, then the release). So a notice skipped as erased whose row was
recorded before the erasure was even logged, and a notice queued whose
causing event was logged after that release (its read surely found the key
destroyed), break the contract; anything between is the race window the
design allows. What was delivered the checker asks the fake providers
(`GET /v1/fake/accepted`: both honour `Idempotency-Key`, so each
notification is accepted at most once by each).

Anomaly kinds added:
  notice-lost           a notification that must exist reached no provider,
                        or was never queued in notify.events
  notice-twice          a notification accepted twice by one provider, sent
                        by two, or queued or sent twice in notify.events
  notice-phantom        a notification delivered or queued that no admitted
                        event of the saga calls for, or whose notice was
                        recorded skipped
  notice-unsettled      a queued notification with no single recorded
                        outcome (sent or failed) at quiescence
  notice-outcome        a notify_order_notices row missing, for an event that
                        calls for no notice, or not an outcome the contract
                        allows (a deactivated or active customer skipped, a
                        skip as erased of a customer never erased or before
                        the erasure was logged, other notification ids)
  notice-to-erased      a notice queued for an erased customer after the
                        erasure had destroyed their data key
  notice-content        a queued notice with another recipient, template or
                        parameters than its customer and event say
  notification-row      GET /v1/notifications/{id} or a recipient's listing
                        (GET /v1/notifications?recipient=) differs from the
                        fold in any field
  notification-phantom  a notification row or listing item the fold does
                        not have
"""

import json
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone

from gate import REJECTED, GatedFold, command_copies, rfc3339_millis, without_message, command_status_view, read_pages

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
CUSTOMER_UNKNOWN = "customer_unknown"
FINAL = {"sent", "failed"}


def notification_id(event_id, channel):
    return str(uuid.uuid5(NOTICES_NAMESPACE, f"{event_id}/{channel}"))


def parse_rfc3339_millis(text):
    try:
        at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None
    return int(at.timestamp() * 1000 + 0.5)


# ---------------------------------------------------------------- the model

def normal_recipient(channel, text):
    text = text.strip()
    return text.lower() if channel == "email" else text


def normal_parameters(parameters):
    return sorted(({"name": p["name"].strip(), "value": p["value"]} for p in parameters), key=lambda p: p["name"])


def decide(state, name, command):
    """What the decider's table says: ("event", record name, fields) or ("rejected", code)."""
    kind = name[len(NNS):]
    notification = command["aggregate_id"]
    if kind == "SendNotification":
        if state is not None:
            return ("rejected", "notification_exists")
        channel = command["channel"]
        return ("event", NNS + "NotificationQueued", {
            "notification_id": notification, "channel": channel,
            "recipient": normal_recipient(channel, command["recipient"]),
            "template": command["template"].strip(), "parameters": normal_parameters(command["parameters"])})
    if state is None:
        return ("rejected", "notification_not_found")
    if state["status"] in FINAL:
        return ("rejected", "notification_settled")
    expected_attempt = state["failed_attempts"] + 1
    if kind == "RecordProviderFailover":
        if command["from_provider"].strip() == command["to_provider"].strip():
            return ("rejected", "same_provider")
        return ("event", NNS + "ProviderFailedOver", {
            "notification_id": notification, "attempt": command["attempt"],
            "from_provider": command["from_provider"].strip(), "to_provider": command["to_provider"].strip(),
            "reason": command["reason"].strip()})
    if kind == "RecordNotificationSent":
        return ("event", NNS + "NotificationSent", {
            "notification_id": notification, "attempt": command["attempt"], "provider": command["provider"].strip(),
            "latency_ms": command["latency_ms"], "provider_call_us": command["provider_call_us"],
            "provider_message_id": command["provider_message_id"]})
    if kind == "RecordAttemptFailed":
        if command["attempt"] != expected_attempt:
            return ("rejected", "stale_attempt")
        return ("event", NNS + "NotificationAttemptFailed", {
            "notification_id": notification, "attempt": command["attempt"], "reason": command["reason"].strip(),
            "retry_at": command["retry_at"]})
    if kind == "RecordNotificationFailed":
        if command["attempt"] < expected_attempt:
            return ("rejected", "stale_attempt")
        return ("event", NNS + "NotificationFailed", {
            "notification_id": notification, "attempt": command["attempt"], "reason": command["reason"].strip()})
    return ("unknown command", name)


def evolve(state, name, event):
    """The notification after an admitted event; None when the stream
    cannot take it (queued twice, anything after an outcome or before the
    queueing)."""
    at = event["metadata"]["occurred_at"]
    kind = name[len(NNS):]
    if kind == "NotificationQueued":
        if state is not None:
            return None
        return {"id": event["notification_id"], "channel": event["channel"], "recipient": event["recipient"],
                "template": event["template"],
                "parameters": {p["name"]: p["value"] for p in event["parameters"]},
                "status": "queued", "queued_at": at, "updated_at": at, "failed_attempts": 0, "retry_at": None,
                "last_failure": None, "failovers": [], "delivery": None}
    if state is None or state["status"] in FINAL:
        return None
    state = dict(state, updated_at=at)
    if kind == "ProviderFailedOver":
        state["failovers"] = state["failovers"] + [{
            "attempt": event["attempt"], "from": event["from_provider"], "to": event["to_provider"],
            "reason": event["reason"], "at": at}]
    elif kind == "NotificationSent":
        state.update(status="sent", retry_at=None, delivery={
            "attempt": event["attempt"], "provider": event["provider"], "latency_ms": event["latency_ms"],
            "provider_call_us": event["provider_call_us"], "provider_message_id": event["provider_message_id"]})
    elif kind == "NotificationAttemptFailed":
        state.update(status="retrying", failed_attempts=event["attempt"], retry_at=event["retry_at"],
                     last_failure=event["reason"])
    elif kind == "NotificationFailed":
        state.update(status="failed", failed_attempts=event["attempt"], retry_at=None, last_failure=event["reason"])
    else:
        return None
    return state


def describe(state):
    return "no notification" if state is None else state["status"]


class NotifyFold(GatedFold):
    """notify.events folded through an independent gate and the model above."""

    label = "notify "
    topic = "notify.events"
    noun = "notification"
    names = EVENTS
    aggregate_field = "notification_id"
    decide, evolve, describe = staticmethod(decide), staticmethod(evolve), staticmethod(describe)

    def notifications(self):
        return {nid: slot for nid, slot in self.aggregates.items() if slot["state"] is not None}

    def recorded(self):
        """notification id -> Counter of its admitted event names."""
        names = defaultdict(Counter)
        for _, _, name, record in self.records:
            if name != REJECTED:
                names[record["metadata"]["aggregate_id"]][name] += 1
        return names


def decode_commands(topic, decode, undecodable, anomalies, stats):
    """command id -> every distinct copy [(record name, record)] in
    notify.commands. The delivery worker records a step again after a
    crash under the same derived id, with what it measured the second time
    (latencies), so copies may differ in their values; never in their kind."""
    return command_copies(topic, decode, undecodable, anomalies, stats, "notify ",
                          "notify command copies (re-performed, redelivered or duplicated)",
                          same=lambda first, copy: first[0] == copy[0], keep=lambda copies, copy: copy not in copies)


def notification_view(state, version):
    """GET /v1/notifications/{id} (services/notify/src/routes.rs's contract)."""
    view = {"id": state["id"], "channel": state["channel"], "recipient": state["recipient"],
            "template": state["template"], "parameters": dict(state["parameters"]), "status": state["status"],
            "version": version, "failed_attempts": state["failed_attempts"],
            "failovers": [{"attempt": f["attempt"], "from": f["from"], "to": f["to"], "reason": f["reason"],
                           "at": rfc3339_millis(f["at"])} for f in state["failovers"]],
            "queued_at": rfc3339_millis(state["queued_at"]), "updated_at": rfc3339_millis(state["updated_at"])}
    if state["retry_at"] is not None:
        view["retry_at"] = rfc3339_millis(state["retry_at"])
    if state["last_failure"] is not None:
        view["last_failure"] = state["last_failure"]
    if state["delivery"] is not None:
        view["delivery"] = dict(state["delivery"])
    return view


def recipient_listing(fold, recipient):
    """GET /v1/notifications?recipient= as the fold has it: newest queued
    first, then by notification id."""
    rows = [(slot["state"], slot["version"]) for slot in fold.notifications().values()
            if slot["state"]["recipient"] == recipient]
    rows.sort(key=lambda row: (-max(row[0]["queued_at"], 0), row[0]["id"].encode()))
    return [notification_view(state, version) for state, version in rows]


# ---------------------------------------------------------------- the notices' contract

def customer_contacts(operations):
    """user id -> (email, phone or None) of every registration an answer
    named (201: the user, 202: its user id), normalised as users stores
    them."""
    contacts = {}
    for invoke, completion in operations:
        if invoke["f"] != "register" or completion["type"] != "ok":
            continue
        body = completion.get("body") if isinstance(completion.get("body"), dict) else {}
        user = body.get("id") if completion.get("status") == 201 else body.get("user_id")
        request = invoke.get("request") or {}
        if completion.get("status") in (201, 202) and isinstance(user, str) and isinstance(request.get("email"), str):
            phone = request.get("phone")
            contacts[user] = (request["email"].strip().lower(),
                              "".join(c for c in phone.strip() if c not in " -.()") if isinstance(phone, str) else None)
    return contacts


def erasures(users, users_commands_topic, decode, undecodable):
    """user id -> (when its PersonalDataErased was logged, when its
    follow-up ReleaseEmail was first produced or None): the window in which
    the data key was destroyed."""
    erased = {}
    for _, raw, name, record in users.records:
        if name == "foldline.users.PersonalDataErased":
            erased[record["metadata"]["event_id"]] = (record["metadata"]["aggregate_id"], raw.timestamp)
    released = {}
    for records in users_commands_topic.values():
        for raw in records:
            try:
                name, record = decode(raw.value)
            except undecodable:
                continue
            cause = (record.get("metadata") or {}).get("causation_id")
            if name == "foldline.users.ReleaseEmail" and cause in erased:
                released[cause] = min(released.get(cause, raw.timestamp), raw.timestamp)
    return {user: (logged_at, released.get(event_id)) for event_id, (user, logged_at) in erased.items()}


def notice_causes(orders, payments):
    """event id -> the notice an admitted saga event calls for: template,
    order id, the event's settlement and its parameters."""
    causes = {}
    order_of_payment = {pid: slot["state"]["order_id"] for pid, slot in payments.payments().items()}
    for _, _, name, record in orders.records:
        template = ORDER_NOTICES.get(name)
        if not template:
            continue
        order_id = record["metadata"]["aggregate_id"]
        parameters = {"order_id": order_id}
        if name == "foldline.orders.OrderConfirmed":
            parameters.update(amount=str(record["amount"]), currency=None)
        elif name == "foldline.orders.OrderRejected":
            parameters.update(code=record["code"], reason=record["reason"])
        else:
            parameters.update(code="payment_rejected", reason=record["reason"])
        causes[record["metadata"]["event_id"]] = (template, order_id, orders.settled[record["metadata"]["command_id"]],
                                                  parameters, record.get("code"))
    for _, _, name, record in payments.records:
        if name != REFUND_NOTICE[0]:
            continue
        order_id = order_of_payment.get(record["metadata"]["aggregate_id"])
        parameters = {"order_id": order_id, "amount": str(record["amount"]), "currency": record["currency"]}
        causes[record["metadata"]["event_id"]] = (REFUND_NOTICE[1], order_id,
                                                  payments.settled[record["metadata"]["command_id"]], parameters, None)
    return causes


def judge_notices(orders, payments, users, contacts, erased, notices, found, tally):
    """The outcome of every notice against the contract (module doc).
    `notices`: order id -> the rows GET /v1/notifications/notices served.
    Returns (required, allowed): notification id -> (channel, template,
    order id, cause event id) of the notifications that must exist, and
    those that may (an erased customer's notice with no row yet).
    `tally` counts the outcomes by the customer's final status."""
    required, allowed = {}, {}
    causes = notice_causes(orders, payments)
    rows_by_event = {}
    for order_id, (status, body) in notices.items():
        if status != 200 or not isinstance(body, dict):
            found.add("notice-outcome", f"GET /v1/notifications/notices?order_id={order_id} answers {status} {body}")
            continue
        for item in body.get("items", []):
            rows_by_event[item.get("event_id")] = (order_id, item)
    for event_id, (order_id, item) in sorted(rows_by_event.items()):
        if event_id not in causes or causes[event_id][1] != order_id:
            found.add("notice-outcome", f"order {order_id} has a notice row for event {event_id}, which calls for no "
                      f"notice of that order: {item}")
    for event_id, (template, order_id, settled, parameters, code) in sorted(causes.items()):
        order = orders.state(order_id) if order_id else None
        if order is None:
            found.add("notice-outcome", f"{template} of event {event_id} names order {order_id}, which the log never placed")
            continue
        customer = order["customer_id"]
        if parameters.get("currency", "") is None:
            parameters["currency"] = order["currency"]
        user = users.state(customer)
        user = user if user is not None and user.get("kind") == "user" else None
        email, phone = contacts.get(customer, (None, None))
        channels = {"email": email, **({"sms": phone} if phone else {})}
        ids = [notification_id(event_id, channel) for channel in channels]
        what = f"{template} of order {order_id} (event {event_id}, customer {customer})"
        for channel, notification in zip(channels, ids):
            allowed[notification] = (channel, template, order_id, event_id, channels[channel], parameters)
        row = rows_by_event.get(event_id, (None, None))[1]
        outcome = row.get("outcome") if row else None
        if row is not None and row.get("template") != template:
            found.add("notice-outcome", f"{what}: the row's template is {row.get('template')}")
        if user is None:
            permitted = {"recipient_unknown"}
        else:
            permitted = {"queued"}
            if user["status"] == "erased":
                permitted.add("recipient_erased")
            if code == CUSTOMER_UNKNOWN:
                permitted.add("recipient_unknown")
        if row is None:
            found.add("notice-outcome", f"{what}: no outcome recorded in notify_order_notices "
                      f"(the contract allows {sorted(permitted)})")
            if permitted == {"queued"}:
                required.update((n, allowed[n]) for n in ids)
            continue
        seen = "queued" if outcome == "queued" else row.get("reason")
        tally[f"notices of {user['status'] if user else 'unknown'} customers {seen}"] += 1
        if outcome not in ("queued", "skipped") or seen not in permitted:
            status = user["status"] if user else "no user"
            found.add("notice-outcome", f"{what}: recorded {outcome} {row.get('reason') or ''}; the customer is "
                      f"{status}, so the contract allows {sorted(permitted)}")
        recorded_at = parse_rfc3339_millis(row.get("recorded_at"))
        window = erased.get(customer)
        if outcome == "queued":
            if row.get("notification_ids") != ids:
                found.add("notice-outcome", f"{what}: queued {row.get('notification_ids')}, its channels call for {ids}")
            required.update((n, allowed[n]) for n in ids)
            if window and window[1] is not None and settled["logged_at"] > window[1]:
                found.add("notice-to-erased", f"{what}: queued, but its event was logged at {settled['logged_at']}, "
                          f"after the erasure had destroyed the customer's key (logged {window[0]}, released "
                          f"{window[1]})")
        elif outcome == "skipped":
            for notification in ids:
                allowed.pop(notification, None)
            if seen == "recipient_erased" and window and recorded_at is not None and recorded_at < window[0]:
                found.add("notice-outcome", f"{what}: skipped as erased at {recorded_at}, before the erasure was "
                          f"logged at {window[0]}")
    for notification in required:
        allowed.pop(notification, None)
    return required, allowed


def fetch_accepted(url):
    with urllib.request.urlopen(url.rstrip("/") + "/v1/fake/accepted", timeout=10) as response:
        return json.load(response)


def check_notices(required, allowed, accepted_by_channel, fold, found):
    """Every notification that must exist accepted exactly once by its
    channel's provider and queued once in notify.events, to its customer's
    address with its event's content; one that may exist at most once;
    nothing else delivered or queued; one outcome per queued notification."""
    known = dict(allowed, **required)
    for channel, accepted in accepted_by_channel.items():
        for notification, times in sorted(accepted["accepted"].items()):
            if notification not in known:
                found.add("notice-phantom", f"the {channel} provider accepted {notification}, a notice no admitted "
                          "event calls for (or whose notice was recorded skipped)")
            elif times > 1:
                found.add("notice-twice", f"the {channel} provider accepted {notification} {times} times "
                          f"({known[notification][1]} of order {known[notification][2]})")
    others = {channel: set(accepted["accepted"]) for channel, accepted in accepted_by_channel.items()}
    for notification, (channel, template, order_id, cause, *_) in sorted(known.items()):
        if notification in required and notification not in others.get(channel, set()):
            found.add("notice-lost", f"{template} ({channel}) of order {order_id} (event {cause}): notification "
                      f"{notification} reached no provider")
        for other, ids in others.items():
            if other != channel and notification in ids:
                found.add("notice-twice", f"{notification} ({channel}) was accepted by the {other} provider too")
    recorded = fold.recorded()
    for notification, names in sorted(recorded.items()):
        if NNS + "NotificationQueued" in names and notification not in known:
            found.add("notice-phantom", f"notify.events queued {notification}, a notice no admitted event calls for "
                      "(or whose notice was recorded skipped)")
        if names[NNS + "NotificationQueued"] > 1 or names[NNS + "NotificationSent"] > 1:
            found.add("notice-twice", f"notify.events recorded {notification}: {dict(names)}")
        if names[NNS + "NotificationSent"] + names[NNS + "NotificationFailed"] != 1:
            found.add("notice-unsettled", f"notify.events recorded {notification} with no single outcome: {dict(names)}")
    for notification in sorted(set(required) - set(recorded)):
        found.add("notice-lost", f"{notification} ({required[notification][1]} of order {required[notification][2]}) "
                  "was never queued in notify.events")
    notifications = fold.notifications()
    for notification, (channel, template, order_id, cause, recipient, parameters) in sorted(known.items()):
        slot = notifications.get(notification)
        if slot is None:
            continue
        state = slot["state"]
        content = {"channel": state["channel"], "recipient": state["recipient"], "template": state["template"],
                   "parameters": state["parameters"]}
        wanted = {"channel": channel, "recipient": recipient, "template": template, "parameters": parameters}
        if content != wanted:
            found.add("notice-content", f"{template} of order {order_id} (event {cause}): notification {notification} "
                      f"was queued as {content}; its customer and event say {wanted}")


# ---------------------------------------------------------------- notify's read models

def dump_notices(http_get, orders):
    """What notify recorded of every order's notices."""
    return {order_id: http_get(f"/v1/notifications/notices?order_id={order_id}") for order_id in sorted(orders)}


def dump_notify(http_get, fold, extra_ids):
    """notification_by_id for every notification id the log or the notices
    name, notifications_by_recipient for every recipient the log names,
    and every notify command's status."""
    dump = {"notifications": {}, "recipients": {}, "commands": {}}
    for notification in sorted(set(fold.aggregates) | set(extra_ids)):
        dump["notifications"][notification] = http_get(f"/v1/notifications/{notification}")
    recipients = {slot["state"]["recipient"] for slot in fold.notifications().values()}
    for recipient in sorted(recipients):
        items, pages = read_pages(http_get, f"/v1/notifications?recipient={urllib.parse.quote(recipient, safe='')}&limit=100")
        dump["recipients"][recipient] = {"items": items, "pages": pages}
    for command_id in sorted(fold.settled):
        dump["commands"][command_id] = http_get(f"/v1/commands/{command_id}")
    return dump


def status_view(settled):
    return command_status_view(settled, "notification")


def check_notify_projection(dump, fold, found):
    notifications = fold.notifications()
    for notification, (status, body) in sorted(dump["notifications"].items()):
        slot = notifications.get(notification)
        if slot is None:
            if status != 404:
                found.add("notification-phantom", f"GET /v1/notifications/{notification} answers {status} {body}; "
                          "notify.events has no such notification")
            continue
        expected = notification_view(slot["state"], slot["version"])
        if status != 200 or body != expected:
            differs = ({field: (body.get(field), expected.get(field)) for field in set(body) | set(expected)
                        if body.get(field) != expected.get(field)} if isinstance(body, dict) else body)
            found.add("notification-row", f"GET /v1/notifications/{notification} answers {status}; differs from the "
                      f"fold (served, folded): {differs}")
    for recipient, listing in sorted(dump["recipients"].items()):
        expected = recipient_listing(fold, recipient)
        if any(status != 200 for status, _ in listing["pages"]):
            found.add("notification-row", f"recipient {recipient}: listing answered {listing['pages'][-1]}")
            continue
        if listing["items"] != expected:
            mine = {item["id"] for item in expected}
            phantoms = [item.get("id") for item in listing["items"] if item.get("id") not in mine]
            if phantoms:
                found.add("notification-phantom", f"recipient {recipient}: the listing holds notifications the log "
                          f"never queued to it: {phantoms}")
            found.add("notification-row", f"recipient {recipient}: listing {[i.get('id') for i in listing['items']]}; "
                      f"the fold is {[i['id'] for i in expected]} (or a field differs)")
    for command_id, (status, body) in sorted(dump["commands"].items()):
        settled = fold.settled[command_id]
        if status != 200 or without_message(body) != status_view(settled):
            found.add("notification-row", f"GET /v1/commands/{command_id} answers {status} {body}; notify.events "
                      f"settled {status_view(settled)}")
