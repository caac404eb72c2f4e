"""The payments domain and the order saga in the independent checker: its
own model of a payment's state machine, written from the decider's table
(services/payments/src/domain/decider.rs, src/design.md) and the records
of schemas/avro/payments, sharing no code with the system; and the saga's
cross-domain invariants (services/orders/src/saga/design.md), judged from
the topics alone and from the provider simulator's own ledger.

Anomaly kinds added (besides the shared ones: lost-command, applied-twice,
idempotency, client-disagrees, status-disagrees, outcome-disagrees,
missing-outcome, impossible-read, stale-read, illegal-transition,
wrong-decision, projection-row, phantom-row, log-structure):
  over-refund         refunds issued (or reserved) beyond what was captured
  charged-twice       a payment authorized, captured or voided twice (in the
                      log or in the provider's ledger)
  ledger-disagrees    the provider's ledger and the log disagree on what was
                      authorized, captured, refunded or voided
  saga-inconsistent   at quiescence an order's status does not fit its
                      payment: a confirmed or shipped order not captured, an
                      order that ended unpaid still holding money, two
                      payments for one order
  saga-unsettled      at quiescence an order still placed, a payment still
                      waiting for an answer, a refund still pending
"""

import uuid
from collections import Counter

from gate import GatedFold, command_copies, rfc3339_millis, without_message, command_status_view

PNS = "foldline.payments."
EVENTS = {PNS + name for name in (
    "PaymentRequested", "PaymentAuthorized", "PaymentDeclined", "CaptureRequested", "PaymentCaptured",
    "CaptureFailed", "RefundRequested", "RefundIssued", "RefundFailed", "VoidRequested",
    "AuthorizationVoided", "VoidFailed")}
# Rejection codes of services/payments/src/domain/model.rs.
DOMAIN_CODES = {
    "payment_not_found", "payment_exists", "no_answer_awaited", "payment_not_authorized",
    "payment_not_captured", "refund_exceeds_captured", "refund_exists", "refund_not_found",
    "refund_not_pending",
}
OURS = {"deadline_exceeded", "abandoned"}
# Payment statuses that wait for the provider's answer.
IN_FLIGHT = {"requested", "capturing", "voiding"}


def void_refund_id(payment_id):
    """The one refund a void of a captured payment issues (UUIDv5 of the
    payment id as namespace, name "void")."""
    return str(uuid.uuid5(uuid.UUID(payment_id), "void"))


def issued(state):
    return sum(refund["amount"] for refund in state["refunds"].values() if refund["status"] == "issued")


def refundable(state):
    if state["status"] != "captured":
        return 0
    reserved = sum(refund["amount"] for refund in state["refunds"].values() if refund["status"] in ("issued", "pending"))
    return state["amount"] - reserved


# ---------------------------------------------------------------- the model

def decide(state, name, command):
    """("event", record name, fields) or ("rejected", code)."""
    kind = name[len(PNS):]
    if kind == "AuthorizePayment":
        if state is not None:
            return ("rejected", "payment_exists")
        return ("event", PNS + "PaymentRequested", {field: command[field] for field in (
            "payment_id", "order_id", "customer_id", "amount", "currency", "card_token")})
    if state is None:
        return ("rejected", "payment_not_found")
    status = state["status"]
    common = {"payment_id": state["payment_id"], "order_id": state["order_id"]}
    if kind == "RecordAuthorization":
        if status == "declined" and state["decline"] and state["decline"][0] in OURS:
            return ("event", PNS + "VoidRequested", dict(common, reason=state["decline"][1],
                                                         provider_reference=command["provider_reference"]))
        if status != "requested":
            return ("rejected", "no_answer_awaited")
        return ("event", PNS + "PaymentAuthorized", dict(common, amount=state["amount"], currency=state["currency"],
                                                         provider_reference=command["provider_reference"]))
    if kind == "RecordDecline":
        if status != "requested":
            return ("rejected", "no_answer_awaited")
        return ("event", PNS + "PaymentDeclined", dict(common, code=command["code"], reason=command["reason"].strip(),
                                                       provider_reference=command["provider_reference"]))
    if kind == "CapturePayment":
        if status != "authorized":
            return ("rejected", "payment_not_authorized")
        return ("event", PNS + "CaptureRequested", dict(common, amount=state["amount"], currency=state["currency"],
                                                        provider_reference=state["authorization"]))
    if kind == "RecordCapture":
        if status != "capturing":
            return ("rejected", "no_answer_awaited")
        return ("event", PNS + "PaymentCaptured", dict(common, amount=state["amount"], currency=state["currency"],
                                                       provider_reference=command["provider_reference"]))
    if kind == "RecordCaptureFailure":
        if status != "capturing":
            return ("rejected", "no_answer_awaited")
        return ("event", PNS + "CaptureFailed", dict(common, reason=command["reason"].strip()))
    if kind == "RefundPayment":
        if status != "captured":
            return ("rejected", "payment_not_captured")
        if command["refund_id"] in state["refunds"]:
            return ("rejected", "refund_exists")
        if command["amount"] > refundable(state):
            return ("rejected", "refund_exceeds_captured")
        return ("event", PNS + "RefundRequested", dict(common, refund_id=command["refund_id"], amount=command["amount"],
                                                       currency=state["currency"], reason=command["reason"].strip(),
                                                       provider_reference=state["capture"]))
    if kind in ("RecordRefund", "RecordRefundFailure"):
        refund = state["refunds"].get(command["refund_id"])
        if refund is None:
            return ("rejected", "refund_not_found")
        if refund["status"] != "pending":
            return ("rejected", "refund_not_pending")
        if kind == "RecordRefundFailure":
            return ("event", PNS + "RefundFailed", dict(common, refund_id=command["refund_id"], amount=refund["amount"],
                                                        reason=command["reason"].strip()))
        total = issued(state) + refund["amount"]
        return ("event", PNS + "RefundIssued", dict(common, refund_id=command["refund_id"], amount=refund["amount"],
                                                    currency=state["currency"],
                                                    provider_reference=command["provider_reference"],
                                                    refunded_total=total, fully_refunded=total == state["amount"]))
    if kind == "VoidAuthorization":
        reason = command["reason"].strip()
        if status == "requested":
            return ("event", PNS + "PaymentDeclined", dict(common, code="abandoned", reason=reason,
                                                           provider_reference=None))
        if status == "captured":
            left, refund_id = refundable(state), void_refund_id(state["payment_id"])
            if refund_id in state["refunds"] or left == 0:
                return ("rejected", "payment_not_authorized")
            return ("event", PNS + "RefundRequested", dict(common, refund_id=refund_id, amount=left,
                                                           currency=state["currency"], reason=reason,
                                                           provider_reference=state["capture"]))
        if status != "authorized":
            return ("rejected", "payment_not_authorized")
        return ("event", PNS + "VoidRequested", dict(common, reason=reason, provider_reference=state["authorization"]))
    if kind in ("RecordVoid", "RecordVoidFailure"):
        if status != "voiding":
            return ("rejected", "no_answer_awaited")
        if kind == "RecordVoidFailure":
            return ("event", PNS + "VoidFailed", dict(common, reason=command["reason"].strip()))
        return ("event", PNS + "AuthorizationVoided", dict(common, reason=state["void_reason"] or "",
                                                           provider_reference=command["provider_reference"]))
    return ("unknown command", name)


def evolve(state, name, event):
    """The payment after an admitted event; None when the state machine
    forbids the event in this state (its own transition table, not the
    decider's: the two must agree)."""
    at = event["metadata"]["occurred_at"]
    kind = name[len(PNS):]
    if kind == "PaymentRequested":
        if state is not None:
            return None
        return {"payment_id": event["payment_id"], "order_id": event["order_id"], "customer_id": event["customer_id"],
                "amount": event["amount"], "currency": event["currency"], "status": "requested",
                "authorization": None, "capture": None, "void": None, "void_reason": None, "decline": None,
                "last_failure": None, "refunds": {}, "requested_at": at, "updated_at": at,
                "authorized": 0, "captured": 0, "voided": 0}
    if state is None or event["payment_id"] != state["payment_id"] or event["order_id"] != state["order_id"]:
        return None
    status = state["status"]
    state = dict(state, refunds={key: dict(refund) for key, refund in state["refunds"].items()}, updated_at=at)
    if kind == "PaymentAuthorized":
        if status != "requested" or event["amount"] != state["amount"]:
            return None
        state.update(status="authorized", authorization=event["provider_reference"], authorized=state["authorized"] + 1)
    elif kind == "PaymentDeclined":
        if status != "requested":
            return None
        state.update(status="declined", decline=(event["code"], event["reason"]))
    elif kind == "CaptureRequested":
        if status != "authorized":
            return None
        state["status"] = "capturing"
    elif kind == "PaymentCaptured":
        if status != "capturing" or event["amount"] != state["amount"]:
            return None
        state.update(status="captured", capture=event["provider_reference"], last_failure=None,
                     captured=state["captured"] + 1)
    elif kind in ("CaptureFailed", "VoidFailed"):
        if status != ("capturing" if kind == "CaptureFailed" else "voiding"):
            return None
        state.update(status="authorized", last_failure=event["reason"])
    elif kind == "RefundRequested":
        if status != "captured" or event["refund_id"] in state["refunds"] or not 0 < event["amount"] <= refundable(state):
            return None
        state["refunds"][event["refund_id"]] = {"amount": event["amount"], "reason": event["reason"],
                                                 "status": "pending", "provider_reference": None, "failure": None}
    elif kind in ("RefundIssued", "RefundFailed"):
        refund = state["refunds"].get(event["refund_id"])
        if refund is None or refund["status"] != "pending" or refund["amount"] != event["amount"]:
            return None
        if kind == "RefundIssued":
            refund.update(status="issued", provider_reference=event["provider_reference"])
            if issued(state) > state["amount"]:
                return None
        else:
            refund.update(status="failed", failure=event["reason"])
    elif kind == "VoidRequested":
        late = status == "declined" and state["decline"] and state["decline"][0] in OURS
        if status != "authorized" and not late:
            return None
        state.update(status="voiding", void_reason=event["reason"], authorization=event["provider_reference"])
    elif kind == "AuthorizationVoided":
        if status != "voiding":
            return None
        state.update(status="voided", void=event["provider_reference"], voided=state["voided"] + 1)
    else:
        return None
    return state


def describe(state):
    return "no payment" if state is None else state["status"]


# ---------------------------------------------------------------- the fold

def decode_commands(topic, decode, undecodable, anomalies, stats):
    """command id -> [(record name, record)] of payments.commands (copies of
    one id must be equal)."""
    return command_copies(topic, decode, undecodable, anomalies, stats, "payments ",
                          "payments command copies (redelivered or duplicated)")


class PaymentsFold(GatedFold):
    """payments.events folded through an independent gate and the model above."""

    label = "payments "
    topic = "payments.events"
    noun = "payment"
    names = EVENTS
    aggregate_field = "payment_id"
    command_aggregate_field = "payment_id"
    decide, evolve, describe = staticmethod(decide), staticmethod(evolve), staticmethod(describe)

    def decision_anomaly(self, expected):
        return "over-refund" if expected == ("rejected", "refund_exceeds_captured") else "wrong-decision"

    def view_at(self, payment_id, version):
        slot = self.aggregates.get(payment_id)
        state = slot["history"].get(version) if slot else None
        return None if state is None else payment_view(state, version)

    def payments(self):
        return {pid: slot for pid, slot in self.aggregates.items() if slot["state"] is not None}


# ---------------------------------------------------------------- the views

def payment_view(state, version):
    """GET /v1/payments/{id} (services/payments/src/routes.rs's contract)."""
    view = {
        "id": state["payment_id"], "order_id": state["order_id"], "customer_id": state["customer_id"],
        "status": state["status"], "amount": state["amount"], "currency": state["currency"],
        "captured": state["amount"] if state["capture"] is not None else 0,
        "refunded": issued(state), "refundable": refundable(state),
        "refunds": [], "version": version,
        "requested_at": rfc3339_millis(state["requested_at"]), "updated_at": rfc3339_millis(state["updated_at"]),
    }
    if state["authorization"] is not None:
        view["authorization_reference"] = state["authorization"]
    if state["capture"] is not None:
        view["capture_reference"] = state["capture"]
    if state["decline"] is not None:
        view["decline_code"], view["decline_reason"] = state["decline"]
    for refund_id in sorted(state["refunds"], key=lambda text: uuid.UUID(text).bytes):
        refund = state["refunds"][refund_id]
        shown = {"refund_id": refund_id, "amount": refund["amount"], "status": refund["status"], "reason": refund["reason"]}
        if refund["provider_reference"] is not None:
            shown["provider_reference"] = refund["provider_reference"]
        if refund["failure"] is not None:
            shown["failure"] = refund["failure"]
        view["refunds"].append(shown)
    return view


def order_payment_view(state, version):
    """An item of GET /v1/orders/{id}/payments (payments_by_order)."""
    return {"payment_id": state["payment_id"], "status": state["status"], "amount": state["amount"],
            "currency": state["currency"], "refunded": issued(state), "version": version,
            "updated_at": rfc3339_millis(state["updated_at"])}


def status_view(settled):
    return command_status_view(settled, "payment")


# ---------------------------------------------------------------- the history

def check_payments_history(operations, fold, client_id, command_id_of_key, anomalies):
    """Client refunds (`refund`: POST /v1/payments/{id}/refunds, keyed) and
    payment reads (`read-payment`): every acknowledged refund settled once,
    every answer agreeing with the log, every read a state that existed and
    no older than what an earlier completed operation saw."""
    answered_ids = {}
    seen = []
    for invoke, completion in operations:
        if invoke["f"] != "refund" or completion["type"] != "ok":
            continue
        command_id = command_id_of_key(client_id, invoke["key"])
        status, body = completion.get("status"), completion.get("body")
        named = completion.get("command_id") or (body.get("command_id") if isinstance(body, dict) else None)
        if named and named != command_id:
            anomalies.add("idempotency", f"refund {invoke['key']} answered command id {named}, its key derives {command_id}")
        answered_ids.setdefault(invoke["key"], set()).add(named or command_id)
        settled = fold.settled.get(command_id)
        where = f"refund {invoke['key']} ({command_id}) of {invoke['payment_id']}"
        code = body.get("code") if isinstance(body, dict) else None
        if status in (200, 201, 202) or (400 <= status < 500 and code in DOMAIN_CODES):
            if settled is None:
                anomalies.add("lost-command", f"{where}: answered {status} {code or ''}, never settled in payments.events")
                continue
        if status in (200, 201):
            if settled["status"] != "accepted":
                anomalies.add("client-disagrees", f"{where}: the client saw {status} {body}, the log rejected it ({settled['rejection_code']})")
                continue
            expected = fold.view_at(invoke["payment_id"], body.get("version"))
            if body != expected:
                anomalies.add("impossible-read", f"{where}: answered {body}; the payment at that version was {expected}")
            if body.get("version", -1) < settled["aggregate_version"]:
                anomalies.add("stale-read", f"{where}: Prefer: wait answered version {body.get('version')}, "
                              f"its command settled version {settled['aggregate_version']}")
            seen.append((completion["time_us"], invoke["payment_id"], body.get("version", 0)))
        elif 400 <= status < 500 and code in DOMAIN_CODES:
            if settled["status"] != "rejected" or settled["rejection_code"] != code:
                anomalies.add("client-disagrees", f"{where}: the client saw rejection {code}, the log settled "
                              f"{settled['status']} {settled['rejection_code']}")
    for key, ids in answered_ids.items():
        if len(ids) > 1:
            anomalies.add("idempotency", f"refund key {key} answered with command ids {sorted(ids)}")
    seen.sort()
    for invoke, completion in operations:
        if invoke["f"] == "command-status" and completion["type"] == "ok" and completion.get("status") == 200:
            settled = fold.settled.get(invoke["command_id"])
            body = completion["body"]
            if settled is None or body.get("status") == "pending":
                continue
            if without_message(body) != status_view(settled):
                anomalies.add("status-disagrees", f"GET /v1/commands/{invoke['command_id']} answered {body}, the log settled {status_view(settled)}")
        if invoke["f"] != "read-payment" or completion["type"] != "ok":
            continue
        status, body, payment_id = completion.get("status"), completion.get("body"), invoke["payment_id"]
        if status == 200:
            expected = fold.view_at(payment_id, body.get("version"))
            if body != expected:
                anomalies.add("impossible-read", f"GET /v1/payments/{payment_id} saw {body}; at that version the payment was {expected}")
            version = body.get("version", 0)
        elif status == 404:
            version = 0
        else:
            continue
        floor = max((v for at, payment, v in seen if payment == payment_id and at < invoke["time_us"]), default=0)
        if version < floor:
            anomalies.add("stale-read", f"GET /v1/payments/{payment_id} at {invoke['time_us']} saw version {version}, "
                          f"an operation that completed before it saw {floor}")
        if status == 200:
            seen.append((completion["time_us"], payment_id, version))


def command_ids_of_history(operations, client_id, command_id_of_key):
    return {command_id_of_key(client_id, invoke["key"]) for invoke, _ in operations if invoke["f"] == "refund"}


# ---------------------------------------------------------------- the live projection

def dump_payments(http_get, fold, orders, operations, client_id, command_id_of_key):
    """payment_by_id for every payment id the log or the history names,
    payments_by_order for every order, every payments command's status."""
    payment_ids = set(fold.aggregates)
    for invoke, _ in operations:
        if invoke.get("payment_id"):
            payment_ids.add(invoke["payment_id"])
    dump = {"payments": {}, "orders": {}, "commands": {}}
    for payment_id in sorted(payment_ids):
        dump["payments"][payment_id] = http_get(f"/v1/payments/{payment_id}")
    for order_id in sorted(orders):
        dump["orders"][order_id] = http_get(f"/v1/orders/{order_id}/payments")
    for command_id in sorted(set(fold.settled) | command_ids_of_history(operations, client_id, command_id_of_key)):
        dump["commands"][command_id] = http_get(f"/v1/commands/{command_id}")
    return dump


def check_payments_projection(dump, fold, found):
    payments = fold.payments()
    for payment_id, (status, body) in dump["payments"].items():
        slot = payments.get(payment_id)
        if slot is None:
            if status != 404:
                found.add("phantom-row", f"GET /v1/payments/{payment_id} answers {status} {body}; the log has no such payment")
            continue
        expected = payment_view(slot["state"], slot["version"])
        if status != 200 or body != expected:
            found.add("projection-row", f"GET /v1/payments/{payment_id} answers {status} {body}; the fold is {expected}")
    for order_id, (status, body) in dump["orders"].items():
        rows = sorted(((slot["state"], slot["version"]) for slot in payments.values()
                       if slot["state"]["order_id"] == order_id), key=lambda row: row[0]["payment_id"].encode())
        expected = {"order_id": order_id, "payments": [order_payment_view(state, version) for state, version in rows]}
        if status != 200 or body != expected:
            known = {row[0]["payment_id"] for row in rows}
            phantoms = [item for item in (body.get("payments", []) if isinstance(body, dict) else [])
                        if item.get("payment_id") not in known]
            if phantoms:
                found.add("phantom-row", f"GET /v1/orders/{order_id}/payments holds payments the log never requested: {phantoms}")
            found.add("projection-row", f"GET /v1/orders/{order_id}/payments answers {status} {body}; the fold is {expected}")
    for command_id, (status, body) in dump["commands"].items():
        settled = fold.settled.get(command_id)
        if settled is None:
            if status == 200 and isinstance(body, dict) and body.get("status") != "pending":
                found.add("phantom-row", f"GET /v1/commands/{command_id} answers {body}; payments.events never settled it")
            continue
        if status != 200 or without_message(body) != status_view(settled):
            found.add("projection-row", f"GET /v1/commands/{command_id} answers {status} {body}; the log settled {status_view(settled)}")


# ---------------------------------------------------------------- the saga

def check_saga(orders, payments, ledger, anomalies, stats):
    """The saga's invariants at quiescence, from the folds of orders.events
    and payments.events and from the provider's ledger (`ledger`: GET
    /v1/simulator/counts, executions per caller reference, i.e. payment id).

    `orders`: order id -> (state, confirmed payment id or None) as the
    orders fold left it."""
    by_order = {}
    for payment_id, slot in payments.payments().items():
        by_order.setdefault(slot["state"]["order_id"], []).append(slot["state"])
    references = ledger.get("by_reference", {})
    nothing = {"authorizations": 0, "captures": 0, "captured": 0, "refunds": 0, "refunded": 0, "voids": 0}

    for reference, charged in sorted(references.items()):
        if charged["authorizations"] > 1 or charged["captures"] > 1 or charged["voids"] > 1 or (
                charged["captures"] > 0 and charged["voids"] > 0):
            anomalies.add("charged-twice", f"the provider's ledger for {reference}: {charged}")
        if charged["refunded"] > charged["captured"]:
            anomalies.add("over-refund", f"the provider refunded {reference} {charged['refunded']} of {charged['captured']} captured")
        if reference not in payments.aggregates:
            anomalies.add("ledger-disagrees", f"the provider executed for {reference}, a payment the log never requested: {charged}")

    for payment_id, slot in sorted(payments.payments().items()):
        state = slot["state"]
        charged = references.get(payment_id, nothing)
        stats["payments " + state["status"]] += 1
        if state["authorized"] > 1 or state["captured"] > 1 or state["voided"] > 1:
            anomalies.add("charged-twice", f"payment {payment_id} authorized {state['authorized']}, captured "
                          f"{state['captured']}, voided {state['voided']} times in the log")
        if issued(state) > (state["amount"] if state["capture"] else 0):
            anomalies.add("over-refund", f"payment {payment_id}: {issued(state)} refunded of {state['amount'] if state['capture'] else 0} captured")
        if state["status"] in IN_FLIGHT or any(refund["status"] == "pending" for refund in state["refunds"].values()):
            anomalies.add("saga-unsettled", f"payment {payment_id} is still {state['status']} "
                          f"(refunds {[refund['status'] for refund in state['refunds'].values()]})")
            continue
        log_captured = state["amount"] if state["capture"] else 0
        expected = {
            "captured": log_captured, "refunded": issued(state),
            "voids": 1 if state["status"] == "voided" else 0,
            "authorizations": 1 if state["authorization"] is not None else charged["authorizations"],
        }
        differs = {field: (charged[field], value) for field, value in expected.items() if charged[field] != value}
        if differs:
            anomalies.add("ledger-disagrees", f"payment {payment_id} ({state['status']}): the provider's ledger, the log: {differs}")

    for order_id, (order, paid_with) in sorted(orders.items()):
        stats["orders " + order["status"]] += 1
        mine = by_order.get(order_id, [])
        if len(mine) > 1:
            anomalies.add("saga-inconsistent", f"order {order_id} has {len(mine)} payments: {[p['payment_id'] for p in mine]}")
        status = order["status"]
        if status == "placed":
            anomalies.add("saga-unsettled", f"order {order_id} is still placed")
            continue
        payment = mine[0] if mine else None
        kept = 0 if payment is None else (payment["amount"] if payment["capture"] else 0) - issued(payment)
        held = payment is not None and payment["status"] == "authorized"
        if status in ("confirmed", "shipped"):
            if payment is None or payment["status"] != "captured" or paid_with != payment["payment_id"]:
                anomalies.add("saga-inconsistent", f"order {order_id} is {status} (paid by {paid_with}), its payment is "
                              f"{describe(payment)} {payment and payment['payment_id']}")
            elif payment["amount"] != order["total"]:
                anomalies.add("saga-inconsistent", f"order {order_id} totals {order['total']}, its payment captured {payment['amount']}")
        elif kept != 0 or held:
            anomalies.add("saga-inconsistent", f"order {order_id} ended {status}, its payment "
                          f"{payment['payment_id']} is {payment['status']} and keeps {kept}"
                          f"{' (an authorization held)' if held else ''}")
