"""What every fold of the checker shares: its own copy of the version gate
(processor design.md, rule 3) and the small views of ids and times the
gateway serves. Written from the rules, sharing no code with the system."""

import uuid
from collections import defaultdict
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
