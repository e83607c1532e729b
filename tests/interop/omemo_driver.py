#!/usr/bin/env python3
"""
Reference OMEMO driver built ONLY on the python-omemo backend classes
(twomemo.Twomemo / oldmemo.Oldmemo + their etree helpers), with a JSON-file
backed in-memory key/value storage. No XMPP, no SessionManager, no network.

It mimics what omemo.SessionManager.encrypt()/decrypt() do for a single
recipient/sender device (session building, key-exchange attachment until the
session is confirmed, pre key deletion + refill after a key exchange, the
automatic empty "session completion"/heartbeat message), so its behaviour is
the behaviour of the reference library.

Usage (all output is JSON on stdout; bytes are standard base64 with padding):

  gen      --state S --jid J [--device-id N] [--seed-hex HEX64] [--prekeys 100]
  info     --state S
  bundle   --state S --ns {twomemo|oldmemo}
  encrypt  --state S --ns NS --to-jid J --to-device D [--bundle FILE]
           (--plaintext TEXT | --plaintext-hex HEX | --empty) [--sce] [--new-session]
  decrypt  --state S --ns NS --from-jid J --message FILE|- [--sender-bundle FILE]
           [--no-auto-reply]
  selftest [--quiet]

FILE arguments for bundles/messages accept: raw XML (<bundle/>, <encrypted/>,
or a <message/> stanza containing <encrypted/>), or the JSON printed by this
script (the "xml" member is used if present, otherwise the decomposed members).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
import types
import xml.etree.ElementTree as ET
from typing import Any, Dict, Optional

import omemo
from omemo.message import Message
from omemo.session import Initiation
from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import JSONType

import oldmemo
import oldmemo.etree
import oldmemo.oldmemo
import twomemo
import twomemo.etree
import twomemo.twomemo
import xeddsa

NS_ALIASES = {
    "twomemo": twomemo.twomemo.NAMESPACE, "2": twomemo.twomemo.NAMESPACE,
    twomemo.twomemo.NAMESPACE: twomemo.twomemo.NAMESPACE,
    "oldmemo": oldmemo.oldmemo.NAMESPACE, "0.3": oldmemo.oldmemo.NAMESPACE, "legacy": oldmemo.oldmemo.NAMESPACE,
    oldmemo.oldmemo.NAMESPACE: oldmemo.oldmemo.NAMESPACE,
}
SCE_NS = "urn:xmpp:sce:1"
PRE_KEY_TARGET = 100            # omemo/session_manager.py: generate_pre_keys(100 - visible)
PRE_KEY_REFILL_THRESHOLD = 99   # omemo/session_manager.py default pre_key_refill_threshold
STALENESS_MAGIC_NUMBER = omemo.SessionManager.STALENESS_MAGIC_NUMBER  # 53


def b64e(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def b64d(s: str) -> bytes:
    return base64.b64decode(s)


# ---------------------------------------------------------------------------------------------------------
# Storage: plain dict, persisted as JSON between invocations
# ---------------------------------------------------------------------------------------------------------

class DictStorage(Storage):
    def __init__(self, data: Optional[Dict[str, JSONType]] = None) -> None:
        super().__init__(disable_cache=True)
        self.data: Dict[str, JSONType] = {} if data is None else data

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = json.loads(json.dumps(value))

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class Device:
    """One OMEMO device: an identity shared by both backends, like omemo.SessionManager does."""

    def __init__(self, state: Dict[str, Any], path: Optional[str] = None) -> None:
        self.path = path
        self.jid: str = state["jid"]
        self.device_id: int = state["device_id"]
        self.storage = DictStorage(state["storage"])
        self.backends = {
            twomemo.twomemo.NAMESPACE: twomemo.Twomemo(self.storage),
            oldmemo.oldmemo.NAMESPACE: oldmemo.Oldmemo(self.storage),
        }

    @staticmethod
    async def create(jid: str, device_id: Optional[int] = None, seed: Optional[bytes] = None,
                     num_pre_keys: int = PRE_KEY_TARGET, path: Optional[str] = None) -> "Device":
        if device_id is None:
            # omemo/session_manager.py: randbelow(DEVICE_ID_MAX - DEVICE_ID_MIN) + DEVICE_ID_MIN
            device_id = secrets.randbelow(omemo.SessionManager.DEVICE_ID_MAX
                                          - omemo.SessionManager.DEVICE_ID_MIN) \
                + omemo.SessionManager.DEVICE_ID_MIN
        storage: Dict[str, JSONType] = {}
        if seed is not None:
            # Same keys omemo.identity_key_pair.IdentityKeyPair.get() uses
            storage["/ikp/is_seed"] = True
            storage["/ikp/key"] = b64e(seed)
        dev = Device({"jid": jid, "device_id": device_id, "storage": storage}, path)
        for backend in dev.backends.values():
            await backend.generate_pre_keys(num_pre_keys)   # also creates the X3DH state (identity, SPK)
        return dev

    @staticmethod
    def load(path: str) -> "Device":
        with open(path, "r", encoding="utf-8") as f:
            return Device(json.load(f), path)

    def save(self) -> None:
        assert self.path is not None
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"jid": self.jid, "device_id": self.device_id, "storage": self.storage.data}, f)
        os.replace(tmp, self.path)

    # ---- identity ------------------------------------------------------------------------------------

    async def identity(self) -> Dict[str, Any]:
        ikp = await omemo.identity_key_pair.IdentityKeyPair.get(self.storage)
        priv = ikp.as_priv().priv
        ed = ikp.identity_key
        return {
            "jid": self.jid,
            "device_id": self.device_id,
            "secret_is_seed": ikp.is_seed,
            "seed": b64e(ikp.seed) if ikp.is_seed else None,
            "x25519_priv": b64e(priv),                                 # clamp(SHA-512(seed)[:32])
            "ik_ed25519": b64e(ed),                                    # twomemo <ik/>
            "ik_curve25519": b64e(xeddsa.ed25519_pub_to_curve25519_pub(ed)),
            "ik_oldmemo": b64e(b"\x05" + xeddsa.ed25519_pub_to_curve25519_pub(ed)),  # oldmemo <identityKey/>
            "fingerprint_twomemo": " ".join(omemo.SessionManager.format_identity_key(ed)),
        }

    # ---- bundles -------------------------------------------------------------------------------------

    async def bundle_json(self, ns: str) -> Dict[str, Any]:
        backend = self.backends[ns]
        bundle = await backend.get_bundle(self.jid, self.device_id)
        return bundle_to_json(bundle)

    # ---- encryption ----------------------------------------------------------------------------------

    async def encrypt(self, ns: str, to_jid: str, to_device: int, plaintext: Optional[bytes],
                      bundle_src: Optional[str], new_session: bool = False) -> Dict[str, Any]:
        backend = self.backends[ns]
        if plaintext is None:
            content, plain_key_material = await backend.encrypt_empty()
        else:
            content, plain_key_material = await backend.encrypt_plaintext(plaintext)

        session = None if new_session else await backend.load_session(to_jid, to_device)
        if session is None:
            if bundle_src is None:
                raise SystemExit("no session with that device: --bundle is required")
            bundle = parse_bundle_any(ns, read_src(bundle_src), to_jid, to_device)
            self.remember_identity(ns, to_jid, to_device, bundle.identity_key)
            session, encrypted_key_material = await backend.build_session_active(
                to_jid, to_device, bundle, plain_key_material)
        else:
            encrypted_key_material = await backend.encrypt_key_material(session, plain_key_material)

        # omemo/session_manager.py encrypt(): key exchange attached until the session is confirmed
        key_exchange = session.key_exchange \
            if session.initiation is Initiation.ACTIVE and not session.confirmed else None
        await backend.store_session(session)

        message = Message(ns, self.jid, self.device_id, content,
                          frozenset({(encrypted_key_material, key_exchange)}))
        return message_to_json(message, plain_key_material)

    # ---- decryption ----------------------------------------------------------------------------------

    async def decrypt(self, ns: str, from_jid: str, message_src: str, sender_bundle_src: Optional[str],
                      auto_reply: bool = True) -> Dict[str, Any]:
        backend = self.backends[ns]
        elt = parse_encrypted_any(ns, read_src(message_src))
        sid = int(elt.find(f"{{{ns}}}header").get("sid"))

        sender_ik: Optional[bytes] = None
        if sender_bundle_src is not None:
            sb = parse_bundle_any(ns, read_src(sender_bundle_src), from_jid, sid)
            sender_ik = sb.identity_key
            self.remember_identity(ns, from_jid, sid, sender_ik)
        if sender_ik is None:
            sender_ik = self.known_identity(ns, from_jid, sid)

        if ns == twomemo.twomemo.NAMESPACE:
            message = twomemo.etree.parse_message(elt, from_jid)
        else:
            # oldmemo.etree.parse_message only needs the sender's Ed25519 identity key to learn its sign
            # bit (the wire format carries the Curve25519 form). Give it a minimal stand-in.
            fake_ik = sender_ik if sender_ik is not None else b"\x00" * 32  # sign bit 0 if unknown

            class _SM:
                async def get_device_information(self, bare_jid: str) -> Any:
                    return [types.SimpleNamespace(device_id=sid, identity_key=fake_ik)]

                async def refresh_device_list(self, *_a: Any) -> None:
                    return None

            message = await oldmemo.etree.parse_message(elt, from_jid, self.jid, _SM())

        try:
            encrypted_key_material, key_exchange = next(
                k for k in message.keys if k[0].bare_jid == self.jid and k[0].device_id == self.device_id)
        except StopIteration:
            raise SystemExit("MessageNotForUs: no <key/> for our jid/device id")

        result: Dict[str, Any] = {"ns": ns, "from_jid": from_jid, "sid": sid,
                                  "kex": key_exchange is not None}

        if key_exchange is None:
            session = await backend.load_session(from_jid, sid)
            if session is None:
                raise SystemExit("NoSession: no session and no key exchange")
            plain_key_material = await backend.decrypt_key_material(session, encrypted_key_material)
            result["session"] = "existing"
        else:
            if sender_ik is not None and key_exchange.identity_key != sender_ik:
                result["warning"] = "PublicDataInconsistency: key exchange ik differs from known ik"
            session = await backend.load_session(from_jid, sid)
            if session is not None and not (session.initiation is Initiation.PASSIVE
                                            and session.key_exchange.builds_same_session(key_exchange)):
                session = None  # "Key exchange replaces existing session."
            if session is None:
                session, plain_key_material = await backend.build_session_passive(
                    from_jid, sid, key_exchange, encrypted_key_material)
                result["session"] = "new-passive"
            else:
                plain_key_material = await backend.decrypt_key_material(session, encrypted_key_material)
                result["session"] = "existing(kex repeated)"
            self.remember_identity(ns, from_jid, sid, key_exchange.identity_key)

        plaintext = None if message.content.empty else await backend.decrypt_plaintext(
            message.content, plain_key_material)
        await backend.store_session(session)

        result["empty"] = plaintext is None
        result["key_material"] = b64e(plain_key_material.key + plain_key_material.auth_tag)
        if plaintext is not None:
            result["plaintext_b64"] = b64e(plaintext)
            try:
                result["plaintext"] = plaintext.decode("utf-8")
            except UnicodeDecodeError:
                result["plaintext"] = None
            body = sce_body(plaintext)
            if body is not None:
                result["sce_body"] = body

        # omemo/session_manager.py decrypt(): pre key deletion + refill + republish after a key exchange
        if key_exchange is not None:
            if await backend.delete_pre_key(session):
                visible = await backend.get_num_visible_pre_keys()
                if visible <= PRE_KEY_REFILL_THRESHOLD:
                    await backend.generate_pre_keys(PRE_KEY_TARGET - visible)
                result["new_bundle"] = await self.bundle_json(ns)

        # omemo/session_manager.py decrypt(): empty message for session completion / staleness prevention
        if auto_reply and (key_exchange is not None
                           or (session.receiving_chain_length or 0) > STALENESS_MAGIC_NUMBER):
            content, pkm = await backend.encrypt_empty()
            ekm = await backend.encrypt_key_material(session, pkm)
            kex = session.key_exchange \
                if session.initiation is Initiation.ACTIVE and not session.confirmed else None
            await backend.store_session(session)
            result["auto_reply"] = message_to_json(
                Message(ns, self.jid, self.device_id, content, frozenset({(ekm, kex)})), pkm)
        return result

    # ---- peer identity bookkeeping (driver-only) ---------------------------------------------------------

    def remember_identity(self, ns: str, jid: str, dev: int, ik_ed: bytes) -> None:
        self.storage.data[f"/driver/peer_ik/{ns}/{jid}/{dev}"] = b64e(ik_ed)

    def known_identity(self, ns: str, jid: str, dev: int) -> Optional[bytes]:
        v = self.storage.data.get(f"/driver/peer_ik/{ns}/{jid}/{dev}")
        return None if v is None else b64d(str(v))


# ---------------------------------------------------------------------------------------------------------
# (de)serialization helpers
# ---------------------------------------------------------------------------------------------------------

def xml_str(elt: ET.Element, ns: str) -> str:
    ET.register_namespace("", ns)
    return ET.tostring(elt, encoding="unicode")


def bundle_to_json(bundle: Any) -> Dict[str, Any]:
    ns = bundle.namespace
    if ns == twomemo.twomemo.NAMESPACE:
        elt = twomemo.etree.serialize_bundle(bundle)
        ik, spk, spks = elt.find(f"{{{ns}}}ik"), elt.find(f"{{{ns}}}spk"), elt.find(f"{{{ns}}}spks")
        pks = [{"id": int(e.get("id")), "pk": e.text} for e in elt.iter(f"{{{ns}}}pk")]
        spk_id = int(spk.get("id"))
    else:
        elt = oldmemo.etree.serialize_bundle(bundle)
        ik = elt.find(f"{{{ns}}}identityKey")
        spk = elt.find(f"{{{ns}}}signedPreKeyPublic")
        spks = elt.find(f"{{{ns}}}signedPreKeySignature")
        pks = [{"id": int(e.get("preKeyId")), "pk": e.text} for e in elt.iter(f"{{{ns}}}preKeyPublic")]
        spk_id = int(spk.get("signedPreKeyId"))
    pks.sort(key=lambda p: p["id"])
    return {
        "ns": ns, "jid": bundle.bare_jid, "device_id": bundle.device_id,
        "ik": ik.text, "spk": spk.text, "spk_id": spk_id, "spks": spks.text, "prekeys": pks,
        "ik_ed25519": b64e(bundle.identity_key),  # internal (python-omemo) form, informational
        "xml": xml_str(elt, ns),
    }


def bundle_xml_from_fields(ns: str, j: Dict[str, Any]) -> ET.Element:
    if ns == twomemo.twomemo.NAMESPACE:
        b = ET.Element(f"{{{ns}}}bundle")
        ET.SubElement(b, f"{{{ns}}}spk", {"id": str(j["spk_id"])}).text = j["spk"]
        ET.SubElement(b, f"{{{ns}}}spks").text = j["spks"]
        ET.SubElement(b, f"{{{ns}}}ik").text = j["ik"]
        pk = ET.SubElement(b, f"{{{ns}}}prekeys")
        for p in j["prekeys"]:
            ET.SubElement(pk, f"{{{ns}}}pk", {"id": str(p["id"])}).text = p["pk"]
    else:
        b = ET.Element(f"{{{ns}}}bundle")
        ET.SubElement(b, f"{{{ns}}}signedPreKeyPublic", {"signedPreKeyId": str(j["spk_id"])}).text = j["spk"]
        ET.SubElement(b, f"{{{ns}}}signedPreKeySignature").text = j["spks"]
        ET.SubElement(b, f"{{{ns}}}identityKey").text = j["ik"]
        pk = ET.SubElement(b, f"{{{ns}}}prekeys")
        for p in j["prekeys"]:
            ET.SubElement(pk, f"{{{ns}}}preKeyPublic", {"preKeyId": str(p["id"])}).text = p["pk"]
    return b


def read_src(src: str) -> str:
    if src == "-":
        return sys.stdin.read()
    if os.path.exists(src):
        with open(src, "r", encoding="utf-8") as f:
            return f.read()
    return src  # literal JSON/XML


def parse_bundle_any(ns: str, text: str, jid: str, device_id: int) -> Any:
    text = text.strip()
    if text.startswith("{"):
        j = json.loads(text)
        elt = ET.fromstring(j["xml"]) if "xml" in j else bundle_xml_from_fields(ns, j)
    else:
        elt = ET.fromstring(text)
        found = elt if elt.tag == f"{{{ns}}}bundle" else elt.find(f".//{{{ns}}}bundle")
        if found is None:
            raise SystemExit("no <bundle/> in the given XML")
        elt = found
    if ns == twomemo.twomemo.NAMESPACE:
        return twomemo.etree.parse_bundle(elt, jid, device_id)
    return oldmemo.etree.parse_bundle(elt, jid, device_id)


def parse_encrypted_any(ns: str, text: str) -> ET.Element:
    text = text.strip()
    if text.startswith("{"):
        j = json.loads(text)
        if "xml" not in j:
            raise SystemExit("message JSON needs an 'xml' member")
        text = j["xml"]
    elt = ET.fromstring(text)
    if elt.tag == f"{{{ns}}}encrypted":
        return elt
    found = elt.find(f".//{{{ns}}}encrypted")
    if found is None:
        raise SystemExit(f"no <encrypted xmlns='{ns}'/> found")
    return found


def message_to_json(message: Message, plain_key_material: Any) -> Dict[str, Any]:
    ns = message.namespace
    if ns == twomemo.twomemo.NAMESPACE:
        elt = twomemo.etree.serialize_message(message)
    else:
        elt = oldmemo.etree.serialize_message(message)
    keys = []
    for key_elt in elt.iter(f"{{{ns}}}key"):
        keys.append({
            "rid": int(key_elt.get("rid")),
            "kex": key_elt.get("kex", key_elt.get("prekey", "false")) in ("true", "1"),
            "data": key_elt.text,
        })
    for keys_elt in elt.iter(f"{{{ns}}}keys"):
        for key_elt, k in zip(keys_elt.iter(f"{{{ns}}}key"), keys):
            k["jid"] = keys_elt.get("jid")
    payload_elt = elt.find(f"{{{ns}}}payload")
    iv_elt = elt.find(f"{{{ns}}}header/{{{ns}}}iv")
    # A complete <message/> stanza as slixmpp-omemo would send it (fallback body + store hint). The EME
    # hint (XEP-0380) is NOT added by slixmpp-omemo 2.2.0; it is included here for convenience.
    eme_name = "OMEMO" if ns == oldmemo.oldmemo.NAMESPACE else "OMEMO 2"
    stanza = ("<message xmlns='jabber:client' type='chat'>"
              "<body>This message is OMEMO encrypted.</body>"
              + xml_str(elt, ns)
              + f"<encryption xmlns='urn:xmpp:eme:0' namespace='{ns}' name='{eme_name}'/>"
              "<store xmlns='urn:xmpp:hints'/></message>")
    return {
        "ns": ns, "from_jid": message.bare_jid, "sid": message.device_id,
        "keys": keys,
        "payload": None if payload_elt is None else payload_elt.text,
        "iv": None if iv_elt is None else iv_elt.text,
        "key_material": b64e(plain_key_material.key + plain_key_material.auth_tag),
        "xml": xml_str(elt, ns),
        "stanza": stanza,
    }


def sce_envelope(text: str, from_jid: str, rpad_len: Optional[int] = None) -> bytes:
    """XEP-0420/XEP-0384 SCE envelope. NOT produced by the reference (slixmpp-omemo 2.2.0 raises
    NotImplementedError for SCE); built here from the XEP text for convenience."""
    from xml.sax.saxutils import escape, quoteattr
    if rpad_len is None:
        rpad_len = secrets.randbelow(201)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    rpad = "".join(secrets.choice(alphabet) for _ in range(rpad_len))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (f"<envelope xmlns='{SCE_NS}'><content><body xmlns='jabber:client'>{escape(text)}</body></content>"
            f"<rpad>{rpad}</rpad><time stamp='{stamp}'/><from jid={quoteattr(from_jid)}/></envelope>"
            ).encode("utf-8")


def sce_body(plaintext: bytes) -> Optional[str]:
    try:
        env = ET.fromstring(plaintext)
    except ET.ParseError:
        return None
    if env.tag != f"{{{SCE_NS}}}envelope":
        return None
    body = env.find(f"{{{SCE_NS}}}content/{{jabber:client}}body")
    return None if body is None else (body.text or "")


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------

def out(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


async def cmd_gen(a: argparse.Namespace) -> None:
    seed = bytes.fromhex(a.seed_hex) if a.seed_hex else None
    dev = await Device.create(a.jid, a.device_id, seed, a.prekeys, a.state)
    res = {"identity": await dev.identity(),
           "bundles": {"twomemo": await dev.bundle_json(twomemo.twomemo.NAMESPACE),
                       "oldmemo": await dev.bundle_json(oldmemo.oldmemo.NAMESPACE)}}
    dev.save()
    out(res)


async def cmd_info(a: argparse.Namespace) -> None:
    dev = Device.load(a.state)
    out(await dev.identity())


async def cmd_bundle(a: argparse.Namespace) -> None:
    dev = Device.load(a.state)
    res = await dev.bundle_json(NS_ALIASES[a.ns])
    dev.save()
    out(res)


async def cmd_encrypt(a: argparse.Namespace) -> None:
    dev = Device.load(a.state)
    ns = NS_ALIASES[a.ns]
    if a.empty:
        pt = None
    elif a.plaintext_hex is not None:
        pt = bytes.fromhex(a.plaintext_hex)
    else:
        pt = (a.plaintext or "").encode("utf-8")
        if a.sce:
            pt = sce_envelope(a.plaintext or "", dev.jid)
    res = await dev.encrypt(ns, a.to_jid, a.to_device, pt, a.bundle, a.new_session)
    dev.save()
    out(res)


async def cmd_decrypt(a: argparse.Namespace) -> None:
    dev = Device.load(a.state)
    res = await dev.decrypt(NS_ALIASES[a.ns], a.from_jid, a.message, a.sender_bundle, not a.no_auto_reply)
    dev.save()
    out(res)


async def cmd_selftest(a: argparse.Namespace) -> None:
    """Two Python devices talk to each other through the JSON/XML interfaces, for both namespaces."""
    import tempfile
    log = (lambda *x: None) if a.quiet else (lambda *x: print(*x, file=sys.stderr))
    with tempfile.TemporaryDirectory() as d:
        for nsname in ("twomemo", "oldmemo"):
            ns = NS_ALIASES[nsname]
            alice = await Device.create("alice@example.org", None, None, 100, os.path.join(d, f"a-{nsname}"))
            bob = await Device.create("bob@example.org", None, None, 100, os.path.join(d, f"b-{nsname}"))
            bob_bundle = json.dumps(await bob.bundle_json(ns))
            alice_bundle = json.dumps(await alice.bundle_json(ns))
            # 1. Alice -> Bob, initial key exchange
            m1 = await alice.encrypt(ns, bob.jid, bob.device_id, b"hello bob 1", bob_bundle)
            assert m1["keys"][0]["kex"], "first message must carry a key exchange"
            # 2. Alice -> Bob again before any answer: still a key exchange (same one)
            m2 = await alice.encrypt(ns, bob.jid, bob.device_id, b"hello bob 2", None)
            assert m2["keys"][0]["kex"]
            # Bob receives out of order: m2 first, then m1
            r2 = await bob.decrypt(ns, alice.jid, json.dumps(m2), alice_bundle)
            assert r2["plaintext"] == "hello bob 2" and r2["session"] == "new-passive", r2
            r1 = await bob.decrypt(ns, alice.jid, json.dumps(m1), None, auto_reply=False)
            assert r1["plaintext"] == "hello bob 1" and r1["session"].startswith("existing"), r1
            # Bob's automatic empty message completes the handshake on Alice's side
            ack = r2["auto_reply"]
            assert ack["payload"] is None and not ack["keys"][0]["kex"]
            ra = await alice.decrypt(ns, bob.jid, json.dumps(ack), bob_bundle, auto_reply=False)
            assert ra["empty"], ra
            # 3. Now Alice's messages no longer carry the key exchange
            m3 = await alice.encrypt(ns, bob.jid, bob.device_id, "grüße 3".encode(), None)
            assert not m3["keys"][0]["kex"]
            r3 = await bob.decrypt(ns, alice.jid, json.dumps(m3), None)
            assert r3["plaintext"] == "grüße 3"
            # 4. Bob replies (ratchet step), then 60 more messages from Alice -> heartbeat from Bob
            m4 = await bob.encrypt(ns, alice.jid, alice.device_id, b"reply 4", None)
            r4 = await alice.decrypt(ns, bob.jid, json.dumps(m4), None)
            assert r4["plaintext"] == "reply 4" and "auto_reply" not in r4
            hb = None
            for i in range(60):
                mi = await alice.encrypt(ns, bob.jid, bob.device_id, f"msg {i}".encode(), None)
                ri = await bob.decrypt(ns, alice.jid, json.dumps(mi), None)
                assert ri["plaintext"] == f"msg {i}"
                if "auto_reply" in ri and hb is None:
                    hb = (i, ri["auto_reply"])
            assert hb is not None and hb[0] == 53, hb and hb[0]
            rh = await alice.decrypt(ns, bob.jid, json.dumps(hb[1]), None)
            assert rh["empty"]
            # 5. SCE envelope round trip (twomemo only makes sense, harmless for oldmemo)
            m5 = await alice.encrypt(ns, bob.jid, bob.device_id, sce_envelope("sce body", alice.jid), None)
            r5 = await bob.decrypt(ns, alice.jid, json.dumps(m5), None)
            assert r5.get("sce_body") == "sce body"
            # 6. The used pre key is gone from Bob's bundle and refilled to 100
            nb = r2["new_bundle"]
            assert len(nb["prekeys"]) == 100
            log(f"[selftest] {nsname}: OK (heartbeat after message index {hb[0]})")
            # 7. persistence round trip
            alice.save(); bob.save()
            alice2, bob2 = Device.load(alice.path), Device.load(bob.path)
            m6 = await bob2.encrypt(ns, alice2.jid, alice2.device_id, b"after reload", None)
            assert (await alice2.decrypt(ns, bob2.jid, json.dumps(m6), None))["plaintext"] == "after reload"
    out({"selftest": "OK"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)

    g = sp.add_parser("gen")
    g.add_argument("--state", required=True)
    g.add_argument("--jid", required=True)
    g.add_argument("--device-id", type=int)
    g.add_argument("--seed-hex")
    g.add_argument("--prekeys", type=int, default=PRE_KEY_TARGET)

    i = sp.add_parser("info")
    i.add_argument("--state", required=True)

    b = sp.add_parser("bundle")
    b.add_argument("--state", required=True)
    b.add_argument("--ns", required=True, choices=sorted(NS_ALIASES))

    e = sp.add_parser("encrypt")
    e.add_argument("--state", required=True)
    e.add_argument("--ns", required=True, choices=sorted(NS_ALIASES))
    e.add_argument("--to-jid", required=True)
    e.add_argument("--to-device", required=True, type=int)
    e.add_argument("--bundle")
    grp = e.add_mutually_exclusive_group(required=True)
    grp.add_argument("--plaintext")
    grp.add_argument("--plaintext-hex")
    grp.add_argument("--empty", action="store_true")
    e.add_argument("--sce", action="store_true", help="wrap --plaintext in an SCE envelope (XEP-0420)")
    e.add_argument("--new-session", action="store_true", help="ignore/replace an existing session")

    d = sp.add_parser("decrypt")
    d.add_argument("--state", required=True)
    d.add_argument("--ns", required=True, choices=sorted(NS_ALIASES))
    d.add_argument("--from-jid", required=True)
    d.add_argument("--message", required=True)
    d.add_argument("--sender-bundle")
    d.add_argument("--no-auto-reply", action="store_true")

    s = sp.add_parser("selftest")
    s.add_argument("--quiet", action="store_true")

    a = p.parse_args()
    asyncio.run({"gen": cmd_gen, "info": cmd_info, "bundle": cmd_bundle, "encrypt": cmd_encrypt,
                 "decrypt": cmd_decrypt, "selftest": cmd_selftest}[a.cmd](a))


if __name__ == "__main__":
    main()
