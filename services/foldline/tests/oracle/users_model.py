"""The users domain in the independent checker: its own model of users and
email claims, written from the decider's table (services/users/src/domain/
decider.rs and design.md), sharing no code with the system.

`users.events` carries two kinds of stream: users (keyed by user id) and
email claims (keyed by a keyed hash of the address, `claim-<hex>`). The
checker cannot open sealed values (it has no key, and should not): it learns
which plaintext each sealed value stands for from the history (every keyed
request's body) and `users.commands` (every copy of that request's command,
whose command id it derives from the key as the gateway does: UUIDv5 of the
client id and the key). Everything else is folded from the log.

Anomaly kinds added (besides the shared ones: lost-command, applied-twice,
idempotency, client-disagrees, status-disagrees, outcome-disagrees,
missing-outcome, impossible-read, stale-read, wrong-decision,
projection-row, phantom-row, log-structure):
  claim-invariant     at quiescence a claim is held by no user, by an
                      erased one, or by one whose address is another; or a
                      user's address is not held by it
  erased-readable     an erased user's data reads back, or the gateway still
                      seals under its key (a registration retry is not
                      refused `user_erased`)
  plaintext-in-log    personal data a client sent found in the clear in a
                      users topic
"""

import uuid
from collections import Counter, defaultdict

from gate import GatedFold, command_copies, rfc3339_millis, without_message, command_status_view

UNS = "foldline.users."

# services/libs/eventsourcing/src/ids.rs: the namespace of derived ids, and
# `CommandId::from_idempotency_key` = UUIDv5("idempotency/<len>/<client>/<key>").
FOLDLINE_NAMESPACE = uuid.UUID(int=0x6F1DA7B43C2E4E0A9A512B7CD0E4F318)

USER_EVENTS = {UNS + name for name in (
    "UserRegistered", "UserRegistrationRefused", "UserProfileChanged", "UserEmailChanged",
    "UserEmailChangeRefused", "UserDeactivated", "PersonalDataErased")}
CLAIM_EVENTS = {UNS + "EmailClaimed", UNS + "EmailReleased"}
EVENTS = USER_EVENTS | CLAIM_EVENTS

HTTP_USER_COMMANDS = {"register", "change-profile", "change-email", "deactivate", "erase"}
# Rejection codes the processor records for each client command; a 4xx
# carrying one of them is a settled rejection when the log settled the
# command. The gateway answers some of them itself before producing
# anything (a dry run of the decider against the projected user for
# changes, a destroyed key for a registration retry): those are `PRECHECKED`.
LOG_CODES = {
    "register": {"email_taken", "email_already_yours", "not_a_claim"},
    "change-profile": {"user_not_found", "user_deactivated", "user_erased", "nothing_to_change", "not_a_user"},
    "change-email": {"email_taken", "email_already_yours", "not_a_claim"},
    "deactivate": {"user_not_found", "already_deactivated", "user_erased", "not_a_user"},
    "erase": {"user_not_found", "already_erased", "not_a_user"},
}
PRECHECKED = {
    "register": {"user_erased"},
    "change-profile": {"user_not_found", "user_deactivated", "user_erased", "nothing_to_change", "not_a_user"},
    "change-email": {"user_not_found", "user_deactivated", "user_erased", "email_unchanged",
                     "email_change_refused", "not_a_user"},
    "deactivate": set(),
    "erase": set(),
}


def command_id_of_key(client_id, key):
    return str(uuid.uuid5(FOLDLINE_NAMESPACE, f"idempotency/{len(client_id)}/{client_id}/{key}"))


def normal_email(text):
    return text.strip().lower()


def normal_phone(text):
    return "".join(c for c in text.strip() if c not in " -.()")


# ---------------------------------------------------------------- the model

def kind_of(state):
    return None if state is None else state["kind"]


def existing_user(state):
    if state is None:
        return "user_not_found"
    if state["kind"] == "claim":
        return "not_a_user"
    return None


def active_user(state):
    refusal = existing_user(state)
    if refusal:
        return refusal
    return {"deactivated": "user_deactivated", "erased": "user_erased"}.get(state["status"])


def decide(state, name, command):
    """What the decider's table says: ("event", record name, fields) or ("rejected", code)."""
    kind = name[len(UNS):]
    if kind == "ClaimEmail":
        if kind_of(state) == "user":
            return ("rejected", "not_a_claim")
        if state is not None and state["holder"] is not None:
            return ("rejected", "email_already_yours" if state["holder"] == command["user_id"] else "email_taken")
        return ("event", UNS + "EmailClaimed", {
            "claim_key": command["aggregate_id"], "user_id": command["user_id"], "purpose": command["purpose"],
            "email_sealed": command["email_sealed"], "name_sealed": command["name_sealed"],
            "phone_sealed": command["phone_sealed"]})
    if kind == "ReleaseEmail":
        if state is None:
            return ("rejected", "claim_not_found")
        if state["kind"] == "user":
            return ("rejected", "not_a_claim")
        if state["holder"] is None:
            return ("rejected", "claim_already_released")
        if state["holder"] != command["user_id"]:
            return ("rejected", "claim_held_by_another")
        return ("event", UNS + "EmailReleased", {
            "claim_key": command["aggregate_id"], "user_id": command["user_id"], "reason": command["reason"]})
    if kind == "RegisterUser":
        if kind_of(state) == "claim":
            return ("rejected", "not_a_user")
        if kind_of(state) == "user":
            return ("event", UNS + "UserRegistrationRefused", {
                "user_id": command["aggregate_id"], "claim_key": command["claim_key"]})
        return ("event", UNS + "UserRegistered", {
            "user_id": command["aggregate_id"], "claim_key": command["claim_key"],
            "email_sealed": command["email_sealed"], "name_sealed": command["name_sealed"],
            "phone_sealed": command["phone_sealed"]})
    if kind == "ChangeProfile":
        refusal = active_user(state)
        if refusal:
            return ("rejected", refusal)
        if command["name_sealed"] is None and command["phone_sealed"] is None and not command["clear_phone"]:
            return ("rejected", "nothing_to_change")
        return ("event", UNS + "UserProfileChanged", {
            "user_id": command["aggregate_id"], "name_sealed": command["name_sealed"],
            "phone_sealed": command["phone_sealed"], "phone_cleared": command["clear_phone"]})
    if kind == "ChangeEmail":
        refusal = active_user(state)
        if refusal == "not_a_user":
            return ("rejected", refusal)
        if refusal:
            # The claim is held for this user: a refusal event, so it is released.
            return ("event", UNS + "UserEmailChangeRefused", {
                "user_id": command["aggregate_id"], "claim_key": command["claim_key"]})
        if state["claim_key"] == command["claim_key"]:
            return ("rejected", "email_unchanged")
        return ("event", UNS + "UserEmailChanged", {
            "user_id": command["aggregate_id"], "previous_claim_key": state["claim_key"],
            "claim_key": command["claim_key"], "email_sealed": command["email_sealed"]})
    if kind == "DeactivateUser":
        refusal = existing_user(state)
        if refusal:
            return ("rejected", refusal)
        if state["status"] == "deactivated":
            return ("rejected", "already_deactivated")
        if state["status"] == "erased":
            return ("rejected", "user_erased")
        return ("event", UNS + "UserDeactivated", {"user_id": command["aggregate_id"], "reason": command["reason"]})
    if kind == "ErasePersonalData":
        refusal = existing_user(state)
        if refusal:
            return ("rejected", refusal)
        if state["status"] == "erased":
            return ("rejected", "already_erased")
        return ("event", UNS + "PersonalDataErased", {
            "user_id": command["aggregate_id"], "claim_key": state["claim_key"],
            "requested_by": command["requested_by"], "reason": command["reason"]})
    return ("unknown command", name)


def evolve(state, name, event):
    """The state after an admitted event; None when the pairing is illegal."""
    at = event["metadata"]["occurred_at"]
    if name == UNS + "EmailClaimed":
        if kind_of(state) == "user":
            return None
        return {"kind": "claim", "claim_key": event["claim_key"], "holder": event["user_id"], "updated_at": at}
    if name == UNS + "EmailReleased":
        if kind_of(state) != "claim":
            return None
        return {"kind": "claim", "claim_key": event["claim_key"], "holder": None, "updated_at": at}
    if name == UNS + "UserRegistered":
        if state is not None:
            return None
        return {"kind": "user", "user_id": event["user_id"], "status": "active", "claim_key": event["claim_key"],
                "profile": {"email": event["email_sealed"], "name": event["name_sealed"], "phone": event["phone_sealed"]},
                "registered_at": at, "updated_at": at, "deactivation_reason": None, "erasure": None}
    if name in (UNS + "UserRegistrationRefused", UNS + "UserEmailChangeRefused"):
        return state if kind_of(state) != "claim" else None
    if kind_of(state) != "user":
        return None
    state = dict(state, updated_at=at)
    if name == UNS + "UserProfileChanged":
        if state["status"] != "active":
            return None
        if state["profile"] is not None:
            profile = dict(state["profile"])
            if event["name_sealed"] is not None:
                profile["name"] = event["name_sealed"]
            if event["phone_sealed"] is not None:
                profile["phone"] = event["phone_sealed"]
            elif event["phone_cleared"]:
                profile["phone"] = None
            state["profile"] = profile
        return state
    if name == UNS + "UserEmailChanged":
        if state["status"] != "active":
            return None
        state["claim_key"] = event["claim_key"]
        if state["profile"] is not None:
            state["profile"] = dict(state["profile"], email=event["email_sealed"])
        return state
    if name == UNS + "UserDeactivated":
        if state["status"] != "active":
            return None
        return dict(state, status="deactivated", deactivation_reason=event["reason"])
    if name == UNS + "PersonalDataErased":
        if state["status"] == "erased":
            return None
        return dict(state, status="erased", profile=None,
                    erasure={"requested_by": event["requested_by"], "reason": event["reason"], "at": at})
    return None


def describe(state):
    if state is None:
        return "no stream"
    if state["kind"] == "claim":
        return f"claim held by {state['holder']}" if state["holder"] else "released claim"
    return f"user {state['status']}"


# ---------------------------------------------------------------- the fold

class UsersFold(GatedFold):
    """users.events folded through an independent gate and the model above."""

    label = "users "
    topic = "users.events"
    noun = "users aggregate"
    names = EVENTS
    decide, evolve, describe = staticmethod(decide), staticmethod(evolve), staticmethod(describe)

    def users(self):
        return {aggregate: slot for aggregate, slot in self.aggregates.items()
                if slot["state"] is not None and slot["state"]["kind"] == "user"}

    def claims(self):
        return {aggregate: slot for aggregate, slot in self.aggregates.items()
                if slot["state"] is not None and slot["state"]["kind"] == "claim"}


def decode_user_commands(topic, decode, undecodable, anomalies, stats):
    """command id -> every copy [(record name, record)] in users.commands.
    Copies of one keyed request differ in their sealed values only (a retry
    seals again, with a fresh nonce); anything else differing is an anomaly."""
    return command_copies(topic, decode, undecodable, anomalies, stats, "users ",
                          "users command copies (retried, redelivered or duplicated)",
                          same=lambda first, copy: first[0] == copy[0] and unsealed(first[1]) == unsealed(copy[1]),
                          keep=lambda copies, copy: True)


def unsealed(record):
    kept = {field: value for field, value in record.items() if not field.endswith("_sealed")}
    kept["metadata"] = {field: value for field, value in record["metadata"].items() if field != "issued_at"}
    return kept


# ---------------------------------------------------------------- plaintext

class Plaintext:
    """Which plaintext each sealed value stands for, from the requests that
    sent it; and which address each claim key stands for."""

    def __init__(self, operations, commands, client_id, anomalies):
        self.by_sealed = {}
        self.claim_email = {}
        self.request_of = {}  # command id -> (f, key, request body)
        self.raw_of = {}  # command id -> the request body as sent (its bytes are fingerprinted)
        self.values = set()  # every plaintext a client sent
        for invoke, _ in operations:
            if invoke["f"] not in HTTP_USER_COMMANDS or not isinstance(invoke.get("request"), dict):
                continue
            command_id = command_id_of_key(client_id, invoke["key"])
            self.request_of[command_id] = (invoke["f"], invoke["key"], invoke["request"])
            self.raw_of[command_id] = invoke.get("raw")
        for command_id, (f, _, request) in self.request_of.items():
            plain = {}
            if isinstance(request.get("email"), str):
                plain["email_sealed"] = normal_email(request["email"])
            if isinstance(request.get("name"), str):
                plain["name_sealed"] = request["name"].strip()
            if isinstance(request.get("phone"), str):
                plain["phone_sealed"] = normal_phone(request["phone"])
            self.values.update(value for value in plain.values() if len(value) >= 6)
            for name, record in commands.get(command_id, []):
                for field, text in plain.items():
                    sealed = record.get(field)
                    if sealed is not None:
                        self.by_sealed[sealed] = text
                if name == UNS + "ClaimEmail" and "email_sealed" in plain:
                    known = self.claim_email.setdefault(record["aggregate_id"], plain["email_sealed"])
                    if known != plain["email_sealed"]:
                        anomalies.add("log-structure", f"claim {record['aggregate_id']} is claimed for two addresses")

    def open(self, sealed):
        if sealed is None:
            return None
        return self.by_sealed.get(sealed, f"<sealed value of no request: {sealed[:16]}…>")

    def claim_of(self, email):
        keys = [claim for claim, address in self.claim_email.items() if address == email]
        return keys[0] if keys else None


def user_view(state, version, plain):
    if state["profile"] is not None:
        profile = state["profile"]
        email, name, phone = plain.open(profile["email"]), plain.open(profile["name"]), plain.open(profile["phone"])
        personal = "present"
    else:
        email = name = phone = None
        personal = "erased"
    view = {"id": state["user_id"], "status": state["status"], "email": email, "name": name, "phone": phone,
            "personal_data": personal, "version": version,
            "registered_at": rfc3339_millis(state["registered_at"]),
            "updated_at": rfc3339_millis(state["updated_at"])}
    if state["deactivation_reason"] is not None:
        view["deactivation_reason"] = state["deactivation_reason"]
    if state["erasure"] is not None:
        view["erasure"] = {"requested_by": state["erasure"]["requested_by"], "reason": state["erasure"]["reason"],
                           "erased_at": rfc3339_millis(state["erasure"]["at"])}
    return view


def views_at(fold, user_id, version, plain):
    """What a read of the user at `version` may show: the row as the log
    made it, and, when the user is erased later in the log, the same row
    with its personal data gone (the key is destroyed by a follow-up that
    may overtake the projection of the erasure)."""
    state = fold.state_at(user_id, version)
    if state in ("absent", None) or state["kind"] != "user":
        return []
    view = user_view(state, version, plain)
    variants = [view]
    final = fold.state(user_id)
    if final is not None and final.get("status") == "erased" and state["status"] != "erased":
        variants.append(dict(view, email=None, name=None, phone=None, personal_data="erased"))
    return variants


# ---------------------------------------------------------------- checks

def answer_body(completion):
    body = completion.get("body")
    return body if isinstance(body, dict) else {}


def check_users_history(operations, fold, plain, commands, client_id, anomalies):
    seen = []  # (completion time, user id, version)
    for invoke, completion in operations:
        f = invoke["f"]
        if f not in HTTP_USER_COMMANDS or completion["type"] != "ok" or completion.get("status") is None:
            continue
        status, body = completion["status"], answer_body(completion)
        command_id = command_id_of_key(client_id, invoke["key"])
        settled = fold.settled.get(command_id)
        where = f"{f} {invoke['key']} ({command_id})"
        answered_id = completion.get("command_id")
        if answered_id and answered_id != command_id:
            anomalies.add("idempotency", f"{where} answered command id {answered_id}")
        if status in (200, 201):
            if settled is None:
                anomalies.add("lost-command", f"{where} answered {status}, never settled in users.events")
                continue
            if settled["status"] != "accepted":
                anomalies.add("client-disagrees", f"{where}: the client saw {status} {body}, the log rejected it ({settled['rejection_code']})")
                continue
            user_id = body.get("id")
            if body not in views_at(fold, user_id, body.get("version"), plain):
                anomalies.add("impossible-read", f"{where}: answered {body}; the user at that version was "
                              f"{views_at(fold, user_id, body.get('version'), plain)}")
            if f == "register":
                claimed = [record for _, record in commands.get(command_id, [])]
                if claimed and claimed[0]["user_id"] != user_id:
                    anomalies.add("client-disagrees", f"{where}: answered user {user_id}, the claim was for {claimed[0]['user_id']}")
            elif f != "change-email" and settled["aggregate_id"] == user_id and body.get("version", -1) < settled["aggregate_version"]:
                anomalies.add("stale-read", f"{where}: Prefer: wait answered version {body.get('version')}, its command settled version {settled['aggregate_version']}")
            seen.append((completion["time_us"], user_id, body.get("version", 0)))
        elif status == 202:
            if body.get("command_id") != command_id:
                anomalies.add("idempotency", f"{where}: 202 names command {body.get('command_id')}")
            if settled is None:
                anomalies.add("lost-command", f"{where} acknowledged 202 at {completion['time_us']}, never settled in users.events")
        elif 400 <= status < 500 and body.get("code") in LOG_CODES[f] | PRECHECKED[f]:
            code = body["code"]
            if f == "register":
                claimed = [record for _, record in commands.get(command_id, [])]
                user_id = claimed[0]["user_id"] if claimed else None
            else:
                user_id = invoke.get("user_id")
            user = fold.state(user_id) if user_id else None
            erased = kind_of(user) == "user" and user["status"] == "erased"
            if code in PRECHECKED[f]:
                # The gateway refuses some requests itself, before producing:
                # a first attempt by a dry run against the projected user,
                # and, once a subject is erased, any request that would seal
                # under its destroyed key (design.md: a registration retried
                # after erasure is 409 user_erased). Never a command the log
                # applied, except that documented one.
                if settled is not None and settled["status"] == "accepted" and not (code == "user_erased" and erased):
                    anomalies.add("client-disagrees", f"{where}: refused {code} by the gateway; the log applied the command")
                if code == "user_erased" and not erased:
                    anomalies.add("client-disagrees", f"{where}: refused user_erased, the log has {describe(user)}")
            elif settled is None:
                anomalies.add("lost-command", f"{where}: the client saw rejection {code}; the log never settled the command")
            elif settled["status"] != "rejected" or settled["rejection_code"] != code:
                anomalies.add("client-disagrees", f"{where}: the client saw rejection {code}, the log settled "
                              f"{settled['status']} {settled['rejection_code']}")

    seen.sort()
    for invoke, completion in operations:
        if invoke["f"] != "read-user" or completion["type"] != "ok":
            continue
        status, body, user_id = completion.get("status"), answer_body(completion), invoke["user_id"]
        if status == 200:
            if body not in views_at(fold, user_id, body.get("version"), plain):
                anomalies.add("impossible-read", f"GET /v1/users/{user_id} saw {body}; at that version the user was "
                              f"{views_at(fold, user_id, body.get('version'), plain)}")
            version = body.get("version", 0)
        elif status == 404:
            version = 0
        else:
            continue
        floor = max((v for at, user, v in seen if user == user_id and at < invoke["time_us"]), default=0)
        if version < floor:
            anomalies.add("stale-read", f"GET /v1/users/{user_id} at {invoke['time_us']} saw version {version}, "
                          f"an operation that completed before it saw {floor}")
        if status == 200:
            seen.append((completion["time_us"], user_id, version))
    for invoke, completion in operations:
        if invoke["f"] == "find-user" and completion["type"] == "ok" and completion.get("status") == 200:
            body = answer_body(completion)
            if body not in views_at(fold, body.get("id"), body.get("version"), plain):
                anomalies.add("impossible-read", f"GET /v1/users?email={invoke['email']} saw {body}; at that version the user was "
                              f"{views_at(fold, body.get('id'), body.get('version'), plain)}")
        if invoke["f"] == "command-status" and completion["type"] == "ok" and completion.get("status") == 200:
            settled = fold.settled.get(invoke["command_id"])
            body = answer_body(completion)
            if settled is None or body.get("status") == "pending":
                continue
            if without_message(body) != status_view(settled):
                anomalies.add("status-disagrees", f"GET /v1/commands/{invoke['command_id']} answered {body}, the log settled {status_view(settled)}")


def check_claims(fold, anomalies):
    """At quiescence: a claim is held iff a user that is not erased holds it
    as its current address (design.md)."""
    users = fold.users()
    for claim, slot in fold.claims().items():
        holder = slot["state"]["holder"]
        if holder is None:
            continue
        user = users.get(holder)
        if user is None:
            anomalies.add("claim-invariant", f"{claim} is held by {holder}, who is no registered user")
        elif user["state"]["status"] == "erased":
            anomalies.add("claim-invariant", f"{claim} is still held by {holder}, whose personal data is erased")
        elif user["state"]["claim_key"] != claim:
            anomalies.add("claim-invariant", f"{claim} is held by {holder}, whose address is {user['state']['claim_key']}")
    claims = fold.claims()
    for user_id, slot in users.items():
        state = slot["state"]
        if state["status"] == "erased":
            continue
        claim = claims.get(state["claim_key"])
        if claim is None or claim["state"]["holder"] != user_id:
            anomalies.add("claim-invariant", f"user {user_id}'s address {state['claim_key']} is held by "
                          f"{claim['state']['holder'] if claim else 'no claim'}")


def check_no_plaintext(topics, plain, anomalies, stats):
    """No value a client sent is in any users topic in the clear."""
    blob = bytearray()
    for name, partitions in topics.items():
        for records in partitions.values():
            for raw in records:
                stats["users records scanned for plaintext"] += 1
                for part in [raw.key, raw.value] + [value for value in raw.headers.values()]:
                    if part:
                        blob += part
                        blob += b"\x00"
    blob = bytes(blob)
    for value in sorted(plain.values):
        if value.encode() in blob:
            anomalies.add("plaintext-in-log", f"{value!r} is in a users topic in the clear")


def status_view(settled):
    return command_status_view(settled, "user")


# ---------------------------------------------------------------- the live projection

def dump_users(http_get, http_post, fold, plain, operations, commands):
    """Every users row the gateway serves for any id or address the log or
    the history names, every users command's status, and the erasure
    probes: each erased user's registration sent again with its key."""
    user_ids = set(fold.users())
    emails = set(plain.claim_email.values())
    for claim in fold.claims().values():
        if claim["state"]["holder"]:
            user_ids.add(claim["state"]["holder"])
    for copies in commands.values():
        for name, record in copies:
            if name == UNS + "ClaimEmail":
                user_ids.add(record["user_id"])
    for invoke, completion in operations:
        if invoke.get("user_id"):
            user_ids.add(invoke["user_id"])
        if invoke["f"] in ("register", "change-email", "find-user") and invoke.get("email"):
            emails.add(normal_email(invoke["email"]))
        body = completion.get("body")
        if invoke["f"] == "register" and isinstance(body, dict):
            for field in ("id", "user_id"):
                if isinstance(body.get(field), str):
                    user_ids.add(body[field])
    dump = {"users": {}, "emails": {}, "commands": {}, "erasure_probes": {}}
    for user_id in sorted(user_ids):
        dump["users"][user_id] = http_get(f"/v1/users/{user_id}")
    for email in sorted(emails):
        dump["emails"][email] = http_get(f"/v1/users?email={email}")
    for command_id in sorted(set(fold.settled) | set(plain.request_of)):
        dump["commands"][command_id] = http_get(f"/v1/commands/{command_id}")
    erased = {user_id for user_id, slot in fold.users().items() if slot["state"]["status"] == "erased"}
    for command_id, (f, key, request) in sorted(plain.request_of.items()):
        claimed = [record for _, record in commands.get(command_id, [])]
        if f == "register" and claimed and claimed[0]["user_id"] in erased:
            dump["erasure_probes"][key] = http_post("/v1/users", plain.raw_of[command_id], key)
    return dump


def check_users_projection(dump, fold, plain, found):
    users = fold.users()
    for user_id, (status, body) in dump["users"].items():
        slot = users.get(user_id)
        if slot is None:
            if status != 404:
                found.add("phantom-row", f"GET /v1/users/{user_id} answers {status} {body}; the log has no such user")
            continue
        expected = user_view(slot["state"], slot["version"], plain)
        if status != 200 or body != expected:
            found.add("projection-row", f"GET /v1/users/{user_id} answers {status} {body}; the fold is {expected}")
        if slot["state"]["status"] == "erased" and isinstance(body, dict) and any(
                body.get(field) is not None for field in ("email", "name", "phone")):
            found.add("erased-readable", f"GET /v1/users/{user_id} shows personal data of an erased user: {body}")
    claims = fold.claims()
    for email, (status, body) in dump["emails"].items():
        claim = claims.get(plain.claim_of(email) or "")
        holder = claim["state"]["holder"] if claim else None
        expected = None
        if holder in users:
            expected = user_view(users[holder]["state"], users[holder]["version"], plain)
        if expected is None:
            if status != 404:
                found.add("phantom-row", f"GET /v1/users?email={email} answers {status} {body}; no user holds the address")
        elif status != 200 or body != expected:
            found.add("projection-row", f"GET /v1/users?email={email} answers {status} {body}; the fold is {expected}")
    for command_id, (status, body) in dump["commands"].items():
        settled = fold.settled.get(command_id)
        if settled is None:
            if status == 200 and isinstance(body, dict) and body.get("status") != "pending":
                found.add("phantom-row", f"GET /v1/commands/{command_id} answers {body}; users.events never settled it")
            continue
        if status != 200 or without_message(body) != status_view(settled):
            found.add("projection-row", f"GET /v1/commands/{command_id} answers {status} {body}; the log settled {status_view(settled)}")
    for key, (status, body) in dump["erasure_probes"].items():
        if status != 409 or not isinstance(body, dict) or body.get("code") != "user_erased":
            found.add("erased-readable", f"the registration {key} of an erased user, sent again, answers {status} {body} "
                      "(its data key is not destroyed)")
