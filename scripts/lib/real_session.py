"""A varied XMPP session between two slixmpp clients through a real server
(Prosody, in the benchmark), for the sniffer's real-traffic capture.

    python real_session.py --server 127.0.0.1:PORT [--tls starttls --ca CA]

What crosses the wire, all of it written by slixmpp and Prosody:
in-band registration of both users, SASL sign-in (SCRAM), roster fetch and
a subscription both ways, presence with a status and entity capabilities
(XEP-0115), service discovery (XEP-0030) of the server and of the other
client, chat messages with delivery receipts (XEP-0184), a room (XEP-0045)
with group chat, and a file sent in-band (XEP-0047). It prints one line
with what it did and exits 0, or exits 1 on a timeout.
"""

import argparse
import asyncio
import os
import sys

import slixmpp

MESSAGES = 40
ROOM_MESSAGES = 20
FILE = bytes((i * 7 + 3) % 256 for i in range(24 * 1024))


class User(slixmpp.ClientXMPP):
    def __init__(self, jid, password, args):
        plain = args.tls == "plain"
        # Accept the other user's in-band file (a real client would ask).
        config = {"xep_0047": {"auto_accept": True}}
        if plain:
            # Over plaintext on purpose: the capture is what the sniffer
            # reads without a key log.
            config["feature_mechanisms"] = {"unencrypted_plain": True, "unencrypted_scram": True}
        super().__init__(jid, password, plugin_config=config)
        self.enable_plaintext = plain
        self.enable_starttls = args.tls == "starttls"
        self.enable_direct_tls = False
        if args.ca:
            self.ca_certs = args.ca
        for p in ("xep_0004", "xep_0030", "xep_0045", "xep_0047", "xep_0077",
                  "xep_0115", "xep_0184", "xep_0199"):
            self.register_plugin(p)
        self.plugin["xep_0077"].create_account = True
        self.plugin["xep_0184"].auto_request = True
        self.plugin["xep_0184"].auto_ack = True
        self.ready = asyncio.Event()
        self.got = 0
        self.room_got = 0
        self.file = b""
        self.file_done = asyncio.Event()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("ibb_stream_start", self.on_ibb)

    async def on_register(self, _form):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send()
        except slixmpp.exceptions.IqError:
            pass  # already registered: a second run on the same server

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence(pstatus="reading the capture", pshow="chat")
        await self.plugin["xep_0030"].get_info(jid=self.boundjid.domain)
        await self.plugin["xep_0030"].get_items(jid=self.boundjid.domain)
        self.ready.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.got += 1

    def on_groupchat(self, msg):
        if msg["body"] and not msg.get_plugin("delay", check=True):
            self.room_got += 1

    def on_ibb(self, stream):
        async def take():
            # Everything until the sender closes the stream.
            self.file = await stream.gather(timeout=30)
            self.file_done.set()
        asyncio.ensure_future(take())


async def wait_for(cond, what, secs=30):
    for _ in range(secs * 20):
        if cond():
            return
        await asyncio.sleep(0.05)
    print(f"real_session: timed out waiting for {what}", file=sys.stderr)
    sys.exit(1)


async def main(args):
    host, port = args.server.rsplit(":", 1)
    tag = args.tag
    alice = User(f"alice{tag}@localhost", "alice-capture-pw", args)
    bob = User(f"bob{tag}@localhost", "bob-capture-pw", args)
    for u in (alice, bob):
        u.connect(host, int(port))
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait()), 30)
    # Contacts both ways; slixmpp approves and subscribes back by default.
    alice.send_presence_subscription(pto=bob.boundjid.bare)
    await wait_for(lambda: bob.boundjid.bare in alice.client_roster
                   and alice.client_roster[bob.boundjid.bare]["subscription"] == "both", "subscription")
    # Disco of the other client's full JID (what capabilities point to).
    await alice.plugin["xep_0030"].get_info(jid=bob.boundjid.full)
    for i in range(MESSAGES):
        alice.send_message(mto=bob.boundjid.full, mbody=f"message {i} from alice: see you at the library", mtype="chat")
        bob.send_message(mto=alice.boundjid.full, mbody=f"message {i} from bob: bring the notes", mtype="chat")
    await wait_for(lambda: alice.got >= MESSAGES and bob.got >= MESSAGES, "messages")
    room = f"study{tag}@conference.localhost"
    muc = alice.plugin["xep_0045"]
    pres, *_ = await muc.join_muc_wait(slixmpp.JID(room), "alice", maxstanzas=0, timeout=10)
    if 201 in pres["muc"]["status_codes"]:
        # A new room stays locked until configured: make it an instant room
        # (XEP-0045 10.1.2) so others can join.
        await muc.set_room_config(slixmpp.JID(room), alice.plugin["xep_0004"].make_form(ftype="submit"))
    await bob.plugin["xep_0045"].join_muc_wait(slixmpp.JID(room), "bob", maxstanzas=0, timeout=10)
    for i in range(ROOM_MESSAGES):
        alice.send_message(mto=room, mbody=f"room message {i}: exam on friday", mtype="groupchat")
    await wait_for(lambda: bob.room_got >= ROOM_MESSAGES, "room messages")
    stream = await alice.plugin["xep_0047"].open_stream(bob.boundjid.full, block_size=4096)
    await stream.sendall(FILE)
    await stream.close()
    await asyncio.wait_for(bob.file_done.wait(), 30)
    ok = bob.file == FILE
    print(f"real_session: {MESSAGES * 2} messages, {ROOM_MESSAGES} in a room, "
          f"a {len(FILE)}-byte file {'intact' if ok else 'DAMAGED'}", flush=True)
    for u in (alice, bob):
        u.disconnect()
    await asyncio.sleep(0.5)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--tls", choices=["plain", "starttls"], default="plain")
    p.add_argument("--ca", default=None)
    p.add_argument("--tag", default=str(os.getpid()), help="suffix of user and room names")
    asyncio.run(main(p.parse_args()))
