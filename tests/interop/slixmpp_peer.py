#!/usr/bin/env python3
"""A third-party XMPP client for the interoperability tests.

It is built on slixmpp (from PyPI, see requirements.txt), a library nobody in this
project wrote, so when it works against our server we know the server speaks
XMPP and not merely "whatever our own client expects".

It prints one JSON object per line on stdout, the same shape as
`chat-plain client --json`, so the Rust harness reads both the same way:

  connected    jid, mechanism, encrypted   after SASL and resource binding
  server_info  features, software, ping   (--probe-server)
  presence     from, available, show, status
  subscribe    from                   (auto-approved, as a user would click)
  message      from, body, id, stanza_id  (stanza_id: XEP-0359, by our JID)
  receipt      from, id               (XEP-0184, for our echo replies)
  chat-state   from, state            (XEP-0085: composing, paused...)
  carbons-enabled                     (--carbons: XEP-0280 on)
  pep-published  node, id             (--pep-publish NODE=TEXT, access open)
  pep-items    jid, node, items       (--pep-items JID NODE: [[id, text]])
  pep-event    from, node, id, text   (a notification for a --pep-notify node)
  mam          with, bodies, ids      (--mam-with JID: the archive with JID;
                                       --mam-room ROOM: a room's archive,
                                       after the --join)
  uploaded     url                    (--upload FILE: XEP-0363, PUT by aiohttp;
                                       with --share-to JID, the URL then goes
                                       to JID as body and XEP-0066 oob)
  downloaded   from, url, size, sha256  (a file shared with us by a message
                                       with an XEP-0066 oob URL, GET by aiohttp)
  slot         put, get               (--upload-slot NAME SIZE: a slot only)
  sm-enabled   resume                 (--sm: XEP-0198 stream management on)
  sm-resumed                          (the session came back after a drop)
  carbon       sent, peer, body       (a copy of what another session of
                                       the account sent or received)
  unregistered                        after the account was removed
  room-joined  room, nick, created, occupants, history   (--join)
  room-presence  room, nick, available
  room-message room, nick, body       (live groupchat from others)
  error        detail

It answers every chat message with "echo: BODY" and a receipt request,
saying first that it is typing (XEP-0085 `composing`), and
every live groupchat message from someone else with "echo: BODY" in the
room. The message "bye" makes it delete its own account (XEP-0077 remove)
and leave.
"""

import argparse
import asyncio
import xml.etree.ElementTree as ET
import json
import logging
import sys

import slixmpp


def emit(kind, **fields):
    fields["type"] = kind
    print(json.dumps(fields, sort_keys=True), flush=True)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, args):
        plugin_config = {}
        if args.tls == "plain":
            # slixmpp refuses to send any password, even a SCRAM proof,
            # without TLS unless told to: the defence against the sniffing
            # our plaintext twin exists to show. Told to here, on purpose.
            plugin_config["feature_mechanisms"] = {
                "unencrypted_plain": True,
                "unencrypted_scram": True,
            }
        super().__init__(
            args.jid,
            args.password,
            sasl_mech=args.mech,
            plugin_config=plugin_config,
        )
        self.args = args
        self.exit_code = 0
        # Exactly one way in, so a test checks what it means to check.
        self.enable_plaintext = args.tls == "plain"
        self.enable_starttls = args.tls == "starttls"
        self.enable_direct_tls = args.tls == "direct"
        if args.ca:
            self.ca_certs = args.ca
        for plugin in ("xep_0004", "xep_0030", "xep_0045", "xep_0077", "xep_0085", "xep_0092", "xep_0184", "xep_0199", "xep_0280", "xep_0115", "xep_0060", "xep_0163", "xep_0313", "xep_0363", "xep_0066", "xep_0359"):
            self.register_plugin(plugin)
        self.plugin["xep_0077"].create_account = args.register
        if args.sm:
            self.register_plugin("xep_0198")
            self.add_event_handler("sm_enabled", lambda e: emit("sm-enabled", resume=bool(e["id"])))
            self.add_event_handler("session_resumed", lambda e: emit("sm-resumed"))
            self.add_event_handler("sm_failed", lambda e: emit("error", detail="sm: " + str(e)))
        self.dropping = False
        self.chats = 0
        self.plugin["xep_0184"].auto_request = True
        self.plugin["xep_0184"].auto_ack = True
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("presence_unavailable", self.on_presence)
        self.add_event_handler("changed_status", self.on_presence)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("receipt_received", self.on_receipt)
        self.add_event_handler("chatstate", self.on_chat_state)
        self.add_event_handler("pubsub_publish", self.on_pep_event)
        self.add_event_handler("carbon_sent", lambda m: self.on_carbon(m, True))
        self.add_event_handler("carbon_received", lambda m: self.on_carbon(m, False))
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("groupchat_presence", self.on_room_presence)

    async def on_register(self, form):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        # XEP-0077's profile fields, which our server keeps for the directory.
        if self.args.name:
            iq["register"]["name"] = self.args.name
        if self.args.email:
            iq["register"]["email"] = self.args.email
        try:
            await iq.send()
            emit("registered", jid=self.boundjid.bare)
        except slixmpp.exceptions.IqError as e:
            emit("error", detail="registration: " + e.iq["error"]["condition"])
            self.exit_code = 2
            self.disconnect()

    async def on_start(self, _event):
        mech = self.plugin["feature_mechanisms"].mech
        tls = self.transport is not None and self.transport.get_extra_info("ssl_object") is not None
        emit(
            "connected",
            jid=str(self.boundjid),
            mechanism=mech.name if mech else None,
            encrypted=tls,
        )
        await self.get_roster()
        if self.args.carbons:
            await self.plugin["xep_0280"].enable()
            emit("carbons-enabled")
        for node in self.args.pep_notify:
            # NODE+notify in our capabilities (XEP-0115): the server asks
            # what they mean, and sends that node's items from then on.
            self.plugin["xep_0030"].add_feature(node + "+notify")
        if self.args.pep_notify:
            await self.plugin["xep_0115"].update_caps(broadcast=False)
        self.send_presence(pshow=self.args.show, pstatus=self.args.status)
        if not self.args.pep_when:
            for spec in self.args.pep_publish:
                node, text = spec.split("=", 1)
                await self.pep_publish(node, text)
        for jid, node in self.args.pep_items:
            await self.pep_items(jid, node)
        for jid in self.args.mam_with:
            await self.mam(with_jid=slixmpp.JID(jid), label=jid)
        for path in self.args.upload:
            try:
                url = await self.plugin["xep_0363"].upload_file(path, timeout=10)
                emit("uploaded", url=url)
                if self.args.share_to:
                    # As Conversations and Dino share a file: the URL as
                    # the body, and again as out-of-band data.
                    share = self.make_message(mto=self.args.share_to, mbody=url, mtype="chat")
                    share["oob"]["url"] = url
                    share.send()
            except Exception as e:  # FileTooBig, IqError, HTTPError...
                detail = e.iq["error"]["condition"] if isinstance(e, slixmpp.exceptions.IqError) else repr(e)
                emit("error", detail="upload: " + detail)
        for name, size in self.args.upload_slot:
            try:
                service = await self.plugin["xep_0363"].find_upload_service(timeout=10)
                iq = await self.plugin["xep_0363"].request_slot(
                    service["from"], name, int(size), "application/octet-stream", timeout=10)
                emit("slot", put=iq["http_upload_slot"]["put"]["url"],
                     get=iq["http_upload_slot"]["get"]["url"])
            except slixmpp.exceptions.IqError as e:
                emit("error", detail="slot: " + e.iq["error"]["condition"],
                     text=e.iq["error"]["text"])
        if self.args.probe_server:
            domain = self.boundjid.domain
            info = await self.plugin["xep_0030"].get_info(jid=domain)
            version = await self.plugin["xep_0092"].get_version(domain)
            rtt = await self.plugin["xep_0199"].ping(jid=domain, timeout=10)
            emit(
                "server_info",
                features=sorted(info["disco_info"]["features"]),
                identities=[list(i) for i in info["disco_info"]["identities"]],
                software=version["software_version"]["name"],
                ping=rtt is not None,
            )
        for contact in self.args.add:
            self.send_presence_subscription(pto=contact)
        for room in self.args.join:
            await self.join_room(room)
        for room in self.args.mam_room:
            await self.mam(jid=slixmpp.JID(room), label=room)
        if self.args.quit:
            self.disconnect()

    async def mam(self, label, **where):
        try:
            iq = await self.plugin["xep_0313"].retrieve(rsm={"max": 10}, **where)
            results = iq["mam"]["results"]
            emit("mam",
                 bodies=[m["mam_result"]["forwarded"]["stanza"]["body"] for m in results],
                 ids=[m["mam_result"]["id"] for m in results],
                 **{"with": label})
        except slixmpp.exceptions.IqError as e:
            emit("error", detail="mam: " + e.iq["error"]["condition"])

    async def join_room(self, room):
        muc = self.plugin["xep_0045"]
        try:
            pres, _subject, occupants, history = await muc.join_muc_wait(
                slixmpp.JID(room), self.args.nick, maxstanzas=20, timeout=10
            )
        except slixmpp.exceptions.PresenceError as e:
            emit("error", detail="join: " + e.presence["error"]["condition"])
            self.exit_code = 1
            return
        created = 201 in pres["muc"]["status_codes"]
        if created:
            # An instant room: submit an empty configuration form (XEP-0045
            # 10.1.2), as a careful client does.
            form = self.plugin["xep_0004"].make_form(ftype="submit")
            await muc.set_room_config(slixmpp.JID(room), form)
        emit(
            "room-joined",
            room=room,
            nick=self.args.nick,
            created=created,
            occupants=sorted(p["from"].resource for p in occupants),
            history=[m["body"] for m in history],
        )

    def on_groupchat(self, msg):
        if msg["mucnick"] == self.args.nick or msg.get_plugin("delay", check=True):
            return
        room = msg["from"].bare
        emit("room-message", room=room, nick=msg["mucnick"], body=msg["body"])
        self.send_message(mto=room, mbody="echo: " + msg["body"], mtype="groupchat")

    def on_room_presence(self, pres):
        if pres["muc"]["nick"] == self.args.nick:
            return
        emit(
            "room-presence",
            room=pres["from"].bare,
            nick=pres["from"].resource,
            available=pres["type"] != "unavailable",
        )

    def on_message(self, msg):
        # A chat state alone (no body) is on_chat_state's.
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        if msg["oob"]["url"]:
            asyncio.ensure_future(self.download(str(msg["from"]), msg["oob"]["url"]))
            return
        sid = msg["stanza_id"]
        stanza_id = sid["id"] if sid["by"] == self.boundjid.bare else None
        emit("message", stanza_id=stanza_id,
             **{"from": str(msg["from"]), "body": msg["body"], "id": msg["id"]})
        self.chats += 1
        if self.chats == self.args.drop_after:
            asyncio.ensure_future(self.drop_and_return())
        if msg["body"] == "bye":
            asyncio.ensure_future(self.leave())
        else:
            typing = self.make_message(mto=msg["from"], mtype="chat")
            typing["chat_state"] = "composing"
            typing.send()
            echo = self.make_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")
            echo["chat_state"] = "active"
            echo.send()

    async def drop_and_return(self):
        # The network goes: the socket is torn down with no closing tag,
        # as when a phone loses its signal. A second later it connects
        # again (without registering twice), and slixmpp's XEP-0198 plugin
        # resumes the session.
        await asyncio.sleep(0.2)
        self.dropping = True
        self.plugin["xep_0077"].create_account = False
        host, port = self.args.server.rsplit(":", 1)

        async def back(_event):
            await asyncio.sleep(1)
            self.connect(host, int(port))
        self.add_event_handler("disconnected", back, disposable=True)
        self.abort()

    async def download(self, sender, url):
        import hashlib
        import aiohttp
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=20)) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
            emit("downloaded", url=url, size=len(body),
                 sha256=hashlib.sha256(body).hexdigest(), **{"from": sender})
        except Exception as e:
            emit("error", detail="download: " + repr(e))

    def on_carbon(self, msg, sent):
        # slixmpp's plugin already checked the carbon came from our own
        # account (the defence against forged carbons).
        inner = msg["carbon_sent" if sent else "carbon_received"]
        peer = inner["to"] if sent else inner["from"]
        emit("carbon", sent=sent, peer=str(peer), body=inner["body"])

    async def publish_later(self):
        # A second for the server to learn, from the contact's
        # capabilities, that it wants the node.
        await asyncio.sleep(1)
        for spec in self.args.pep_publish:
            node, text = spec.split("=", 1)
            await self.pep_publish(node, text)

    async def pep_publish(self, node, text):
        payload = ET.Element("{urn:example:pep}note")
        payload.text = text
        form = self.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#publish-options")
        form.add_field(var="pubsub#access_model", value="open")
        form.add_field(var="pubsub#max_items", value="max")
        try:
            iq = await self.plugin["xep_0060"].publish(
                self.boundjid.bare, node, payload=payload, options=form)
            item = iq["pubsub"]["publish"]["item"]
            emit("pep-published", node=node, id=item["id"])
        except slixmpp.exceptions.IqError as e:
            emit("error", detail="publish: " + e.iq["error"]["condition"])

    async def pep_items(self, jid, node):
        try:
            iq = await self.plugin["xep_0060"].get_items(jid, node)
            items = [[i["id"], i["payload"].text if i["payload"] is not None else None]
                     for i in iq["pubsub"]["items"]]
            emit("pep-items", jid=jid, node=node, items=items)
        except slixmpp.exceptions.IqError as e:
            emit("error", detail="items: " + e.iq["error"]["condition"])

    def on_pep_event(self, msg):
        items = msg["pubsub_event"]["items"]
        item = items["item"]
        payload = item["payload"]
        emit("pep-event", **{
            "from": str(msg["from"]),
            "node": items["node"],
            "id": item["id"],
            "text": payload.text if payload is not None else None,
        })

    def on_chat_state(self, msg):
        if msg["body"]:
            return
        emit("chat-state", **{"from": str(msg["from"]), "state": msg["chat_state"]})

    async def leave(self):
        try:
            await self.plugin["xep_0077"].cancel_registration(timeout=10)
            emit("unregistered")
        except slixmpp.exceptions.IqError as e:
            emit("error", detail="remove: " + e.iq["error"]["condition"])
            self.exit_code = 1
        self.disconnect()

    def on_presence(self, pres):
        if pres["from"].bare == self.boundjid.bare:
            return
        if (self.args.pep_when and pres["from"].bare == self.args.pep_when
                and pres["type"] != "unavailable" and not getattr(self, "published", False)):
            self.published = True
            asyncio.ensure_future(self.publish_later())
        emit(
            "presence",
            **{
                "from": str(pres["from"]),
                "available": pres["type"] != "unavailable",
                "show": pres["show"] or None,
                "status": pres["status"] or None,
            },
        )

    def on_subscribe(self, pres):
        emit("subscribe", **{"from": pres["from"].bare})

    def on_receipt(self, msg):
        emit("receipt", **{"from": str(msg["from"]), "id": msg["receipt"]})

    def on_failed_auth(self, _event):
        emit("error", detail="sign-in refused")
        self.exit_code = 2
        self.disconnect()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="HOST:PORT")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--register", action="store_true")
    p.add_argument("--name", default=None, help="display name to register with")
    p.add_argument("--email", default=None, help="email to register with")
    p.add_argument("--mech", default=None, help="force one SASL mechanism")
    p.add_argument("--show", default=None)
    p.add_argument("--status", default=None)
    p.add_argument("--probe-server", action="store_true")
    p.add_argument("--add", action="append", default=[], help="JID to subscribe to")
    p.add_argument("--join", action="append", default=[], help="room JID to join (or create)")
    p.add_argument("--nick", default="sally", help="nickname in rooms")
    p.add_argument("--quit", action="store_true", help="leave once signed in")
    p.add_argument("--carbons", action="store_true", help="enable message carbons (XEP-0280)")
    p.add_argument("--pep-notify", action="append", default=[], help="PEP node to get notifications for")
    p.add_argument("--pep-publish", action="append", default=[], help="NODE=TEXT to publish (access open)")
    p.add_argument("--pep-when", default=None, help="publish once this JID is seen online")
    p.add_argument("--mam-with", action="append", default=[], help="fetch the archive with this JID")
    p.add_argument("--mam-room", action="append", default=[], help="fetch this room's archive (after --join)")
    p.add_argument("--pep-items", action="append", nargs=2, default=[], metavar=("JID", "NODE"),
                   help="read a PEP node's items")
    p.add_argument("--upload-slot", action="append", nargs=2, default=[], metavar=("NAME", "SIZE"),
                   help="ask for an upload slot and print it")
    p.add_argument("--upload", action="append", default=[], help="FILE to share by HTTP upload")
    p.add_argument("--share-to", help="JID to send each uploaded file's URL to")
    p.add_argument("--tls", choices=["plain", "starttls", "direct"], default="plain")
    p.add_argument("--ca", default=None, help="CA certificate file to trust")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--sm", action="store_true", help="use stream management (XEP-0198)")
    p.add_argument("--drop-after", type=int, default=0, metavar="N",
                   help="drop the connection after the Nth chat message, then come back")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr
    )
    # slixmpp leaves a filter task pending at exit; asyncio's complaint
    # about it is noise in test transcripts.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    host, port = args.server.rsplit(":", 1)
    peer = Peer(args)
    peer.connect(host, int(port))
    try:
        deadline = peer.loop.time() + args.timeout
        while True:
            waiting = peer.disconnected
            left = max(0.1, deadline - peer.loop.time())
            peer.loop.run_until_complete(asyncio.wait_for(waiting, left))
            if not peer.dropping:
                break
            # The drop was ours (--drop-after): wait for the next end.
            peer.dropping = False
    except asyncio.TimeoutError:
        emit("error", detail="timed out")
        sys.exit(3)
    sys.exit(peer.exit_code)


if __name__ == "__main__":
    main()
