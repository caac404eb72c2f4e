"""What every fold of the checker shares: its own copy of the version gate
(processor design.md, rule 3) and the small views of ids and times the
gateway serves. Written from the rules, sharing no code with the system."""

import urllib.parse
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone

REJECTED = "foldline.CommandRejected"


def is_uuid(text):
    try:
        uuid.UUID(text)
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def rfc3339_millis(millis):
    seconds, milli = divmod(millis, 1000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"


def without_message(body):
    """A command view with its rejection reduced to the code (the message is prose)."""
    if isinstance(body, dict) and isinstance(body.get("rejection"), dict):
        return dict(body, rejection={"code": body["rejection"].get("code")})
    return body


def command_status_view(settled, noun):
    """GET /v1/commands/{id} of a settled command whose aggregate clients
    call `noun` (order, user, payment, notification)."""
    view = {"command_id": settled["command_id"], "status": settled["status"],
            f"{noun}_id": settled["aggregate_id"], f"{noun}_version": settled["aggregate_version"]}
    if settled["status"] == "rejected":
        view["rejection"] = {"code": settled["rejection_code"]}
    return view


def read_pages(http_get, path):
    """Every item of a paged listing (`limit` and `cursor`, `items` and
    `next_cursor`): (items, [(status, body)] of every page read)."""
    items, cursor, pages = [], None, []
    while True:
        separator = "&" if "?" in path else "?"
        status, body = http_get(path + (f"{separator}cursor={urllib.parse.quote(cursor)}" if cursor else ""))
        pages.append((status, body))
        if status != 200 or not isinstance(body, dict):
            return items, pages
        items.extend(body.get("items", []))
        cursor = body.get("next_cursor")
        if not cursor:
            return items, pages


def settlement(partition, raw, name, record, version):
    """What the log settled for an admitted record's command (the fields an
    outcome carries), the aggregate at `version` after it."""
    meta = record["metadata"]
    rejection = name == REJECTED
    return {
        "command_id": meta["command_id"], "aggregate_id": meta["aggregate_id"],
        "status": "rejected" if rejection else "accepted",
        "aggregate_version": version, "event_id": meta["event_id"], "event_type": name,
        "event_partition": partition, "event_offset": raw.offset,
        "rejection_code": record["code"] if rejection else None,
        "rejection_kind": record["kind"] if rejection else None,
        "logged_at": raw.timestamp, "occurred_at": meta["occurred_at"],
    }


def admitted(events, decode, undecodable, names, anomalies, stats, label="", topic="events"):
    """Every record of `events` (partition -> records in offset order) the
    gate admits, as (partition, raw, record name, record): per partition, a
    record counts iff its command id is a uuid, its base version (event:
    `aggregate_version - 1`, `CommandRejected`: `aggregate_version`) is not
    negative, its command was not settled earlier in that partition, and its
    aggregate is at the base version. `names` are the domain's event records;
    anything else but a rejection is a log-structure anomaly. Statistics go
    to `stats` under `label`."""
    for partition, records in events.items():
        versions = defaultdict(int)
        settled_here = set()
        for raw in records:
            stats[f"{label}records"] += 1
            try:
                name, record = decode(raw.value)
            except undecodable as error:
                stats[f"{label}undecodable"] += 1
                anomalies.add("log-structure", f"{topic}[{partition}]@{raw.offset} undecodable: {error}")
                continue
            meta = record.get("metadata") or {}
            if name != REJECTED and name not in names:
                stats[f"{label}foreign"] += 1
                anomalies.add("log-structure", f"{topic}[{partition}]@{raw.offset} is a {name}")
                continue
            command_id = meta.get("command_id")
            after = meta.get("aggregate_version", -1)
            base = after if name == REJECTED else after - 1
            if not is_uuid(command_id) or base < 0:
                stats[f"{label}foreign"] += 1
                continue
            aggregate = meta["aggregate_id"]
            if raw.key != aggregate.encode():
                anomalies.add("log-structure", f"{topic}[{partition}]@{raw.offset}: key {raw.key!r} is not aggregate {aggregate}")
            if command_id in settled_here:
                stats[f"{label}ignored: command already settled"] += 1
                continue
            if base != versions[aggregate]:
                stats[f"{label}ignored: decided against another version"] += 1
                continue
            stats[f"{label}admitted"] += 1
            settled_here.add(command_id)
            yield partition, raw, name, record
            versions[aggregate] = after


def command_copies(topic, decode, undecodable, anomalies, stats, label, copies_stat, same=None, keep=None):
    """command id -> the copies [(record name, record)] of each command in a
    commands topic, in offset order per partition. A copy that `same`
    (default: equal) finds unlike the first is a log-structure anomaly;
    `keep(copies, copy)` says whether a later copy is kept (default: only
    the first is)."""
    commands = defaultdict(list)
    for records in topic.values():
        for raw in records:
            stats[f"{label}command records"] += 1
            try:
                name, record = decode(raw.value)
            except undecodable:
                stats[f"{label}command records undecodable"] += 1
                continue
            command_id = (record.get("metadata") or {}).get("command_id")
            copies = commands[command_id]
            if copies:
                stats[copies_stat] += 1
                if not (same or (lambda first, copy: first == copy))(copies[0], (name, record)):
                    anomalies.add("log-structure", f"two different {label}commands carry id {command_id}")
                if not (keep and keep(copies, (name, record))):
                    continue
            copies.append((name, record))
    return commands


class GatedFold:
    """One domain's events topic folded through the gate above and the
    domain's own model: the scaffolding every fold of the checker shares
    (admitting a record, keeping each aggregate's versions and states,
    re-deciding every admitted record from its command, settling its
    command). A domain subclass names its topic and gives its model:

      decide(state, name, command)  -> ("event", record name, fields) | ("rejected", code)
      evolve(state, name, event)    -> the state after, or None when illegal
      describe(state)               -> the state in a message
      aggregate_field               the event field naming the aggregate (or None)
      command_aggregate_field       the command field naming the aggregate

    `commands` maps a command id to every copy [(record name, record)] of
    it: the decision must be what one copy decides."""

    label = ""
    topic = "events"
    noun = "aggregate"
    names = frozenset()
    aggregate_field = None
    command_aggregate_field = "aggregate_id"

    def __init__(self, anomalies):
        self.anomalies = anomalies
        self.aggregates = {}  # aggregate id -> {"partition", "version", "state", "history": {version: state}}
        self.settled = {}  # command id -> settlement (the shape check_outcomes compares)
        self.records = []  # every admitted (partition, raw, name, record), in fold order
        self.stats = Counter()

    def decide(self, state, name, command):
        raise NotImplementedError

    def evolve(self, state, name, event):
        raise NotImplementedError

    def describe(self, state):
        return "absent" if state is None else str(state.get("status"))

    def decision_anomaly(self, expected):
        """The kind of anomaly a decision other than `expected` is."""
        return "wrong-decision"

    def run(self, events, commands, decode, undecodable):
        for partition, raw, name, record in admitted(events, decode, undecodable, self.names, self.anomalies,
                                                     self.stats, label=self.label, topic=self.topic):
            self.records.append((partition, raw, name, record))
            self.admit(partition, raw, name, record, commands)

    def where(self, partition, raw):
        return f"{self.topic}[{partition}]@{raw.offset}"

    def admit(self, partition, raw, name, record, commands):
        meta = record["metadata"]
        command_id, aggregate = meta["command_id"], meta["aggregate_id"]
        if command_id in self.settled:
            first = self.settled[command_id]
            self.anomalies.add("applied-twice", f"{self.label}command {command_id} admitted at {self.topic}["
                               f"{first['event_partition']}]@{first['event_offset']} and [{partition}]@{raw.offset}")
        slot = self.aggregates.get(aggregate)
        if slot is None:
            slot = self.aggregates[aggregate] = {"partition": partition, "version": 0, "state": None, "history": {0: None}}
        elif slot["partition"] != partition:
            self.anomalies.add("log-structure", f"{self.noun} {aggregate} has records on partitions "
                               f"{slot['partition']} and {partition}")
        before = slot["state"]
        self.check_decision(partition, raw, name, record, before, commands)
        if name != REJECTED:
            if self.aggregate_field and record.get(self.aggregate_field) != aggregate:
                self.anomalies.add("wrong-decision", f"{self.where(partition, raw)}: event for "
                                   f"{record.get(self.aggregate_field)} under aggregate {aggregate}")
            after = self.evolve(before, name, record)
            if after is None:
                self.anomalies.add("illegal-transition", f"{self.where(partition, raw)}: {name} admitted on "
                                   f"{self.noun} {aggregate} in state {self.describe(before)}")
            else:
                slot["state"] = after
            slot["version"] += 1
            slot["history"][slot["version"]] = slot["state"]
        self.settled[command_id] = settlement(partition, raw, name, record, slot["version"])

    def check_decision(self, partition, raw, name, record, before, commands):
        meta = record["metadata"]
        where = f"{self.where(partition, raw)} ({meta['command_id']})"
        copies = commands.get(meta["command_id"])
        if not copies:
            self.anomalies.add("wrong-decision", f"{where}: no such command in {self.topic.replace('.events', '.commands')}")
            return
        seen, expected_any = None, []
        for command_name, body in copies:
            if body.get(self.command_aggregate_field) != meta["aggregate_id"]:
                self.anomalies.add("wrong-decision", f"{where}: decided for {meta['aggregate_id']}, the command names "
                                   f"{body.get(self.command_aggregate_field)}")
                return
            if meta["occurred_at"] != body["metadata"]["issued_at"] or meta["correlation_id"] != body["metadata"]["correlation_id"]:
                self.anomalies.add("wrong-decision", f"{where}: metadata does not come from the command")
                return
            expected = self.decide(before, command_name, body)
            if name == REJECTED:
                seen = ("rejected", record["code"])
                if record["command_type"] != command_name:
                    self.anomalies.add("wrong-decision", f"{where}: rejection names {record['command_type']}, "
                                       f"the command is {command_name}")
            else:
                fields = expected[2] if expected[0] == "event" else {}
                seen = ("event", name, {field: record.get(field) for field in fields})
            if seen == expected:
                return
            expected_any.append(expected)
        self.anomalies.add(self.decision_anomaly(expected_any[0]), f"{where}: {copies[0][0]} against "
                           f"{self.describe(before)} decides {expected_any[0]}, the log has {seen}")

    def state(self, aggregate):
        slot = self.aggregates.get(aggregate)
        return slot["state"] if slot else None

    def version(self, aggregate):
        slot = self.aggregates.get(aggregate)
        return slot["version"] if slot else 0

    def state_at(self, aggregate, version):
        slot = self.aggregates.get(aggregate)
        if slot is None or version not in slot["history"]:
            return "absent"
        return slot["history"][version]
