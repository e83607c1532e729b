#!/usr/bin/env python3
"""OMEMO over PEP, end to end, with slixmpp-omemo as the client.

Several slixmpp clients run in one process (one asyncio loop):

  alice   registers (or signs in), enables slixmpp-omemo
  bob     the same; alice and bob become mutual presence contacts
  carol   (--stranger) a user in nobody's roster, who writes to alice
  alice2  (--second-device) a second OMEMO device of alice's account

Phases (each check is printed as a "CHECK PASS|FAIL|INFO name: detail" line,
and the whole report is written as JSON with --report):

  1. init      every client generates its OMEMO identity and publishes its
               device lists and bundles (both eu.siacs.conversations.axolotl
               and urn:xmpp:omemo:2) through slixmpp-omemo's own code
  2. roster    alice and bob subscribe to each other's presence
  3. devlists  each waits until a PEP notification brings the other's
               device list, in both namespaces (no manual fetch)
  4. oldmemo   alice sends bob an OMEMO (eu.siacs.conversations.axolotl)
               message, bob decrypts and prints it and answers, alice
               decrypts and prints the answer
  5. omemo2    urn:xmpp:omemo:2: device list and bundle fetched as the
               plugin fetches them (bundle by item id); then a raw omemo:2
               message (python-omemo's twomemo, without the SCE envelope,
               which slixmpp-omemo 2.2.0 does not implement) alice -> bob
  6. stranger  (--stranger) carol, not a contact, encrypts to alice: the
               plugin subscribes to alice's device list nodes (XEP-0060
               subscribe) and downloads them; alice decrypts and answers
  7. device2   (--second-device) alice2 signs in to alice's account: the
               device lists grow to two devices, the omemo:2 bundles node
               holds two items; bob must be notified, must fetch each bundle
               by item id, and both of alice's devices must decrypt bob's
               next message (oldmemo and raw omemo:2)
  8. preexist  (--preexisting) dave's OMEMO nodes already exist with the PEP
               defaults (a plain client published there without options):
               slixmpp-omemo must hit precondition-not-met, reconfigure the
               node (pubsub#owner configure) and publish again
  9. probes    (--probes) raw pubsub requests on a scratch node, the PEP
               behaviours OMEMO clients rely on (publish-options and
               precondition-not-met, node configuration, several items with
               ids, items by id and max_items, retract with and without
               notify, node deletion, access models, disco#info)

Every stanza each client sends and receives is written, tagged with the
client's name, to --xml-log.

Exit status: 0 when every required check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
import time
import traceback
from typing import Any, Dict, FrozenSet, List, Optional, Set
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import JID
from slixmpp.plugins import register_plugin  # type: ignore[attr-defined]

from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType

import oldmemo
import oldmemo.etree
import oldmemo.oldmemo
import twomemo
import twomemo.etree
import twomemo.twomemo

from slixmpp_omemo import TrustLevel, XEP_0384
from slixmpp_omemo import xep_0384 as slix_omemo_impl

OLD_NS = oldmemo.oldmemo.NAMESPACE            # eu.siacs.conversations.axolotl
NEW_NS = twomemo.twomemo.NAMESPACE            # urn:xmpp:omemo:2
OLD_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
NEW_DEVICES = "urn:xmpp:omemo:2:devices"
NEW_BUNDLES = "urn:xmpp:omemo:2:bundles"
PROBE_NODE = "urn:example:omemo-probe"        # bob has +notify for it
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"

log = logging.getLogger("omemo-peer")


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

class Report:
    def __init__(self) -> None:
        self.checks: List[Dict[str, Any]] = []
        self.t0 = time.monotonic()

    def check(self, name: str, ok: Optional[bool], detail: str = "", required: bool = False,
              **extra: Any) -> Optional[bool]:
        status = "INFO" if ok is None else ("PASS" if ok else "FAIL")
        entry = {"name": name, "status": status, "detail": detail, "required": required,
                 "t": round(time.monotonic() - self.t0, 2)}
        entry.update(extra)
        self.checks.append(entry)
        print(f"CHECK {status} {name}: {detail}", flush=True)
        return ok

    def say(self, text: str) -> None:
        print(text, flush=True)

    @property
    def failed_required(self) -> List[Dict[str, Any]]:
        return [c for c in self.checks if c["required"] and c["status"] == "FAIL"]


REPORT = Report()


def err_of(e: BaseException) -> str:
    """A short description of an exception, with the iq error's XML."""
    if isinstance(e, IqError):
        return f"IqError {e.iq['error']['type']}/{e.condition}: {str(e.iq['error'].xml and ET.tostring(e.iq['error'].xml, encoding='unicode'))}"
    if isinstance(e, IqTimeout):
        return "IqTimeout (no answer)"
    chain = []
    cur: Any = e
    while cur is not None:
        chain.append(f"{type(cur).__name__}: {cur}")
        if isinstance(cur, IqError):
            chain.append(ET.tostring(cur.iq["error"].xml, encoding="unicode"))
        cur = getattr(cur, "__cause__", None) or getattr(cur, "__context__", None)
        if len(chain) > 8:
            break
    return " <- ".join(chain)


# ---------------------------------------------------------------------------
# slixmpp-omemo plugin: in-memory storage, blind trust
# ---------------------------------------------------------------------------

class MemoryStorage(Storage):
    """python-omemo storage kept in a dict (one per client/device)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: Dict[str, JSONType] = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        if key in self.data:
            return Just(self.data[key])
        return Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class XEP_0384Impl(XEP_0384):  # pylint: disable=invalid-name
    """slixmpp-omemo with a per-client storage and Blind Trust Before Verification."""

    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    @property
    def storage(self) -> Storage:
        return self.xmpp.omemo_storage  # type: ignore[attr-defined]

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
        log.info("[%s] blindly trusted %s", self.xmpp.name,  # type: ignore[attr-defined]
                 sorted((d.bare_jid, d.device_id) for d in blindly_trusted))

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation],
                                   identifier: Optional[str]) -> None:
        sm = await self.get_session_manager()
        for d in manually_trusted:
            await sm.set_trust(d.bare_jid, d.identity_key, TrustLevel.TRUSTED.value)


register_plugin(XEP_0384Impl)


# ---------------------------------------------------------------------------
# One client
# ---------------------------------------------------------------------------

def device_ids_in(item_xml: ET.Element) -> Set[int]:
    ids: Set[int] = set()
    for el in item_xml.iter():
        if el.tag in (f"{{{OLD_NS}}}device", f"{{{NEW_NS}}}device") and el.get("id", "").isdigit():
            ids.add(int(el.get("id")))
    return ids


class Client(slixmpp.ClientXMPP):
    def __init__(self, name: str, jid: str, password: str, args: argparse.Namespace,
                 xml_log, extra_interest: Optional[str] = None, omemo: bool = True) -> None:
        super().__init__(jid, password, plugin_config={
            # Plaintext on loopback, on purpose (both servers allow it here).
            "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True},
        })
        self.name = name
        self.args = args
        self.xml_log = xml_log
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.omemo_storage = MemoryStorage()
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        self.fail_reason = ""
        # (from bare, node, item id, device ids) of device-list notifications
        self.devlist_events: List[tuple] = []
        # (kind, node, from, item id) of other pubsub notifications
        self.pubsub_events: List[tuple] = []
        # decrypted messages: (namespace, from bare, device id, text)
        self.inbox: List[tuple] = []
        self.decrypt_errors: List[str] = []
        self.plain_messages: List[tuple] = []

        for p in ("xep_0004", "xep_0030", "xep_0060", "xep_0077", "xep_0115", "xep_0163",
                  "xep_0199", "xep_0280", "xep_0334"):
            self.register_plugin(p)
        if omemo:
            self.register_plugin("xep_0384", module=sys.modules[__name__])
        self.plugin["xep_0077"].create_account = args.register
        if extra_interest:
            self.plugin["xep_0163"].add_interest(extra_interest)

        self.add_filter("in", self._log_in)
        self.add_filter("out", self._log_out)
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("oldmemo_device_list_publish", self.on_devlist)
        self.add_event_handler("twomemo_device_list_publish", self.on_devlist)
        for kind in ("publish", "retract", "delete", "purge", "config"):
            # slixmpp fires pubsub_* for every node (and <name>_* for mapped ones)
            self.add_event_handler(f"pubsub_{kind}", lambda m, k=kind: self.on_pubsub(k, m))

    # -- XML capture -------------------------------------------------------
    def _write(self, direction: str, stanza) -> None:
        if self.xml_log is not None:
            self.xml_log.write(f"{time.strftime('%H:%M:%S')} [{self.name}] {direction} {stanza}\n")
            self.xml_log.flush()

    def _log_in(self, stanza):
        self._write("RECV", stanza)
        return stanza

    def _log_out(self, stanza):
        self._write("SEND", stanza)
        return stanza

    # -- session -----------------------------------------------------------
    async def on_register(self, _form) -> None:
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=10)
            REPORT.say(f"[{self.name}] registered {self.boundjid.bare}")
        except IqError as e:
            # conflict: the account exists already; sign in to it.
            REPORT.say(f"[{self.name}] registration: {e.condition} (signing in)")

    async def on_start(self, _event) -> None:
        try:
            await self.get_roster(timeout=10)
        except Exception as e:  # noqa: BLE001
            REPORT.say(f"[{self.name}] roster: {err_of(e)}")
        self.send_presence()
        self.started.set()

    def on_failed_auth(self, _event) -> None:
        self.fail_reason = "authentication failed"
        self.failed.set()

    # -- PEP notifications ---------------------------------------------------
    def on_devlist(self, msg) -> None:
        items = msg["pubsub_event"]["items"]
        node = items["node"]
        # NB: not "for item in items": slixmpp stanzas keep one shared
        # iteration index, and xep_0060 is iterating this very stanza while
        # it calls us; a nested loop restarts its loop forever.
        for item in list(items.iterables):
            ids = device_ids_in(item.xml)
            self.devlist_events.append((msg["from"].bare, node, item["id"], ids))
            REPORT.say(f"[{self.name}] PEP notification {node} from {msg['from']} "
                       f"item={item['id']!r} devices={sorted(ids)}")

    def on_pubsub(self, kind: str, msg) -> None:
        ev = msg["pubsub_event"]
        node = ev["items"]["node"] or ev["delete"]["node"] or ev["purge"]["node"] or ev["configuration"]["node"]
        ids = []
        if kind in ("publish", "retract"):
            for it in list(ev["items"].iterables):  # see on_devlist
                ids.append(it["id"])
        self.pubsub_events.append((kind, node, msg["from"].bare, tuple(ids)))
        REPORT.say(f"[{self.name}] pubsub event {kind} node={node} from={msg['from']} ids={ids}")

    # -- messages ------------------------------------------------------------
    async def on_message(self, msg) -> None:
        if msg["type"] not in ("chat", "normal"):
            return
        sender = msg["from"].bare
        if "xep_0384" not in self.plugin:
            return
        xep = self.plugin["xep_0384"]
        namespaces = xep.is_encrypted(msg)
        if not namespaces:
            if msg["body"]:
                self.plain_messages.append((sender, msg["body"]))
            return
        try:
            if NEW_NS in namespaces:
                # Raw omemo:2 (no SCE): decrypt with the session manager.
                elt = msg.xml.find(f"{{{NEW_NS}}}encrypted")
                message = twomemo.etree.parse_message(elt, sender)
                sm = await xep.get_session_manager()
                plaintext, device, *_ = await sm.decrypt(message)
                if plaintext is not None:
                    text = plaintext.decode("utf-8")
                    self.inbox.append((NEW_NS, sender, device.device_id, text))
                    REPORT.say(f"[{self.name}] DECRYPTED omemo:2 (raw) from {sender} "
                               f"device {device.device_id}: {text}")
                return
            dec, device = await xep.decrypt_message(msg)
            body = dec["body"]
            if body:
                self.inbox.append((OLD_NS, sender, device.device_id, body))
                REPORT.say(f"[{self.name}] DECRYPTED oldmemo from {sender} "
                           f"device {device.device_id}: {body}")
        except Exception as e:  # noqa: BLE001
            detail = f"from {sender}: {err_of(e)}"
            self.decrypt_errors.append(detail)
            REPORT.say(f"[{self.name}] decryption failed {detail}")

    # -- helpers ---------------------------------------------------------------
    async def sm(self):
        return await self.plugin["xep_0384"].get_session_manager()

    async def own_device_id(self) -> int:
        own, _ = await (await self.sm()).get_own_device_information()
        return own.device_id

    async def send_oldmemo(self, to: str, body: str) -> tuple:
        msg = self.make_message(mto=JID(to), mtype="chat")
        msg["body"] = body
        enc, errors = await self.plugin["xep_0384"].encrypt_message(msg, JID(to))
        if errors:
            REPORT.say(f"[{self.name}] non-critical encryption errors: {[err_of(e) for e in errors]}")
        if enc is None:
            raise RuntimeError("nothing to send")
        enc.send()
        return enc, errors

    async def send_twomemo_raw(self, to: str, text: str):
        xep = self.plugin["xep_0384"]
        await xep.refresh_device_lists({JID(to)})
        sm = await self.sm()
        messages, errors = await sm.encrypt(frozenset({to}), {NEW_NS: text.encode("utf-8")},
                                            backend_priority_order=[NEW_NS])
        msg = self.make_message(mto=JID(to), mtype="chat")
        msg["body"] = "omemo:2 raw test (no SCE)"
        for m in messages:
            msg.append(twomemo.etree.serialize_message(m))
        msg.enable("store")
        msg.send()
        return messages, errors




# ---------------------------------------------------------------------------
# Waiting helpers
# ---------------------------------------------------------------------------

async def until(pred, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())


async def start_client(c: Client, host: str, port: int, timeout: float) -> bool:
    c.connect(host, port)
    done = await until(lambda: c.started.is_set() or c.failed.is_set(), timeout)
    if not c.started.is_set():
        REPORT.check(f"{c.name}: sign in", False, c.fail_reason or "no session within timeout",
                     required=True)
        return False
    REPORT.say(f"[{c.name}] signed in as {c.boundjid}")
    if "xep_0384" not in c.plugin:
        return True
    # slixmpp-omemo builds its session manager at bind time: it downloads
    # our own device lists, publishes our bundles (both namespaces) and the
    # device lists with us in them. Any failure surfaces here.
    try:
        sm = await asyncio.wait_for(c.sm(), timeout)
        own = await c.own_device_id()
        REPORT.check(f"{c.name}: OMEMO init (publish own device lists + bundles)", True,
                     f"device id {own}", required=True)
        return True
    except Exception as e:  # noqa: BLE001
        REPORT.check(f"{c.name}: OMEMO init (publish own device lists + bundles)", False,
                     err_of(e), required=True)
        traceback.print_exc()
        return False


# ---------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------

async def phase_roster(alice: Client, bob: Client, timeout: float) -> bool:
    a, b = alice.boundjid.bare, bob.boundjid.bare
    alice.send_presence_subscription(pto=b)
    # slixmpp auto-authorizes and auto-subscribes back (auto_authorize/auto_subscribe).
    ok = await until(lambda: alice.client_roster.has_jid(b) and bob.client_roster.has_jid(a)
                     and alice.client_roster[b]["subscription"] == "both"
                     and bob.client_roster[a]["subscription"] == "both", timeout)
    detail = (f"alice sees {alice.client_roster[b]['subscription'] if alice.client_roster.has_jid(b) else None}, "
              f"bob sees {bob.client_roster[a]['subscription'] if bob.client_roster.has_jid(a) else None}")
    return bool(REPORT.check("roster: alice<->bob mutual subscription (both)", ok, detail, required=True))


def saw_devlist(c: Client, other: str, node: str, device: int) -> bool:
    return any(f == other and n == node and device in ids for f, n, _i, ids in c.devlist_events)


async def phase_devlists(pairs, timeout: float) -> bool:
    """pairs: [(receiver client, owner client, owner device id)]"""
    all_ok = True
    for node in (OLD_DEVICES, NEW_DEVICES):
        for rx, owner, dev in pairs:
            ob = owner.boundjid.bare
            ok = await until(lambda: saw_devlist(rx, ob, node, dev), timeout)
            seen = [(n, i, sorted(ids)) for f, n, i, ids in rx.devlist_events if f == ob]
            REPORT.check(f"PEP notify: {rx.name} gets {owner.name}'s {node}", ok,
                         f"expected device {dev}; notifications from {owner.name}: {seen}",
                         required=True)
            all_ok &= ok
    return all_ok


async def check_device_known(rx: Client, owner: Client, dev: int, required: bool = True) -> bool:
    sm = await rx.sm()
    infos = await sm.get_device_information(owner.boundjid.bare)
    found = {d.device_id: sorted(d.namespaces) for d in infos}
    ok = dev in found and set(found[dev]) >= {OLD_NS, NEW_NS}
    REPORT.check(f"{rx.name}'s session manager knows {owner.name}'s device (both namespaces)", ok,
                 f"{found}", required=required)
    return ok


async def fallback_fetch(rx: Client, owner: Client) -> None:
    try:
        await rx.plugin["xep_0384"].refresh_device_lists({JID(owner.boundjid.bare)}, force_download=True)
        REPORT.say(f"[{rx.name}] (fallback) downloaded {owner.name}'s device lists by hand")
    except Exception as e:  # noqa: BLE001
        REPORT.say(f"[{rx.name}] (fallback) device list download failed: {err_of(e)}")


async def expect_inbox(c: Client, ns: str, sender: str, text: str, timeout: float) -> bool:
    return await until(lambda: any(n == ns and s == sender and t == text for n, s, _d, t in c.inbox),
                       timeout)


async def phase_oldmemo(alice: Client, bob: Client, timeout: float) -> bool:
    a, b = alice.boundjid.bare, bob.boundjid.bare
    ok_all = True
    text1 = "Hello Bob, this is OMEMO (eu.siacs.conversations.axolotl) from Alice"
    try:
        enc, errors = await alice.send_oldmemo(b, text1)
        kinds = sorted({el.tag for el in enc.xml if "encrypted" in el.tag})
        REPORT.check("oldmemo: alice encrypts for bob", True,
                     f"elements {kinds}, non-critical errors: {[err_of(e) for e in errors]}",
                     required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("oldmemo: alice encrypts for bob", False, err_of(e), required=True)
        return False
    ok = await expect_inbox(bob, OLD_NS, a, text1, timeout)
    ok_all &= bool(REPORT.check("oldmemo: bob decrypts alice's message", ok,
                                f"inbox={bob.inbox[-3:]} errors={bob.decrypt_errors}", required=True))
    text2 = "Hi Alice, Bob here: got it, answering encrypted"
    try:
        await bob.send_oldmemo(a, text2)
        REPORT.check("oldmemo: bob encrypts an answer for alice", True, "", required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("oldmemo: bob encrypts an answer for alice", False, err_of(e), required=True)
        return False
    ok = await expect_inbox(alice, OLD_NS, b, text2, timeout)
    ok_all &= bool(REPORT.check("oldmemo: alice decrypts bob's answer", ok,
                                f"inbox={alice.inbox[-3:]} errors={alice.decrypt_errors}", required=True))
    return ok_all


async def fetch_new_bundle(rx: Client, owner_bare: str, dev: int, label: str, required: bool) -> bool:
    """The omemo:2 bundle, fetched as slixmpp-omemo fetches it (items with one item id)."""
    x60 = rx.plugin["xep_0060"]
    try:
        iq = await x60.get_items(JID(owner_bare), NEW_BUNDLES, item_ids=[str(dev)], timeout=10)
        ids = [it["id"] for it in iq["pubsub"]["items"]]
        ok = ids == [str(dev)]
        REPORT.check(f"omemo:2: {label} bundles node, item id {dev} (XEP-0060 6.5.8)", ok,
                     f"asked for item {dev}, got items {ids}", required=required)
    except Exception as e:  # noqa: BLE001
        REPORT.check(f"omemo:2: {label} bundles node, item id {dev} (XEP-0060 6.5.8)", False,
                     err_of(e), required=required)
        ok = False
    try:
        bundle = await slix_omemo_impl._download_bundle(x60, NEW_NS, owner_bare, dev)  # noqa: SLF001
        REPORT.check(f"omemo:2: {label} bundle via slixmpp-omemo's download", True,
                     f"parsed bundle of device {bundle.device_id}", required=required)
    except Exception as e:  # noqa: BLE001
        REPORT.check(f"omemo:2: {label} bundle via slixmpp-omemo's download", False,
                     err_of(e), required=required)
        ok = False
    return ok


async def phase_omemo2(alice: Client, bob: Client, devs: Dict[str, int], timeout: float) -> bool:
    ok_all = True
    for rx, owner in ((alice, bob), (bob, alice)):
        ob = owner.boundjid.bare
        x60 = rx.plugin["xep_0060"]
        try:
            iq = await x60.get_items(JID(ob), NEW_DEVICES, max_items=1, timeout=10)
            items = list(iq["pubsub"]["items"])
            ids = device_ids_in(items[0].xml) if items else set()
            parsed = twomemo.etree.parse_device_list(next(iter(items[0].xml))) if items else {}
            ok = len(items) == 1 and items[0]["id"] == "current" and devs[owner.name] in ids
            REPORT.check(f"omemo:2: {rx.name} fetches {owner.name}'s {NEW_DEVICES} (max_items=1)", ok,
                         f"items={[i['id'] for i in items]} devices={sorted(ids)} parsed={parsed}",
                         required=True)
        except Exception as e:  # noqa: BLE001
            REPORT.check(f"omemo:2: {rx.name} fetches {owner.name}'s {NEW_DEVICES} (max_items=1)", False,
                         err_of(e), required=True)
            ok = False
        ok_all &= ok
        ok_all &= await fetch_new_bundle(rx, ob, devs[owner.name], f"{rx.name} fetches {owner.name}'s", True)
        # the oldmemo bundle node too, as the plugin fetches it
        try:
            iq = await x60.get_items(JID(ob), f"eu.siacs.conversations.axolotl.bundles:{devs[owner.name]}",
                                     max_items=1, timeout=10)
            ids = [it["id"] for it in iq["pubsub"]["items"]]
            REPORT.check(f"oldmemo: {rx.name} fetches {owner.name}'s bundles:{devs[owner.name]} (max_items=1)",
                         ids == ["current"], f"items {ids}", required=True)
        except Exception as e:  # noqa: BLE001
            REPORT.check(f"oldmemo: {rx.name} fetches {owner.name}'s bundles:{devs[owner.name]} (max_items=1)",
                         False, err_of(e), required=True)
            ok_all = False
    # raw omemo:2 message alice -> bob
    text = "omemo:2 raw payload from Alice to Bob"
    try:
        messages, errors = await alice.send_twomemo_raw(bob.boundjid.bare, text)
        REPORT.check("omemo:2 raw: alice encrypts for bob", len(messages) > 0,
                     f"{len(messages)} message(s), non-critical errors {[err_of(e) for e in errors]}",
                     required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("omemo:2 raw: alice encrypts for bob", False, err_of(e), required=True)
        return False
    ok = await expect_inbox(bob, NEW_NS, alice.boundjid.bare, text, timeout)
    ok_all &= bool(REPORT.check("omemo:2 raw: bob decrypts", ok,
                                f"errors={bob.decrypt_errors}", required=True))
    return ok_all


async def phase_stranger(carol: Client, alice: Client, devs: Dict[str, int], timeout: float) -> bool:
    a, c = alice.boundjid.bare, carol.boundjid.bare
    ok_all = True
    # What slixmpp-omemo does for a non-contact (refresh_device_lists): an
    # XEP-0060 subscription to each device list node, then a download.
    for node in (OLD_DEVICES, NEW_DEVICES):
        try:
            iq = await carol.plugin["xep_0060"].subscribe(JID(a), node, timeout=10)
            sub = iq["pubsub"]["subscription"]
            REPORT.check(f"stranger: carol subscribes to alice's {node} (XEP-0060 6.1)",
                         sub["subscription"] == "subscribed",
                         f"subscription={sub['subscription']!r} jid={sub['jid']}", required=False)
        except Exception as e:  # noqa: BLE001
            REPORT.check(f"stranger: carol subscribes to alice's {node} (XEP-0060 6.1)", False,
                         err_of(e), required=False)
    text = "Hello Alice, Carol here (not in your roster), OMEMO"
    try:
        await carol.send_oldmemo(a, text)
        subscribed = {ns: (await carol.omemo_storage.load_primitive(f"/slixmpp/subscribed/{a}/{ns}", bool)).maybe(None)
                      for ns in (OLD_NS, NEW_NS)}
        REPORT.check("stranger: carol encrypts for alice (device lists downloaded)", True,
                     f"plugin's subscribed flags: {subscribed}", required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("stranger: carol encrypts for alice (device lists downloaded)", False, err_of(e),
                     required=True)
        return False
    ok = await expect_inbox(alice, OLD_NS, c, text, timeout)
    ok_all &= bool(REPORT.check("stranger: alice decrypts carol's message", ok,
                                f"errors={alice.decrypt_errors}", required=True))
    text2 = "Hi Carol, Alice answering encrypted"
    try:
        await alice.send_oldmemo(c, text2)
    except Exception as e:  # noqa: BLE001
        REPORT.check("stranger: alice encrypts answer for carol", False, err_of(e), required=True)
        return False
    ok = await expect_inbox(carol, OLD_NS, a, text2, timeout)
    ok_all &= bool(REPORT.check("stranger: carol decrypts alice's answer", ok,
                                f"errors={carol.decrypt_errors}", required=True))
    return ok_all


async def phase_second_device(alice2: Client, alice: Client, bob: Client, carol: Optional[Client],
                              devs: Dict[str, int], timeout: float) -> bool:
    a, b = alice.boundjid.bare, bob.boundjid.bare
    d1, d2 = devs["alice"], devs["alice2"]
    ok_all = True
    # Device lists grew: bob (contact, +notify) must be told, in both namespaces.
    for node in (OLD_DEVICES, NEW_DEVICES):
        ok = await until(lambda: any(f == a and n == node and {d1, d2} <= ids
                                     for f, n, _i, ids in bob.devlist_events), timeout)
        ok_all &= bool(REPORT.check(f"device2: bob notified of alice's 2-device {node}", ok,
                                    f"{[(n, sorted(ids)) for f, n, _i, ids in bob.devlist_events if f == a]}",
                                    required=True))
        # alice's first device hears of its own account's change (XEP-0163: the owner's resources too)
        ok = await until(lambda: any(f == a and n == node and {d1, d2} <= ids
                                     for f, n, _i, ids in alice.devlist_events), timeout)
        REPORT.check(f"device2: alice's first device notified of its own 2-device {node}", ok,
                     f"{[(n, sorted(ids)) for f, n, _i, ids in alice.devlist_events if f == a]}",
                     required=True)
        if carol is not None:
            ok = await until(lambda: any(f == a and n == node and {d1, d2} <= ids
                                         for f, n, _i, ids in carol.devlist_events), min(timeout, 5))
            REPORT.check(f"device2: carol (explicit XEP-0060 subscriber, not a contact) notified of {node}",
                         ok, f"{[(n, sorted(ids)) for f, n, _i, ids in carol.devlist_events if f == a]}",
                         required=False)
    # a newly-available resource of an existing contact gets the last items (XEP-0163 4.3.3 rule 2)
    for node in (OLD_DEVICES, NEW_DEVICES):
        ok = await until(lambda: saw_devlist(alice2, b, node, devs["bob"]), timeout)
        REPORT.check(f"device2: alice2 (new session, bob already a contact) gets bob's {node} at sign-in",
                     ok, f"{[(n, sorted(ids)) for f, n, _i, ids in alice2.devlist_events if f == b]}",
                     required=True)
    # omemo:2 bundles node holds one item per device
    try:
        iq = await bob.plugin["xep_0060"].get_items(JID(a), NEW_BUNDLES, timeout=10)
        ids = sorted(it["id"] for it in iq["pubsub"]["items"])
        REPORT.check("device2: alice's omemo:2 bundles node keeps one item per device", ids == sorted([str(d1), str(d2)]),
                     f"items {ids}", required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("device2: alice's omemo:2 bundles node keeps one item per device", False, err_of(e),
                     required=True)
    for d in (d1, d2):
        ok_all &= await fetch_new_bundle(bob, a, d, "bob fetches alice's", True)
    # bob -> alice: both devices decrypt (oldmemo)
    text = "Bob to both of Alice's devices (oldmemo)"
    try:
        await bob.send_oldmemo(a, text)
    except Exception as e:  # noqa: BLE001
        REPORT.check("device2: bob encrypts for alice's two devices", False, err_of(e), required=True)
        return False
    for rx in (alice, alice2):
        ok = await expect_inbox(rx, OLD_NS, b, text, timeout)
        ok_all &= bool(REPORT.check(f"device2: {rx.name} decrypts bob's oldmemo message", ok,
                                    f"errors={rx.decrypt_errors} plain={rx.plain_messages[-2:]}",
                                    required=True))
    text = "Bob to both of Alice's devices (omemo:2 raw)"
    try:
        messages, errors = await bob.send_twomemo_raw(a, text)
        REPORT.check("device2: bob encrypts omemo:2 for alice's two devices", not errors,
                     f"{len(messages)} message(s), non-critical errors {[err_of(e) for e in errors]}",
                     required=True)
    except Exception as e:  # noqa: BLE001
        REPORT.check("device2: bob encrypts omemo:2 for alice's two devices", False, err_of(e), required=True)
        return False
    for rx in (alice, alice2):
        ok = await expect_inbox(rx, NEW_NS, b, text, timeout)
        ok_all &= bool(REPORT.check(f"device2: {rx.name} decrypts bob's omemo:2 raw message", ok,
                                    f"errors={rx.decrypt_errors}", required=True))
    return ok_all


async def phase_preexisting(host: str, port: int, args, jid: str, pw: str, reader: Client, xml_log,
                            timeout: float) -> Optional[Client]:
    """dave's OMEMO nodes exist already with the PEP defaults (presence, max_items 1), as an
    older client or a client without publish-options leaves them: slixmpp-omemo must get
    precondition-not-met, reconfigure the nodes (XEP-0060 8.2) and publish again."""
    old = Client("dave0", jid + "/old", pw, args, xml_log, omemo=False)
    if not await start_client(old, host, port, timeout):
        return None
    me = JID(old.boundjid.bare)
    x = old.plugin["xep_0060"]
    seeds = [(OLD_DEVICES, "current", ET.Element(f"{{{OLD_NS}}}list")),
             (NEW_DEVICES, "current", ET.Element(f"{{{NEW_NS}}}devices")),
             (NEW_BUNDLES, "1234", ET.Element(f"{{{NEW_NS}}}bundle"))]
    for node, iid, el in seeds:
        ok, r = await attempt(x.publish(me, node, iid, el, None, timeout=10))
        if not ok:
            REPORT.check(f"preexisting: dave0 publishes {node} without options", False, error_summary(r))
    old.disconnect()
    await asyncio.sleep(0.5)
    dave = Client("dave", jid + "/new", pw, argparse.Namespace(**{**vars(args), "register": False}), xml_log)
    ok = await start_client(dave, host, port, timeout)
    REPORT.check("preexisting: slixmpp-omemo publishes over nodes with other options "
                 "(precondition-not-met -> configure -> publish again)", ok,
                 "see the xml log for the precondition-not-met and the configure", required=True)
    if not ok:
        return dave
    for node, want in ((OLD_DEVICES, ("open", "1")), (NEW_DEVICES, ("open", "1")), (NEW_BUNDLES, ("open", None))):
        ok, r = await attempt(dave.plugin["xep_0060"].get_node_config(me, node, timeout=10))
        if ok:
            vals = r["pubsub_owner"]["configure"]["form"].get_values()
            acc, mx = vals.get("pubsub#access_model"), str(vals.get("pubsub#max_items"))
            good = acc == want[0] and (want[1] is None or mx == want[1]) and (want[1] is not None or mx not in ("1", "None"))
            REPORT.check(f"preexisting: dave's {node} reconfigured", good,
                         f"access_model={acc} max_items={mx}", required=True)
        else:
            REPORT.check(f"preexisting: dave's {node} reconfigured", False, error_summary(r), required=True)
    # a non-contact (reader) can now read them, as the OMEMO plugin reads them
    dev = await dave.own_device_id()
    ok, r = await attempt(reader.plugin["xep_0060"].get_items(me, OLD_DEVICES, max_items=1, timeout=10))
    REPORT.check("preexisting: a non-contact reads dave's device list", ok and dev in device_ids_in(r.xml),
                 f"{'ok' if ok else error_summary(r)}", required=True)
    ok, r = await attempt(slix_omemo_impl._download_bundle(reader.plugin["xep_0060"], NEW_NS, me.bare, dev))  # noqa: SLF001
    REPORT.check("preexisting: a non-contact downloads dave's omemo:2 bundle (node now holds the seed item too)",
                 ok, "ok" if ok else err_of(r), required=True)
    ok, r = await attempt(slix_omemo_impl._download_bundle(reader.plugin["xep_0060"], OLD_NS, me.bare, dev))  # noqa: SLF001
    REPORT.check("preexisting: a non-contact downloads dave's oldmemo bundle", ok, "ok" if ok else err_of(r),
                 required=True)
    return dave


# ---------------------------------------------------------------------------
# Raw PEP probes
# ---------------------------------------------------------------------------

def form(form_type: str, fields: Dict[str, str]):
    return slix_omemo_impl._make_options_form(form_type, fields)  # noqa: SLF001


PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"


def payload(text: str) -> ET.Element:
    el = ET.Element("{urn:example:omemo-probe}note")
    el.text = text
    return el


async def attempt(coro):
    try:
        return True, await coro
    except Exception as e:  # noqa: BLE001
        return False, e


def error_summary(e) -> str:
    if isinstance(e, IqError):
        conds = [child.tag.split("}")[1] + ("" if child.tag.startswith(f"{{{STANZA_ERRORS}}}") else f" ({child.tag.split('}')[0][1:]})")
                 for child in e.iq["error"].xml if child.tag != f"{{{STANZA_ERRORS}}}text"]
        return f"error type={e.iq['error']['type']} {conds}"
    return err_of(e)


def has_precondition(e) -> bool:
    return isinstance(e, IqError) and e.iq["error"].xml.find(f"{{{PUBSUB_ERRORS}}}precondition-not-met") is not None


async def phase_probes(alice: Client, bob: Client, carol: Optional[Client], timeout: float) -> None:
    a = alice.boundjid.bare
    x = alice.plugin["xep_0060"]
    me = JID(a)
    rid = secrets.token_hex(3)

    # disco#info of the account (what Conversations checks before using publish-options)
    ok, r = await attempt(bob.plugin["xep_0030"].get_info(jid=JID(a), timeout=10))
    if ok:
        feats = set(r["disco_info"]["features"])
        idents = [tuple(i[:2]) for i in r["disco_info"]["identities"]]
        want = {"http://jabber.org/protocol/pubsub#" + f for f in (
            "publish", "publish-options", "retrieve-items", "item-ids", "multi-items", "config-node",
            "config-node-max", "delete-nodes", "delete-items", "retract-items", "subscribe", "last-published",
            "persistent-items", "access-open", "access-presence", "auto-create", "auto-subscribe",
            "filtered-notifications", "presence-notifications")}
        REPORT.check("probe: disco#info on alice's bare JID (XEP-0163 4, XEP-0060 10)",
                     ("pubsub", "pep") in idents,
                     f"identities={idents}; XEP-0060 features not advertised (of those OMEMO/PEP touch): "
                     f"{sorted(w.split('#')[1] for w in want - feats)}")
    else:
        REPORT.check("probe: disco#info on alice's bare JID", False, error_summary(r))

    # 1. publish-options open/max creates the node; several items with ids
    node = f"urn:example:omemo-probe:multi:{rid}"
    opts = {"pubsub#access_model": "open", "pubsub#persist_items": "true", "pubsub#max_items": "max"}
    for i in ("a", "b", "c"):
        ok, r = await attempt(x.publish(me, node, i, payload(i), form(PUBLISH_OPTIONS, opts), timeout=10))
        if not ok:
            REPORT.check(f"probe: publish item {i} with publish-options open/persist/max", False, error_summary(r))
    ok, r = await attempt(x.get_items(me, node, timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: node with max_items=max keeps 3 items a,b,c", ok and sorted(ids) == ["a", "b", "c"], f"{ids}")
    ok, r = await attempt(x.get_items(me, node, max_items=1, timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: items max_items=1 gives the newest item c (XEP-0060 6.5.7)", ok and ids == ["c"], f"{ids}")
    ok, r = await attempt(x.get_items(me, node, item_ids=["b"], timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: items by id ['b'] gives only b (XEP-0060 6.5.8)", ok and ids == ["b"], f"{ids}")
    ok, r = await attempt(x.get_items(me, node, item_ids=["a", "c"], timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: items by ids ['a','c'] gives a and c (XEP-0060 6.5.8)", ok and sorted(ids) == ["a", "c"], f"{ids}")
    ok, r = await attempt(x.get_items(me, node, item_ids=["zzz"], timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: items by unknown id ['zzz'] (empty result or item-not-found)",
                 (ok and ids == []) or (not ok and isinstance(r, IqError) and r.condition == "item-not-found"), f"{ids}")
    # republishing an existing id replaces it
    ok, r = await attempt(x.publish(me, node, "a", payload("a2"), form(PUBLISH_OPTIONS, opts), timeout=10))
    ok2, r2 = await attempt(x.get_items(me, node, timeout=10))
    texts = [(it["id"], it["payload"].text if it["payload"] is not None else None)
             for it in r2["pubsub"]["items"]] if ok2 else error_summary(r2)
    REPORT.check("probe: republishing id a replaces it (one item a, new payload)",
                 ok and ok2 and [t for t in texts if t[0] == "a"] == [("a", "a2")], f"{texts}")

    # 2. publish-options naming a subset of the options (the plugin's retry without max_items)
    ok, r = await attempt(x.publish(me, node, "d", payload("d"),
                                    form(PUBLISH_OPTIONS, {"pubsub#access_model": "open", "pubsub#persist_items": "true"}),
                                    timeout=10))
    REPORT.check("probe: publish-options naming only access_model=open+persist_items on an open/max node is met "
                 "(XEP-0060 7.1.5: only the options given are preconditions)", ok,
                 "ok" if ok else error_summary(r))
    ok, r = await attempt(x.publish(me, node, "e", payload("e"),
                                    form(PUBLISH_OPTIONS, {"pubsub#access_model": "open"}), timeout=10))
    REPORT.check("probe: publish-options access_model=open alone on an open/max node is met", ok,
                 "ok" if ok else error_summary(r))

    # 3. precondition-not-met then configure then republish (the plugin's recovery path)
    node2 = f"urn:example:omemo-probe:precond:{rid}"
    ok, r = await attempt(x.publish(me, node2, "current", payload("1"), None, timeout=10))
    REPORT.check("probe: publish without options creates a default node", ok, "ok" if ok else error_summary(r))
    ok, r = await attempt(x.get_node_config(me, node2, timeout=10))
    if ok:
        fields = r["pubsub_owner"]["configure"]["form"].get_values()
        REPORT.check("probe: owner gets the node configuration (XEP-0060 8.2)", True, f"{fields}")
    else:
        REPORT.check("probe: owner gets the node configuration (XEP-0060 8.2)", False, error_summary(r))
    popts = {"pubsub#access_model": "open", "pubsub#persist_items": "true", "pubsub#max_items": "1"}
    ok, r = await attempt(x.publish(me, node2, "current", payload("2"), form(PUBLISH_OPTIONS, popts), timeout=10))
    REPORT.check("probe: publish-options access_model=open on a presence node fails with precondition-not-met "
                 "(XEP-0060 7.1.5)", (not ok) and has_precondition(r),
                 "published anyway" if ok else error_summary(r))
    ok, r = await attempt(x.set_node_config(me, node2, form(NODE_CONFIG, popts), timeout=10))
    REPORT.check("probe: owner configures the node with the same fields (XEP-0060 8.2.4)", ok,
                 "ok" if ok else error_summary(r))
    ok, r = await attempt(x.publish(me, node2, "current", payload("3"), form(PUBLISH_OPTIONS, popts), timeout=10))
    REPORT.check("probe: the publish with the same publish-options now succeeds", ok, "ok" if ok else error_summary(r))
    ok, r = await attempt(carol.plugin["xep_0060"].get_items(me, node2, max_items=1, timeout=10)) if carol else (None, None)
    if carol:
        REPORT.check("probe: a non-contact reads the reconfigured (open) node", ok, "ok" if ok else error_summary(r))
    # node_config naming only access_model=open on a max_items=max node, then republish with open+persist
    node3 = f"urn:example:omemo-probe:partial:{rid}"
    await attempt(x.publish(me, node3, "x", payload("x"),
                            form(PUBLISH_OPTIONS, {"pubsub#access_model": "presence", "pubsub#max_items": "max"}), timeout=10))
    ok, r = await attempt(x.set_node_config(me, node3, form(NODE_CONFIG, {"pubsub#access_model": "open", "pubsub#persist_items": "true"}), timeout=10))
    ok2, r2 = await attempt(x.publish(me, node3, "y", payload("y"),
                                      form(PUBLISH_OPTIONS, {"pubsub#access_model": "open", "pubsub#persist_items": "true"}), timeout=10))
    REPORT.check("probe: after configure(access_model=open) a publish with options open+persist_items succeeds "
                 "(max_items=max node)", ok and ok2,
                 f"configure: {'ok' if ok else error_summary(r)}; publish: {'ok' if ok2 else error_summary(r2)}")
    # publish-options with a field the service does not know
    ok, r = await attempt(x.publish(me, node, "f", payload("f"),
                                    form(PUBLISH_OPTIONS, {"pubsub#access_model": "open",
                                                           "pubsub#send_last_published_item": "on_sub_and_presence"}), timeout=10))
    REPORT.check("probe: publish-options with pubsub#send_last_published_item (INFO)", None,
                 "ok" if ok else error_summary(r))

    # 4. notifications for an interested contact (bob has PROBE_NODE+notify), retract with/without notify, delete
    bob.pubsub_events.clear()
    ok, r = await attempt(x.publish(me, PROBE_NODE, "p1", payload("p1"),
                                    form(PUBLISH_OPTIONS, {"pubsub#access_model": "open", "pubsub#max_items": "max"}), timeout=10))
    if not ok:
        # a leftover node from an earlier run with other options
        await attempt(x.delete_node(me, PROBE_NODE, timeout=10))
        ok, r = await attempt(x.publish(me, PROBE_NODE, "p1", payload("p1"),
                                        form(PUBLISH_OPTIONS, {"pubsub#access_model": "open", "pubsub#max_items": "max"}), timeout=10))
    await attempt(x.publish(me, PROBE_NODE, "p2", payload("p2"), None, timeout=10))
    got = await until(lambda: sum(1 for k, n, f, _i in bob.pubsub_events if k == "publish" and n == PROBE_NODE) >= 2, timeout)
    REPORT.check("probe: contact with +notify gets publish notifications (XEP-0163 4)", got,
                 f"{[e for e in bob.pubsub_events if e[1] == PROBE_NODE]}")
    ok, r = await attempt(x.retract(me, PROBE_NODE, "p1", notify=True, timeout=10))
    REPORT.check("probe: retract item p1 (notify=true) (XEP-0060 7.2)", ok, "ok" if ok else error_summary(r))
    got = await until(lambda: any(k == "retract" and n == PROBE_NODE and "p1" in i for k, n, f, i in bob.pubsub_events), timeout)
    REPORT.check("probe: contact gets the retract notification for notify=true (XEP-0060 7.2.2.1)", got,
                 f"{[e for e in bob.pubsub_events if e[1] == PROBE_NODE]}")
    ok, r = await attempt(x.retract(me, PROBE_NODE, "p2", notify=False, timeout=10))
    REPORT.check("probe: retract item p2 (notify=false)", ok, "ok" if ok else error_summary(r))
    await asyncio.sleep(1.0)
    got = any(k == "retract" and n == PROBE_NODE and "p2" in i for k, n, f, i in bob.pubsub_events)
    REPORT.check("probe: retract with notify=false sends no notification (INFO when one is sent: XEP-0060 "
                 "7.2.2.1 only makes notify=true a MUST; Prosody sends none)", None if got else True,
                 f"{[e for e in bob.pubsub_events if e[1] == PROBE_NODE]}")
    ok, r = await attempt(x.get_items(me, PROBE_NODE, timeout=10))
    ids = [it["id"] for it in r["pubsub"]["items"]] if ok else error_summary(r)
    REPORT.check("probe: retracted items are gone", ok and ids == [], f"{ids}")
    ok, r = await attempt(x.retract(me, PROBE_NODE, "nope", timeout=10))
    REPORT.check("probe: retracting an unknown item is item-not-found (XEP-0060 7.2.3.5)",
                 (not ok) and isinstance(r, IqError) and r.condition == "item-not-found",
                 "succeeded" if ok else error_summary(r))
    ok, r = await attempt(x.delete_node(me, PROBE_NODE, timeout=10))
    REPORT.check("probe: owner deletes the node (XEP-0060 8.4)", ok, "ok" if ok else error_summary(r))
    got = await until(lambda: any(k == "delete" and n == PROBE_NODE for k, n, f, i in bob.pubsub_events), 2)
    REPORT.check("probe: contact gets the <delete/> notification (XEP-0060 8.4.2)", got,
                 f"{[e for e in bob.pubsub_events if e[1] == PROBE_NODE]}")
    ok, r = await attempt(x.get_items(me, PROBE_NODE, timeout=10))
    REPORT.check("probe: items of the deleted node: item-not-found",
                 (not ok) and isinstance(r, IqError) and r.condition == "item-not-found",
                 "succeeded" if ok else error_summary(r))
    ok, r = await attempt(x.delete_node(me, PROBE_NODE, timeout=10))
    REPORT.check("probe: deleting a missing node: item-not-found (XEP-0060 8.4.3.2)",
                 (not ok) and isinstance(r, IqError) and r.condition == "item-not-found",
                 "succeeded" if ok else error_summary(r))

    # 5. access models for a non-contact
    if carol is not None:
        c60 = carol.plugin["xep_0060"]
        ok, r = await attempt(c60.get_items(me, OLD_DEVICES, max_items=1, timeout=10))
        REPORT.check("probe: non-contact reads alice's device list (access open)", ok, "ok" if ok else error_summary(r))
        node4 = f"urn:example:omemo-probe:presence:{rid}"
        await attempt(x.publish(me, node4, "current", payload("secret"), None, timeout=10))
        ok, r = await attempt(c60.get_items(me, node4, timeout=10))
        REPORT.check("probe: non-contact reading a presence-access node is refused with not-authorized + "
                     "presence-subscription-required (XEP-0060 6.5.9.6)",
                     (not ok) and isinstance(r, IqError) and r.condition == "not-authorized",
                     "read it" if ok else error_summary(r))
        ok, r = await attempt(c60.publish(me, node4, "x", payload("intruder"), None, timeout=10))
        REPORT.check("probe: non-owner publishing to alice's node is refused", not ok,
                     "accepted!" if ok else error_summary(r))
    # tidy up scratch nodes
    for n in (node, node2, node3):
        await attempt(x.delete_node(me, n, timeout=10))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

async def run(args) -> int:
    host, port = args.server.rsplit(":", 1)
    port = int(port)
    rid = args.run_id or secrets.token_hex(3)
    dom = args.domain
    xml_log = open(args.xml_log, "a", encoding="utf-8") if args.xml_log else None
    names = {"alice": f"alice-{rid}", "bob": f"bob-{rid}", "carol": f"carol-{rid}"}
    pw = "omemo-test-pw"
    alice = Client("alice", f"{names['alice']}@{dom}/one", pw, args, xml_log)
    bob = Client("bob", f"{names['bob']}@{dom}/phone", pw, args, xml_log, extra_interest=PROBE_NODE)
    clients = [alice, bob]
    carol = alice2 = None
    t = args.timeout
    devs: Dict[str, int] = {}
    try:
        for c in (alice, bob):
            if not await start_client(c, host, port, t):
                return 1
            devs[c.name] = await c.own_device_id()

        if not await phase_roster(alice, bob, t):
            return 1

        pairs = [(alice, bob, devs["bob"]), (bob, alice, devs["alice"])]
        notified = await phase_devlists(pairs, t)
        if not notified:
            # slixmpp-omemo never downloads the device list of a mutual
            # contact (it relies on PEP): show what a send does now.
            try:
                await alice.send_oldmemo(bob.boundjid.bare, "sent relying on PEP only")
                REPORT.check("oldmemo: alice encrypts for bob relying on PEP only (no manual fetch)", True,
                             "encrypted", required=True)
            except Exception as e:  # noqa: BLE001
                REPORT.check("oldmemo: alice encrypts for bob relying on PEP only (no manual fetch)", False,
                             err_of(e), required=True)
            REPORT.say("device lists did not arrive by PEP notification; downloading them by hand to go on")
            await fallback_fetch(alice, bob)
            await fallback_fetch(bob, alice)
        await check_device_known(alice, bob, devs["bob"])
        await check_device_known(bob, alice, devs["alice"])

        await phase_oldmemo(alice, bob, t)
        await phase_omemo2(alice, bob, devs, t)

        if args.stranger:
            carol = Client("carol", f"{names['carol']}@{dom}/laptop", pw, args, xml_log)
            clients.append(carol)
            if await start_client(carol, host, port, t):
                devs["carol"] = await carol.own_device_id()
                await phase_stranger(carol, alice, devs, t)
            else:
                carol = None

        if args.second_device:
            alice2 = Client("alice2", f"{names['alice']}@{dom}/two", pw,
                            argparse.Namespace(**{**vars(args), "register": False}), xml_log)
            clients.append(alice2)
            if await start_client(alice2, host, port, t):
                devs["alice2"] = await alice2.own_device_id()
                await phase_second_device(alice2, alice, bob, carol, devs, t)

        if args.preexisting:
            dave = await phase_preexisting(host, port, args, f"dave-{rid}@{dom}", pw, bob, xml_log, t)
            if dave is not None:
                clients.append(dave)

        if args.probes:
            await phase_probes(alice, bob, carol, t)
    except Exception as e:  # noqa: BLE001
        REPORT.check("script", False, f"unexpected: {err_of(e)}", required=True)
        traceback.print_exc()
    finally:
        await asyncio.sleep(0.5)
        for c in clients:
            c.disconnect()
        await asyncio.sleep(1.0)
        if xml_log:
            xml_log.close()
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--server", required=True, help="HOST:PORT of the c2s listener (plaintext)")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--register", action="store_true", help="register the accounts in-band first (XEP-0077)")
    p.add_argument("--run-id", default=None, help="suffix of the account names (default: random)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each step")
    p.add_argument("--stranger", action=argparse.BooleanOptionalAction, default=True,
                   help="carol, a non-contact, writes to alice (default on)")
    p.add_argument("--second-device", action=argparse.BooleanOptionalAction, default=True,
                   help="alice signs in a second OMEMO device (default on)")
    p.add_argument("--preexisting", action=argparse.BooleanOptionalAction, default=True,
                   help="dave's OMEMO nodes pre-exist with PEP defaults: the plugin must reconfigure them")
    p.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                   help="raw PEP probes after the OMEMO flow (default on)")
    p.add_argument("--xml-log", default=None, help="append every stanza sent/received here")
    p.add_argument("--report", default=None, help="write the checks as JSON here")
    p.add_argument("--debug", action="store_true", help="slixmpp/omemo debug logging on stderr")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if not args.debug:
        # the plugin logs swallowed failures (e.g. a refused pubsub subscribe) at debug level
        logging.getLogger("slixmpp_omemo").setLevel(logging.DEBUG)
        logging.getLogger("omemo").setLevel(logging.INFO)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(run(args))
    failed = REPORT.failed_required
    print("\n==== SUMMARY ====", flush=True)
    for c in REPORT.checks:
        flag = "*" if c["required"] else " "
        print(f"{c['status']:4} {flag} {c['name']}", flush=True)
    print(f"{len(failed)} required check(s) failed", flush=True)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(REPORT.checks, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
