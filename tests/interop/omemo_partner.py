#!/usr/bin/env python3
"""An OMEMO partner for our client: slixmpp with slixmpp-omemo (python-omemo).

It signs in (registering with --register), accepts the peer's presence
subscription and subscribes back (slixmpp does both by default), then:

  - prints "READY device=ID fingerprint=HEX" once its OMEMO keys are
    published (HEX: its identity key in Curve25519 form, as every client
    shows it);
  - with --first TEXT, sends TEXT to --peer first (python-omemo then starts
    the session: it fetches our device list and bundle);
  - for every OMEMO message from --peer, prints
    "DECRYPTED <namespace> <text>" and answers "echo: <text>" end to end,
    in the namespace the message came in;
  - ends after --answers answers (or --timeout seconds without news), and
    exits 0 when it decrypted and answered that many.

Namespaces:
  - eu.siacs.conversations.axolotl (OMEMO 0.3) through slixmpp-omemo's own
    encrypt_message and decrypt_message;
  - urn:xmpp:omemo:2 through python-omemo's SessionManager with the
    XEP-0420 envelope built and read here: slixmpp-omemo 2.2.0 raises
    NotImplementedError for SCE, but its session manager and twomemo
    backend are complete; only the envelope around the text is ours.

--only-old publishes OMEMO 0.3 alone (as Conversations does), so that a
peer that prefers OMEMO 2 must speak 0.3 to it.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import secrets
import sys
import time
from xml.etree import ElementTree as ET

import omemo_peer as peer
from omemo_peer import NEW_NS, OLD_NS, REPORT, Client, err_of, start_client, until

import twomemo.etree
import xeddsa
from slixmpp.jid import JID

SCE = "urn:xmpp:sce:1"
CLIENT = "jabber:client"


def only_old() -> None:
    """Makes slixmpp-omemo build its session manager with OMEMO 0.3 alone."""
    impl = peer.slix_omemo_impl
    original = impl._make_session_manager  # pylint: disable=protected-access

    def make(xmpp, xep):
        cls = original(xmpp, xep)

        class OnlyOld(cls):  # type: ignore[misc, valid-type]
            @classmethod
            async def create(klass, backends, *args, **kwargs):  # noqa: N804
                kept = [b for b in backends if b.namespace == OLD_NS]
                return await super().create(kept, *args, **kwargs)

        return OnlyOld

    impl._make_session_manager = make  # pylint: disable=protected-access


def envelope(body: str, sender: str) -> bytes:
    """An XEP-0420 envelope: content, random padding, time, from."""
    pad = secrets.token_urlsafe(secrets.randbelow(150))[:200]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        f"<envelope xmlns='{SCE}'><content><body xmlns='{CLIENT}'>{html.escape(body)}</body>"
        f"</content><rpad>{pad}</rpad><time stamp='{stamp}'/><from jid='{sender}'/></envelope>"
    ).encode("utf-8")


def read_envelope(data: bytes, sender: str) -> str:
    """The body of an envelope, after checking its <from/> names the sender."""
    env = ET.fromstring(data.decode("utf-8"))
    if env.tag != f"{{{SCE}}}envelope":
        raise ValueError(f"not an SCE envelope: {env.tag}")
    frm = env.find(f"{{{SCE}}}from")
    if frm is None or JID(frm.get("jid", "")).bare != sender:
        raise ValueError(f"the envelope names another sender: {None if frm is None else frm.get('jid')}")
    body = env.find(f"{{{SCE}}}content/{{{CLIENT}}}body")
    return "" if body is None or body.text is None else body.text


class Partner(Client):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.answered = 0
        self.tasks = set()

    async def on_message(self, msg) -> None:  # noqa: C901
        if msg["type"] not in ("chat", "normal"):
            return
        sender = msg["from"].bare
        xep = self.plugin["xep_0384"]
        namespaces = xep.is_encrypted(msg)
        if not namespaces:
            if msg["body"]:
                REPORT.say(f"[{self.name}] PLAIN from {sender}: {msg['body']}")
            return
        try:
            if NEW_NS in namespaces:
                elt = msg.xml.find(f"{{{NEW_NS}}}encrypted")
                sm = await self.sm()
                plaintext, device, *_ = await sm.decrypt(twomemo.etree.parse_message(elt, sender))
                if plaintext is None:
                    REPORT.say(f"[{self.name}] empty omemo:2 message from {sender} device {device.device_id}")
                    return
                ns, text = NEW_NS, read_envelope(plaintext, sender)
            else:
                dec, device = await xep.decrypt_message(msg)
                if not dec["body"]:
                    REPORT.say(f"[{self.name}] empty oldmemo message from {sender} device {device.device_id}")
                    return
                ns, text = OLD_NS, dec["body"]
        except Exception as e:  # noqa: BLE001
            REPORT.check(f"decrypt a message from {sender}", False, err_of(e), required=True)
            return
        print(f"DECRYPTED {ns} {text}", flush=True)
        self.inbox.append((ns, sender, device.device_id, text))
        if sender == JID(self.args.peer).bare:
            await self.answer(ns, sender, f"echo: {text}")

    async def answer(self, ns: str, to: str, text: str, last_try: bool = True) -> bool:
        try:
            if ns == NEW_NS:
                await self.send_two(to, text)
            else:
                await self.send_oldmemo(to, text)
            self.answered += 1
            print(f"ANSWERED {ns} {text}", flush=True)
            return True
        except Exception as e:  # noqa: BLE001
            if last_try:
                REPORT.check(f"answer {to} in {ns}", False, err_of(e), required=True)
            else:
                print(f"RETRY sending to {to} in {ns}: {err_of(e)}", flush=True)
            return False

    async def send_two(self, to: str, text: str) -> None:
        """OMEMO 2 with the XEP-0420 envelope."""
        xep = self.plugin["xep_0384"]
        await xep.refresh_device_lists({JID(to)})
        sm = await self.sm()
        messages, errors = await sm.encrypt(frozenset({to}), {NEW_NS: envelope(text, self.boundjid.bare)},
                                            backend_priority_order=[NEW_NS])
        if errors:
            REPORT.say(f"[{self.name}] non-critical encryption errors: {[err_of(e) for e in errors]}")
        msg = self.make_message(mto=JID(to), mtype="chat")
        msg["body"] = "This message is OMEMO encrypted."
        for m in messages:
            msg.append(twomemo.etree.serialize_message(m))
        msg.enable("store")
        msg.send()


async def run(args) -> int:
    host, port = args.server.rsplit(":", 1)
    xml_log = open(args.xml_log, "a", encoding="utf-8") if args.xml_log else None
    p = Partner("partner", args.jid, args.password, args, xml_log)
    try:
        if not await start_client(p, host, int(port), args.timeout):
            return 1
        sm = await p.sm()
        own, _ = await sm.get_own_device_information()
        # slixmpp-omemo declares its interest in the device lists (+notify)
        # when the plugin loads, before the resource is bound, and slixmpp
        # files those features under the unbound JID: the bound session's
        # capabilities leave them out, and no server would notify it.
        # Declared again now, and presence sent with the new hash.
        p.plugin["xep_0163"].add_interest(["urn:xmpp:omemo:2:devices",
                                           "eu.siacs.conversations.axolotl.devicelist"])
        await p.plugin["xep_0115"].update_caps()
        ik = own.identity_key
        # python-omemo keeps the Ed25519 form; the fingerprint people
        # compare is the Curve25519 form.
        print(f"READY device={own.device_id} fingerprint={xeddsa.ed25519_pub_to_curve25519_pub(ik).hex()}",
              flush=True)
        if args.first:
            peer_jid = JID(args.peer).bare
            ns = NEW_NS if args.first_ns == "2" else OLD_NS
            node = "urn:xmpp:omemo:2:devices" if ns == NEW_NS else "eu.siacs.conversations.axolotl.devicelist"
            # The peer's device list, in the namespace about to be used,
            # arrives by PEP once both are subscribed (our server sends the
            # latest items to a new subscriber; Prosody only notifies
            # publications made after it): else it is fetched by hand (our
            # client publishes with access open), and said.
            if not await until(lambda: any(e[0] == peer_jid and e[1] == node for e in p.devlist_events), 5):
                await p.plugin["xep_0384"].refresh_device_lists({JID(peer_jid)}, force_download=True)
                print(f"FALLBACK fetched {peer_jid}'s device lists by hand", flush=True)
            else:
                # The plugin's own handler of that notification runs beside
                # ours: let it finish.
                await asyncio.sleep(0.5)
            # The plugin learns the list and fetches the bundle on its own
            # schedule; under load it may not be ready at once.
            for attempt in range(3):
                if await p.answer(ns, peer_jid, args.first, last_try=attempt == 2):
                    break
                await asyncio.sleep(1)
                await p.plugin["xep_0384"].refresh_device_lists({JID(peer_jid)}, force_download=True)
            p.answered -= 1  # the first message is no answer
        last = (p.answered, len(p.inbox))
        deadline = time.monotonic() + args.timeout
        while p.answered < args.answers and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if (p.answered, len(p.inbox)) != last:
                last = (p.answered, len(p.inbox))
                deadline = time.monotonic() + args.timeout
        REPORT.check(f"answered {args.answers} message(s)", p.answered >= args.answers,
                     f"{p.answered}", required=True)
    finally:
        await asyncio.sleep(0.5)
        p.disconnect()
        await asyncio.sleep(0.5)
        if xml_log:
            xml_log.close()
    return 0


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    a.add_argument("--server", required=True, help="HOST:PORT of the c2s listener (plaintext)")
    a.add_argument("--jid", required=True)
    a.add_argument("--password", default="omemo-partner-pw")
    a.add_argument("--register", action="store_true")
    a.add_argument("--peer", required=True, help="the JID of the client under test")
    a.add_argument("--first", default=None, help="send this to the peer first")
    a.add_argument("--first-ns", choices=["2", "old"], default="old")
    a.add_argument("--answers", type=int, default=1, help="end after this many answers")
    a.add_argument("--only-old", action="store_true", help="publish OMEMO 0.3 only")
    a.add_argument("--timeout", type=float, default=20.0)
    a.add_argument("--xml-log", default=None)
    a.add_argument("--debug", action="store_true")
    args = a.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr)
    # The omemo_peer checks read these.
    for k, v in {"stranger": False, "second_device": False, "preexisting": False, "probes": False}.items():
        setattr(args, k, v)
    if args.only_old:
        only_old()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(run(args))
    failed = REPORT.failed_required
    print(f"SUMMARY {len(failed)} required check(s) failed", flush=True)
    for c in failed:
        print(f"FAILED {c['name']}: {c.get('detail', '')}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
