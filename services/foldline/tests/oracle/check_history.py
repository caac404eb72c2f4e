#!/usr/bin/env python3
"""An independent checker of a Foldline run: the client history, the log, the projection.

It shares no code with the system it checks. It reads the Avro schemas from
schemas/avro/*.avsc itself, decodes the Confluent wire format itself (magic
byte 0, a big-endian 4-byte schema id, the Avro body; the writer schema is
fetched by id from the registry's REST API), applies its own copy of the
version gate (design.md, rule 3) and its own model of the order state
machine (written from the table in services/orders/src/domain/order.rs),
and compares what clients saw and what the gateway serves with that fold.

Inputs:
  --history   JSON lines written by the Rust nemesis test: for every client
              operation an "invoke" line and a completion line ("ok",
              "fail" or "unknown") with the same index, and "info" lines
              for the nemesis's faults. See README.md beside this file.
  the broker  orders.events, orders.outcomes and orders.commands (raw).
  the gateway GET /v1/orders/{id}, /v1/customers/{id}/orders and
              /v1/commands/{id} for every id the log or the history names
              (written to --dump).

Anomalies (each kind counted; any one fails the run, exit status 1):
  lost-command        an acknowledged command the log never settled
  applied-twice       a command admitted more than once
  idempotency         one Idempotency-Key answered with two command ids
  client-disagrees    a settled answer a client got that the log contradicts
  status-disagrees    GET /v1/commands/{id} answered what the log contradicts
  outcome-disagrees   an orders.outcomes record the log contradicts
  missing-outcome     a settled command with no orders.outcomes record
  impossible-read     a read that saw a state the order never had
  stale-read          a read older than what an earlier completed operation
                      already saw (read-your-writes / monotonic reads)
  illegal-transition  an admitted event the state machine forbids
  wrong-decision      an admitted record that is not what the command decides
  projection-row      a live row that differs from the fold (every field)
  phantom-row         a live row the fold does not have
  log-structure       undecodable records, keys that are not the aggregate,
                      an aggregate on two partitions, conflicting copies

The users domain's kinds are listed in users_model.py, payments' and the
saga's (over-refund, charged-twice, ledger-disagrees, saga-inconsistent,
saga-unsettled) in payments_model.py, notify's (notice-lost, notice-twice,
notice-phantom, notice-unsettled, notice-outcome, notice-to-erased,
notice-content, notification-row, notification-phantom) in notify_model.py,
analytics' (analytics-figure, analytics-phantom) in analytics_model.py.
"""

import argparse
import io
import json
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

import analytics_model
import notify_model
import payments_model
import users_model
from gate import GatedFold, command_copies, rfc3339_millis, without_message, command_status_view, read_pages

OUTCOME = "foldline.CommandOutcome"
NS = "foldline.orders."

# The orders domain's rejection codes (services/orders/src/domain/rejection.rs):
# a 4xx answer carrying one of these is a settled rejection, any other 4xx
# code is the gateway refusing the request before producing anything.
DOMAIN_CODES = {
    "order_not_found", "order_already_exists", "wrong_order", "no_lines",
    "too_many_lines", "duplicate_sku", "invalid_price", "total_overflow",
    "already_cancelled", "already_shipped", "already_paid",
    "payment_amount_mismatch", "not_awaiting_payment", "not_paid",
    "reason_required", "reason_too_long", "invalid_card_token", "invalid_rejection_code",
}
COMMAND_KINDS = {"place", "cancel", "pay", "pay-fail", "ship"}
HTTP_COMMANDS = {"place", "cancel"}


class Anomalies:
    def __init__(self):
        self.by_kind = defaultdict(list)

    def add(self, kind, message):
        self.by_kind[kind].append(message)

    def total(self):
        return sum(len(found) for found in self.by_kind.values())


# ---------------------------------------------------------------- the wire

class Undecodable(Exception):
    pass


def load_reader_schemas(root):
    """Every .avsc under root, parsed on its own, by record full name."""
    readers = {}
    for path in sorted(Path(root).rglob("*.avsc")):
        schema = json.loads(path.read_text())
        full_name = f"{schema['namespace']}.{schema['name']}"
        readers[full_name] = fastavro.parse_schema(schema, named_schemas={})
    if not readers:
        raise SystemExit(f"no .avsc files under {root}")
    return readers


class Registry:
    """Writer schemas by id, from the registry's REST API (GET /schemas/ids/{id})."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.by_id = {}

    def writer(self, schema_id):
        if schema_id not in self.by_id:
            try:
                with urllib.request.urlopen(f"{self.url}/schemas/ids/{schema_id}", timeout=10) as response:
                    text = json.load(response)["schema"]
            except urllib.error.HTTPError as error:
                raise Undecodable(f"the registry answers {error.code} for schema id {schema_id}") from None
            schema = json.loads(text)
            full_name = f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")
            self.by_id[schema_id] = (full_name, fastavro.parse_schema(schema, named_schemas={}))
        return self.by_id[schema_id]


def decode(payload, registry, readers):
    """(record full name, record) of a Confluent wire-format Avro value."""
    if payload is None:
        raise Undecodable("no value")
    if len(payload) < 5 or payload[0] != 0:
        raise Undecodable("no confluent wire-format header")
    (schema_id,) = struct.unpack(">I", payload[1:5])
    full_name, writer = registry.writer(schema_id)
    reader = readers.get(full_name)
    if reader is None:
        raise Undecodable(f"schema id {schema_id} is {full_name}, not a record of schemas/avro")
    body = io.BytesIO(payload[5:])
    try:
        record = fastavro.schemaless_reader(body, writer, reader)
    except Exception as error:  # a corrupt body: any decoding error
        raise Undecodable(f"{full_name}: {error}") from None
    if body.tell() != len(payload) - 5:
        raise Undecodable(f"{full_name}: {len(payload) - 5 - body.tell()} bytes after the record")
    return full_name, record


class Raw:
    __slots__ = ("partition", "offset", "key", "value", "headers", "timestamp")

    def __init__(self, message):
        self.partition = message.partition()
        self.offset = message.offset()
        self.key = message.key()
        self.value = message.value()
        self.headers = dict(message.headers() or [])
        # The broker's timestamp (the producer's create time, ms).
        self.timestamp = message.timestamp()[1]


def read_topic(bootstrap, topic, budget_seconds=90, isolation="read_committed"):
    """Every committed record of topic (every record with isolation
    "read_uncommitted"), partition by partition in offset order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"oracle-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "enable.partition.eof": True,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise SystemExit(f"cannot describe {topic}: {described.error if described else 'absent'}")
        partitions = sorted(described.partitions)
        ends = {}
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15, cached=False)
            ends[partition] = high
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
        done = {partition for partition in partitions if ends[partition] == 0}
        records = defaultdict(list)
        deadline = time.monotonic() + budget_seconds
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise SystemExit(f"{topic}: not read to its end within {budget_seconds} s: {ends}")
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                    continue
                raise SystemExit(f"reading {topic}: {message.error()}")
            records[message.partition()].append(Raw(message))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return {partition: records[partition] for partition in partitions}
    finally:
        consumer.close()


def check_isolation(committed, everything, anomalies, stats):
    """The fold reads read_committed: what it is served must be a subset of
    what a read_uncommitted reader is served, and the difference (records of
    aborted or still open transactions) is what it must never fold."""
    hidden = 0
    for partition, records in everything.items():
        seen = {raw.offset for raw in committed.get(partition, [])}
        all_offsets = {raw.offset for raw in records}
        for offset in sorted(seen - all_offsets):
            anomalies.add("log-structure", f"events {partition}@{offset} is served read_committed only")
        hidden += len(all_offsets - seen)
    stats["aborted or open records hidden by read_committed"] += hidden


# ---------------------------------------------------------------- the model

def order_total(lines):
    return sum(line["quantity"] * line["unit_price"] for line in lines)


def decide(state, name, command):
    """What the domain's table says a command decides against state:
    ("event", record name, payload fields) or ("rejected", code)."""
    kind = name[len(NS):]
    if state is None:
        if kind == "PlaceOrder":
            return ("event", NS + "OrderPlaced", {
                "customer_id": command["customer_id"],
                "currency": command["currency"],
                "lines": command["lines"],
                "total": order_total(command["lines"]),
            })
        return ("rejected", "order_not_found")
    status = state["status"]
    if kind == "PlaceOrder":
        return ("rejected", "order_already_exists")
    if kind == "CancelOrder":
        if status == "cancelled":
            return ("rejected", "already_cancelled")
        if status == "shipped":
            return ("rejected", "already_shipped")
        # A confirmed order's cancellation owes the refund of what it was
        # paid (the saga's design.md, rule 4), decided from its own state.
        owed = status == "confirmed" and state["payment_id"] is not None
        return ("event", NS + "OrderCancelled", {
            "reason": command["reason"],
            "refund_payment_id": state["payment_id"] if owed else None,
            "refund_amount": state["total"] if owed else None,
        })
    if kind in ("MarkOrderPaid", "MarkOrderPaymentFailed", "RejectOrder"):
        refusal = {"confirmed": "already_paid", "cancelled": "already_cancelled",
                   "payment_rejected": "not_awaiting_payment", "rejected": "not_awaiting_payment",
                   "shipped": "already_shipped"}.get(status)
        if refusal:
            return ("rejected", refusal)
        if kind == "RejectOrder":
            code = command["code"]
            if not code or len(code) > 64 or not all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in code):
                return ("rejected", "invalid_rejection_code")
            if not command["reason"].strip():
                return ("rejected", "reason_required")
            return ("event", NS + "OrderRejected", {"code": code, "reason": command["reason"]})
        if kind == "MarkOrderPaid":
            if command["amount"] != state["total"]:
                return ("rejected", "payment_amount_mismatch")
            return ("event", NS + "OrderConfirmed",
                    {"payment_id": command["payment_id"], "amount": command["amount"]})
        if not command["reason"].strip():
            return ("rejected", "reason_required")
        return ("event", NS + "OrderPaymentRejected",
                {"payment_id": command["payment_id"], "reason": command["reason"]})
    if kind == "ShipOrder":
        refusal = {"placed": "not_paid", "payment_rejected": "not_paid", "rejected": "not_paid",
                   "cancelled": "already_cancelled", "shipped": "already_shipped"}.get(status)
        if refusal:
            return ("rejected", refusal)
        return ("event", NS + "OrderShipped", {})
    raise ValueError(f"not an orders command: {name}")


# Which status each event may follow, and where it leads.
TRANSITIONS = {
    NS + "OrderPlaced": ({None}, "placed"),
    NS + "OrderCancelled": ({"placed", "confirmed", "payment_rejected", "rejected"}, "cancelled"),
    NS + "OrderRejected": ({"placed"}, "rejected"),
    NS + "OrderConfirmed": ({"placed"}, "confirmed"),
    NS + "OrderPaymentRejected": ({"placed"}, "payment_rejected"),
    NS + "OrderShipped": ({"confirmed"}, "shipped"),
}


def evolve(state, name, event):
    """The state after an event, or None (with the state unchanged) when the
    state machine forbids it."""
    allowed, status = TRANSITIONS[name]
    if (state["status"] if state else None) not in allowed:
        return None
    at = event["metadata"]["occurred_at"]
    if name == NS + "OrderPlaced":
        return {
            "order_id": event["order_id"], "customer_id": event["customer_id"],
            "currency": event["currency"],
            "lines": [dict(line) for line in event["lines"]],
            "total": event["total"], "status": status, "placed_at": at, "updated_at": at,
            "payment_id": None, "cancel_reason": None, "rejection": None,
        }
    state = dict(state, status=status, updated_at=at)
    if name == NS + "OrderCancelled":
        state["cancel_reason"] = event["reason"]
    if name in (NS + "OrderConfirmed", NS + "OrderPaymentRejected"):
        state["payment_id"] = event["payment_id"]
    if name == NS + "OrderRejected":
        state["rejection"] = {"code": event["code"], "reason": event["reason"]}
    return state


def order_view(state, version):
    view = {
        "id": state["order_id"], "customer_id": state["customer_id"], "status": state["status"],
        "currency": state["currency"],
        "lines": [{"sku": line["sku"], "quantity": line["quantity"], "unit_price": line["unit_price"],
                   "line_total": line["quantity"] * line["unit_price"]} for line in state["lines"]],
        "total": state["total"], "version": version,
        "placed_at": rfc3339_millis(state["placed_at"]), "updated_at": rfc3339_millis(state["updated_at"]),
    }
    if state["cancel_reason"] is not None:
        view["cancel_reason"] = state["cancel_reason"]
    if state["payment_id"] is not None:
        view["payment_id"] = state["payment_id"]
    if state["rejection"] is not None:
        view["rejection"] = dict(state["rejection"])
    return view


def summary_view(state, version):
    view = order_view(state, version)
    return {field: view[field] for field in ("id", "status", "currency", "total", "version", "placed_at", "updated_at")}


# ---------------------------------------------------------------- the fold

class Fold(GatedFold):
    """orders.events folded through an independent version gate and model."""

    topic = "events"
    noun = "order"
    names = TRANSITIONS
    aggregate_field = "order_id"
    command_aggregate_field = "order_id"

    decide, evolve = staticmethod(decide), staticmethod(evolve)

    def describe(self, state):
        return state["status"] if state else "no order"

    def run(self, events, commands, registry, readers):
        def decode_value(payload):
            return decode(payload, registry, readers)
        super().run(events, commands, decode_value, Undecodable)

    def view(self, order_id):
        slot = self.aggregates.get(order_id)
        if slot is None or slot["state"] is None:
            return None
        return order_view(slot["state"], slot["version"])

    def view_at(self, order_id, version):
        slot = self.aggregates.get(order_id)
        state = slot["history"].get(version) if slot else None
        return None if state is None else order_view(state, version)


def decode_commands(commands_topic, registry, readers, anomalies, stats):
    """command id -> [(record name, record)], from orders.commands; copies must agree."""
    return command_copies(commands_topic, lambda payload: decode(payload, registry, readers), Undecodable,
                          anomalies, stats, "", "command copies (redelivered or duplicated)")


def check_outcomes(outcomes_topic, fold, registry, readers, anomalies, stats):
    published = set()
    fields = ("aggregate_id", "status", "aggregate_version", "event_id", "event_type",
              "event_partition", "event_offset", "rejection_code", "rejection_kind")
    for partition, records in outcomes_topic.items():
        for raw in records:
            stats["outcome records"] += 1
            try:
                name, outcome = decode(raw.value, registry, readers)
            except Undecodable as error:
                anomalies.add("log-structure", f"outcomes[{partition}]@{raw.offset} undecodable: {error}")
                continue
            if name != OUTCOME:
                anomalies.add("log-structure", f"outcomes[{partition}]@{raw.offset} is a {name}")
                continue
            settled = fold.settled.get(outcome["command_id"])
            published.add(outcome["command_id"])
            if settled is None:
                anomalies.add("outcome-disagrees", f"outcomes[{partition}]@{raw.offset}: {outcome['command_id']} is not settled in the log")
                continue
            differs = {field: (outcome[field], settled[field]) for field in fields if outcome[field] != settled[field]}
            if differs:
                anomalies.add("outcome-disagrees", f"outcome of {outcome['command_id']} (published, log): {differs}")
    for command_id in fold.settled.keys() - published:
        anomalies.add("missing-outcome", f"{command_id} is settled at events[{fold.settled[command_id]['event_partition']}]@"
                      f"{fold.settled[command_id]['event_offset']} but no outcome was published")


# ---------------------------------------------------------------- the history

def load_history(path):
    invokes, completions, infos = {}, {}, []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry["type"] == "info":
            infos.append(entry)
        elif entry["type"] == "invoke":
            invokes[entry["index"]] = entry
        elif entry["type"] in ("ok", "fail", "unknown"):
            completions[entry["index"]] = entry
        else:
            raise SystemExit(f"{path}:{number}: unknown entry type {entry['type']!r}")
    operations = []
    for index, invoke in sorted(invokes.items()):
        completion = completions.get(index) or {"type": "unknown", "time_us": None}
        operations.append((invoke, completion))
    return operations, infos


def answer_of(invoke, completion):
    """What an HTTP command's answer says: ("settled", body, command id),
    ("rejected", code, None), ("pending", None, command id) or None when it
    acknowledged nothing."""
    status, body = completion.get("status"), completion.get("body")
    if completion["type"] != "ok" or status is None:
        return None
    if status in (200, 201):
        return ("settled", body, completion.get("command_id"))
    if status == 202:
        return ("pending", None, body.get("command_id") if isinstance(body, dict) else None)
    code = body.get("code") if isinstance(body, dict) else None
    if status in (404, 409, 422) and code in DOMAIN_CODES:
        return ("rejected", code, None)
    return None


def check_history(operations, fold, anomalies, foreign=frozenset()):
    """The orders domain's operations; `foreign` are the command ids another
    domain's checker judges."""
    key_ids = defaultdict(set)  # idempotency key -> command ids answered
    key_orders = defaultdict(set)
    for invoke, completion in operations:
        if invoke["f"] in HTTP_COMMANDS:
            answer = answer_of(invoke, completion)
            if answer and answer[2]:
                key_ids[invoke["key"]].add(answer[2])
            order = (completion.get("body") or {}).get("order_id") if isinstance(completion.get("body"), dict) else None
            if completion.get("status") == 202 and order:
                key_orders[invoke["key"]].add(order)
    for key, ids in key_ids.items():
        if len(ids) > 1:
            anomalies.add("idempotency", f"key {key} answered with command ids {sorted(ids)}")
    for key, orders in key_orders.items():
        if len(orders) > 1:
            anomalies.add("idempotency", f"key {key} answered with orders {sorted(orders)}")

    seen_versions = []  # (completion time, order id, version) of what completed operations saw
    for invoke, completion in operations:
        f = invoke["f"]
        if f in HTTP_COMMANDS:
            answer = answer_of(invoke, completion)
            if answer is None:
                continue
            ids = key_ids.get(invoke["key"], set())
            command_id = next(iter(ids)) if len(ids) == 1 else None
            settled = fold.settled.get(command_id) if command_id else None
            if command_id is None:
                anomalies.add("lost-command", f"{f} {invoke['key']} was answered {completion.get('status')} but no answer named its command id")
                continue
            if settled is None:
                anomalies.add("lost-command", f"{f} {invoke['key']} ({command_id}) answered {completion.get('status')} at "
                              f"{completion['time_us']}, never settled in orders.events")
                continue
            if answer[0] == "settled":
                body = answer[1]
                if settled["status"] != "accepted":
                    anomalies.add("client-disagrees", f"{invoke['key']}: the client saw {completion['status']} {body}, the log rejected it ({settled['rejection_code']})")
                    continue
                if not isinstance(body, dict) or body.get("id") != settled["aggregate_id"]:
                    anomalies.add("client-disagrees", f"{invoke['key']}: answered {body} for order {settled['aggregate_id']}")
                    continue
                if body.get("version", -1) < settled["aggregate_version"]:
                    anomalies.add("stale-read", f"{invoke['key']}: Prefer: wait answered version {body.get('version')}, its command settled version {settled['aggregate_version']}")
                expected = fold.view_at(body["id"], body.get("version"))
                if body != expected:
                    anomalies.add("impossible-read", f"{invoke['key']}: answered {body}; the order at that version was {expected}")
                seen_versions.append((completion["time_us"], body["id"], body.get("version", 0)))
            elif answer[0] == "rejected":
                if settled["status"] != "rejected" or settled["rejection_code"] != answer[1]:
                    anomalies.add("client-disagrees", f"{invoke['key']}: the client saw rejection {answer[1]}, the log settled {settled['status']} {settled['rejection_code']}")
        elif f in ("pay", "pay-fail", "ship"):
            if completion["type"] == "ok" and invoke["command_id"] not in fold.settled:
                anomalies.add("lost-command", f"{f} {invoke['command_id']} was delivered to orders.commands at "
                              f"{completion.get('partition')}@{completion.get('offset')}, never settled")
        elif f == "command-status" and completion["type"] == "ok" and completion.get("status") == 200:
            if invoke["command_id"] in foreign:
                continue
            body = completion["body"]
            if body.get("status") == "pending":
                continue
            settled = fold.settled.get(invoke["command_id"])
            expected = settled and status_view(settled)
            if without_message(body) != expected:
                anomalies.add("status-disagrees", f"GET /v1/commands/{invoke['command_id']} answered {body}, the log settled {expected}")

    seen_versions.sort()
    for invoke, completion in operations:
        if invoke["f"] != "read" or completion["type"] != "ok":
            continue
        status, body = completion.get("status"), completion.get("body")
        order_id = invoke["order_id"]
        if status == 200:
            expected = fold.view_at(order_id, body.get("version"))
            if body != expected:
                anomalies.add("impossible-read", f"GET /v1/orders/{order_id} saw {body}; at that version the order was {expected}")
            seen = body.get("version", 0)
        elif status == 404:
            seen = 0
        else:
            continue
        floor = max((version for at, order, version in seen_versions if order == order_id and at < invoke["time_us"]), default=0)
        if seen < floor:
            anomalies.add("stale-read", f"GET /v1/orders/{order_id} at {invoke['time_us']} saw version {seen}, an operation that completed before it saw {floor}")
        if status == 200:
            seen_versions.append((completion["time_us"], order_id, seen))
    for invoke, completion in operations:
        if invoke["f"] == "list" and completion["type"] == "ok" and completion.get("status") == 200:
            for item in completion["body"].get("items", []):
                slot = fold.aggregates.get(item.get("id"))
                state = slot["history"].get(item.get("version")) if slot else None
                expected = summary_view(state, item["version"]) if state else None
                if item != expected:
                    anomalies.add("impossible-read", f"customer {invoke['customer_id']} listing showed {item}; at that version the order was {expected}")


def status_view(settled):
    return command_status_view(settled, "order")


# ---------------------------------------------------------------- the live projection

def http_get(base, path):
    try:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, body.decode(errors="replace")


def http_post(base, path, body, key):
    request = urllib.request.Request(base.rstrip("/") + path, data=body.encode(), method="POST",
                                     headers={"content-type": "application/json", "idempotency-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def dump_projection(gateway, fold, operations, foreign=frozenset()):
    order_ids = set(fold.aggregates)
    customers = {slot["state"]["customer_id"] for slot in fold.aggregates.values() if slot["state"]}
    command_ids = set(fold.settled)
    for invoke, completion in operations:
        for field in ("order_id",):
            if invoke.get(field):
                order_ids.add(invoke[field])
            body = completion.get("body")
            if isinstance(body, dict) and body.get(field):
                order_ids.add(body[field])
        if invoke.get("customer_id"):
            customers.add(invoke["customer_id"])
        if invoke.get("command_id"):
            command_ids.add(invoke["command_id"])
    dump = {"orders": {}, "customers": {}, "commands": {}}
    for order_id in sorted(order_ids):
        dump["orders"][order_id] = http_get(gateway, f"/v1/orders/{order_id}")
    for customer in sorted(customers):
        items, pages = read_pages(lambda path: http_get(gateway, path), f"/v1/customers/{customer}/orders?limit=100")
        dump["customers"][customer] = {"items": items, "pages": pages}
    for command_id in sorted(command_ids - set(foreign)):
        dump["commands"][command_id] = http_get(gateway, f"/v1/commands/{command_id}")
    return dump


def check_projection(dump, fold):
    found = Anomalies()
    for order_id, (status, body) in dump["orders"].items():
        expected = fold.view(order_id)
        if expected is None:
            if status != 404:
                found.add("phantom-row", f"GET /v1/orders/{order_id} answers {status} {body}; the log has no such order")
        elif status != 200 or body != expected:
            found.add("projection-row", f"GET /v1/orders/{order_id} answers {status} {body}; the fold is {expected}")
    for customer, listing in dump["customers"].items():
        rows = [(slot["state"], slot["version"]) for slot in fold.aggregates.values()
                if slot["state"] and slot["state"]["customer_id"] == customer]
        rows.sort(key=lambda row: (-row[0]["placed_at"], row[0]["order_id"]))
        expected = [summary_view(state, version) for state, version in rows]
        if any(status != 200 for status, _ in listing["pages"]):
            found.add("projection-row", f"customer {customer}: listing answered {listing['pages'][-1]}")
        elif listing["items"] != expected:
            known = {item["id"] for item in expected}
            phantoms = [item for item in listing["items"] if item["id"] not in known]
            if phantoms:
                found.add("phantom-row", f"customer {customer}: listing holds orders the log never placed: {phantoms}")
            found.add("projection-row", f"customer {customer}: listing {listing['items']}; the fold is {expected}")
    for command_id, (status, body) in dump["commands"].items():
        settled = fold.settled.get(command_id)
        if settled is None:
            if status == 200 and isinstance(body, dict) and body.get("status") != "pending":
                found.add("phantom-row", f"GET /v1/commands/{command_id} answers {body}; the log never settled it")
            continue
        expected = status_view(settled)
        if status != 200 or not isinstance(body, dict):
            found.add("projection-row", f"GET /v1/commands/{command_id} answers {status} {body}; settled {expected}")
            continue
        if without_message(body) != expected:
            found.add("projection-row", f"GET /v1/commands/{command_id} answers {body}; the log settled {expected}")
    return found


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True, help="topic prefix of the run")
    parser.add_argument("--registry", required=True, help="registry URL (writer schemas by id)")
    parser.add_argument("--gateway", required=True, help="gateway URL (the live projection)")
    parser.add_argument("--schemas", required=True, help="schemas/avro")
    parser.add_argument("--history", required=True)
    parser.add_argument("--dump", help="write the projection dump here")
    parser.add_argument("--client-id", default="anonymous",
                        help="the gateway's gateway.client_id (keyed command ids derive from it)")
    parser.add_argument("--simulator", help="the provider simulator's URL: with it, the saga's invariants "
                        "are checked against its ledger (GET /v1/simulator/counts)")
    parser.add_argument("--notify-email", help="the fake email provider's URL: with it (and --notify-sms), the "
                        "order notices are checked against what the fakes accepted")
    parser.add_argument("--notify-sms", help="the fake SMS provider's URL")
    parser.add_argument("--analytics", action="store_true",
                        help="analytics runs: its figures are checked against sums of the events")
    parser.add_argument("--converge-seconds", type=float, default=60.0,
                        help="how long the projection may take to equal the fold")
    args = parser.parse_args()

    started = time.monotonic()
    anomalies = Anomalies()
    readers = load_reader_schemas(args.schemas)
    registry = Registry(args.registry)
    operations, infos = load_history(args.history)
    stats = Counter()

    commands = decode_commands(read_topic(args.bootstrap, args.prefix + "orders.commands"), registry, readers, anomalies, stats)
    events = read_topic(args.bootstrap, args.prefix + "orders.events")
    check_isolation(events, read_topic(args.bootstrap, args.prefix + "orders.events", isolation="read_uncommitted"),
                    anomalies, stats)
    fold = Fold(anomalies)
    fold.run(events, commands, registry, readers)
    check_outcomes(read_topic(args.bootstrap, args.prefix + "orders.outcomes"), fold, registry, readers, anomalies, stats)

    # Users and their email claims (users_model.py).
    def decode_users(payload):
        return decode(payload, registry, readers)
    users_topics = {name: read_topic(args.bootstrap, args.prefix + name)
                    for name in ("users.commands", "users.events", "users.outcomes", "users.dlq")}
    user_commands = users_model.decode_user_commands(users_topics["users.commands"], decode_users, Undecodable,
                                                     anomalies, stats)
    check_isolation(users_topics["users.events"],
                    read_topic(args.bootstrap, args.prefix + "users.events", isolation="read_uncommitted"),
                    anomalies, stats)
    users = users_model.UsersFold(anomalies)
    users.run(users_topics["users.events"], user_commands, decode_users, Undecodable)
    check_outcomes(users_topics["users.outcomes"], users, registry, readers, anomalies, stats)
    plain = users_model.Plaintext(operations, user_commands, args.client_id, anomalies)
    users_model.check_users_history(operations, users, plain, user_commands, args.client_id, anomalies)
    users_model.check_claims(users, anomalies)
    users_model.check_no_plaintext(users_topics, plain, anomalies, stats)
    users_ids = set(users.settled) | set(plain.request_of)

    # Payments (payments_model.py), and the saga across both domains.
    payments_topics = {name: read_topic(args.bootstrap, args.prefix + name)
                       for name in ("payments.commands", "payments.events", "payments.outcomes")}
    payment_commands = payments_model.decode_commands(payments_topics["payments.commands"], decode_users, Undecodable,
                                                      anomalies, stats)
    check_isolation(payments_topics["payments.events"],
                    read_topic(args.bootstrap, args.prefix + "payments.events", isolation="read_uncommitted"),
                    anomalies, stats)
    payments = payments_model.PaymentsFold(anomalies)
    payments.run(payments_topics["payments.events"], payment_commands, decode_users, Undecodable)
    check_outcomes(payments_topics["payments.outcomes"], payments, registry, readers, anomalies, stats)
    payments_model.check_payments_history(operations, payments, args.client_id, users_model.command_id_of_key,
                                          anomalies)
    payments_ids = set(payments.settled) | payments_model.command_ids_of_history(
        operations, args.client_id, users_model.command_id_of_key)
    ledger = None
    if args.simulator:
        with urllib.request.urlopen(args.simulator.rstrip("/") + "/v1/simulator/counts", timeout=10) as response:
            ledger = json.load(response)
        orders = {order_id: (slot["state"], slot["state"]["payment_id"])
                  for order_id, slot in fold.aggregates.items() if slot["state"]}
        payments_model.check_saga(orders, payments, ledger, anomalies, stats)

    check_history(operations, fold, anomalies, foreign=users_ids | payments_ids)

    deadline = time.monotonic() + args.converge_seconds
    while True:
        dump = dump_projection(args.gateway, fold, operations, foreign=users_ids | payments_ids)
        found = check_projection(dump, fold)
        dump["users"] = users_model.dump_users(
            lambda path: http_get(args.gateway, path),
            lambda path, body, key: http_post(args.gateway, path, body, key),
            users, plain, operations, user_commands)
        users_model.check_users_projection(dump["users"], users, plain, found)
        paid_orders = set(fold.aggregates) | {slot["state"]["order_id"] for slot in payments.payments().values()}
        dump["payments"] = payments_model.dump_payments(
            lambda path: http_get(args.gateway, path), payments, paid_orders, operations, args.client_id,
            users_model.command_id_of_key)
        payments_model.check_payments_projection(dump["payments"], payments, found)
        if found.total() == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for kind, messages in found.by_kind.items():
        for message in messages:
            anomalies.add(kind, message)
    # Notify (notify_model.py) and analytics (analytics_model.py):
    # converged like the projection, since delivery follows the saga's
    # events by a relay and a worker, and analytics folds every topic.
    notify, required, allowed, accepted, figures = None, {}, {}, None, None
    if args.notify_email and args.notify_sms:
        contacts = notify_model.customer_contacts(operations)
        erased = notify_model.erasures(users, users_topics["users.commands"], decode_users, Undecodable)
        dead_letters = {"orders": read_topic(args.bootstrap, args.prefix + "orders.dlq"),
                        "users": users_topics["users.dlq"],
                        "payments": read_topic(args.bootstrap, args.prefix + "payments.dlq")}
        deadline = time.monotonic() + args.converge_seconds
        while True:
            found, notify_stats = Anomalies(), Counter()
            notify_commands = notify_model.decode_commands(
                read_topic(args.bootstrap, args.prefix + "notify.commands"), decode_users, Undecodable, found,
                notify_stats)
            notify = notify_model.NotifyFold(found)
            notify.run(read_topic(args.bootstrap, args.prefix + "notify.events"), notify_commands, decode_users,
                       Undecodable)
            dump["notices"] = notify_model.dump_notices(lambda path: http_get(args.gateway, path), fold.aggregates)
            tally = Counter()
            required, allowed = notify_model.judge_notices(fold, payments, users, contacts, erased, dump["notices"],
                                                           found, tally)
            accepted = {"email": notify_model.fetch_accepted(args.notify_email),
                        "sms": notify_model.fetch_accepted(args.notify_sms)}
            notify_model.check_notices(required, allowed, accepted, notify, found)
            dump["notify"] = notify_model.dump_notify(lambda path: http_get(args.gateway, path), notify,
                                                      set(required) | set(allowed))
            notify_model.check_notify_projection(dump["notify"], notify, found)
            if args.analytics:
                dead_letters["notify"] = read_topic(args.bootstrap, args.prefix + "notify.dlq")
                figures = analytics_model.expected_figures(
                    {"orders": fold.records, "users": users.records, "payments": payments.records,
                     "notify": notify.records}, dead_letters, notify_stats)
                dump["analytics"] = analytics_model.dump_analytics(lambda path: http_get(args.gateway, path), figures)
                analytics_model.check_analytics(dump["analytics"], figures, found)
            if found.total() == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        for kind, messages in found.by_kind.items():
            for message in messages:
                anomalies.add(kind, message)
        check_outcomes(read_topic(args.bootstrap, args.prefix + "notify.outcomes"), notify, registry, readers,
                       anomalies, stats)
        stats.update(notify_stats)
        stats.update(notify.stats)
        by_channel = Counter(channel for channel, *_ in required.values())
        outcomes = Counter(item.get("outcome") + (f" {item['reason']}" if item.get("reason") else "")
                           for status, body in dump["notices"].values() if isinstance(body, dict)
                           for item in body.get("items", []))
        final_notifications = Counter(slot["state"]["status"] for slot in notify.notifications().values())
        print(f"oracle: {len(required)} order notices required {dict(sorted(by_channel.items()))}, {len(allowed)} "
              f"allowed (an erasure's race); notices recorded {dict(sorted(outcomes.items()))}; accepted: "
              f"{len(accepted['email']['accepted'])} emails, {len(accepted['sms']['accepted'])} SMS, repeats absorbed "
              f"by their keys {accepted['email']['absorbed_repeats'] + accepted['sms']['absorbed_repeats']}; "
              f"{len(notify.notifications())} notifications in notify.events, final statuses "
              f"{dict(sorted(final_notifications.items()))}; projection dump: {len(dump['notify']['notifications'])} "
              f"notifications, {len(dump['notify']['recipients'])} recipients, {len(dump['notices'])} orders' notices")
        if figures is not None:
            print(f"oracle: analytics: {len(figures.sums)} sums and {len(figures.latencies)} latencies compared, all "
                  f"time and in {len(figures.minutes)} minutes; {len(dump['analytics']['series'])} series read")
        print(f"oracle: notices by the customer's final status: {dict(sorted(tally.items()))}")
        stats.update(tally)
        stats["notices required"] = len(required)
        stats["notices allowed (erasure race)"] = len(allowed)
        for outcome, count in outcomes.items():
            stats[f"notices {outcome}"] = count
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump, indent=1, sort_keys=True))

    ops = Counter((invoke["f"], completion["type"]) for invoke, completion in operations)
    faults = Counter(info.get("fault", "?") for info in infos)
    print("oracle: operations by kind and result:")
    for (f, result), count in sorted(ops.items()):
        print(f"  {f:15} {result:8} {count}")
    print(f"oracle: faults by kind: {dict(sorted(faults.items()))} (total {sum(faults.values())})")
    stats.update(fold.stats)
    print("oracle: log:", dict(sorted(stats.items())))
    stats.update(users.stats)
    final_users = Counter(slot["state"]["status"] for slot in users.users().values())
    print(f"oracle: {len(users.users())} users, final statuses {dict(sorted(final_users.items()))}; "
          f"{sum(1 for slot in users.claims().values() if slot['state']['holder'])} of {len(users.claims())} "
          f"address claims held; {len(users.settled)} users commands settled; projection dump: "
          f"{len(dump['users']['users'])} users, {len(dump['users']['emails'])} addresses, "
          f"{len(dump['users']['commands'])} commands, {len(dump['users']['erasure_probes'])} erasure probes")
    stats.update(payments.stats)
    final_payments = Counter(slot["state"]["status"] for slot in payments.payments().values())
    refunds = Counter(refund["status"] for slot in payments.payments().values() for refund in slot["state"]["refunds"].values())
    print(f"oracle: {len(payments.payments())} payments, final statuses {dict(sorted(final_payments.items()))}, "
          f"refunds {dict(sorted(refunds.items()))}; {len(payments.settled)} payments commands settled; "
          f"provider ledger: {({k: v for k, v in ledger.items() if k != 'by_reference'} if ledger else 'not checked')}; "
          f"projection dump: {len(dump['payments']['payments'])} payments, {len(dump['payments']['orders'])} orders' "
          f"payments, {len(dump['payments']['commands'])} commands")
    final = Counter(slot["state"]["status"] for slot in fold.aggregates.values() if slot["state"])
    print(f"oracle: {len(fold.aggregates)} orders, final statuses {dict(sorted(final.items()))}; "
          f"{len(fold.settled)} commands settled; projection dump: {len(dump['orders'])} orders, "
          f"{len(dump['customers'])} customers, {len(dump['commands'])} commands")
    print(f"oracle: checked in {time.monotonic() - started:.1f} s")
    print(f"oracle: anomalies by kind: {dict(sorted((kind, len(found)) for kind, found in anomalies.by_kind.items()))} "
          f"(total {anomalies.total()})")
    for kind, messages in sorted(anomalies.by_kind.items()):
        for message in messages[:8]:
            print(f"  {kind}: {message}")
        if len(messages) > 8:
            print(f"  {kind}: ... and {len(messages) - 8} more")
    print("oracle-summary " + json.dumps({
        "operations": {f"{f} {result}": count for (f, result), count in ops.items()},
        "faults": faults, "log": stats,
        "anomalies": {kind: len(found) for kind, found in anomalies.by_kind.items()},
    }, sort_keys=True))
    return 1 if anomalies.total() else 0


if __name__ == "__main__":
    sys.exit(main())
