#!/usr/bin/python3
"""Baseline sender for the benchmarks: the XMPP file bot people write today
with slixmpp (Debian python3-slixmpp 1.8.3, run with /usr/bin/python3).

It logs in as an ordinary user (c2s, plain TCP) and answers a chat message
"send NAME [BLOCK]" with an SI file offer (XEP-0095/0096) of the file NAME
from --dir, then:

* S5B (XEP-0065): offers the server's mod_proxy65 as the only streamhost,
  connects to it with slixmpp's own SOCKS5 protocol class, activates the
  stream with slixmpp's xep_0065.activate() and writes the file in 1 MiB
  chunks (as slixmpp's examples/s5b_transfer/s5b_sender.py does), then closes.
* IBB (XEP-0047): slixmpp's xep_0047.open_stream(block_size=BLOCK) and
  IBBytestream.sendfile(): one block in flight, each acknowledged.

slixmpp 1.8.3's XEP-0095/0096 sender side is broken (offer() crashes with
plain-string methods; its request handler is never awaited), so the SI offer
and the bytestreams streamhost IQ are written as raw XML here; everything
else is slixmpp's code.

stdout: JSON lines {"event":"online"|"sent"|"failed"|"error", ...}.
stdin: EOF or {"cmd":"quit"} ends it.
"""
import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import uuid
import xml.etree.ElementTree as ET

import slixmpp

NS_SI = 'http://jabber.org/protocol/si'
NS_FT = 'http://jabber.org/protocol/si/profile/file-transfer'
NS_FNEG = 'http://jabber.org/protocol/feature-neg'
NS_XDATA = 'jabber:x:data'
NS_S5B = 'http://jabber.org/protocol/bytestreams'
NS_IBB = 'http://jabber.org/protocol/ibb'


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


class Bot(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0047')
        self.register_plugin('xep_0065')
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        emit({'event': 'online', 'jid': self.boundjid.full})

    def on_message(self, msg):
        if msg['type'] not in ('chat', 'normal') or not msg['body']:
            return
        asyncio.ensure_future(self.serve(msg['from'].full, msg['body'].split()))

    async def serve(self, peer, words):
        if len(words) < 2 or words[0] != 'send':
            return
        name = os.path.basename(words[1])
        block = int(words[2]) if len(words) > 2 else 4096
        path = os.path.join(self.args.dir, name)
        sid = 's' + uuid.uuid4().hex
        try:
            size = os.path.getsize(path)
            method = await self.offer(peer, sid, name, size)
            if method == NS_S5B:
                await self.send_s5b(peer, sid, path)
                how = 's5b'
            elif method == NS_IBB:
                await self.send_ibb(peer, sid, path, block)
                how = 'ibb'
            else:
                raise RuntimeError('receiver chose %r' % method)
            emit({'event': 'sent', 'to': peer, 'sid': sid, 'bytes': size, 'method': how})
        except Exception as exc:  # report and keep serving
            emit({'event': 'failed', 'to': peer, 'sid': sid, 'reason': '%s: %s' % (type(exc).__name__, exc)})

    async def offer(self, peer, sid, name, size):
        iq = self.make_iq_set(ito=peer)
        si = ET.SubElement(iq.xml, '{%s}si' % NS_SI, {'id': sid, 'profile': NS_FT,
                                                      'mime-type': 'application/octet-stream'})
        ET.SubElement(si, '{%s}file' % NS_FT, {'name': name, 'size': str(size)})
        feature = ET.SubElement(si, '{%s}feature' % NS_FNEG)
        x = ET.SubElement(feature, '{%s}x' % NS_XDATA, {'type': 'form'})
        field = ET.SubElement(x, '{%s}field' % NS_XDATA, {'var': 'stream-method', 'type': 'list-single'})
        for ns in (NS_S5B, NS_IBB):
            opt = ET.SubElement(field, '{%s}option' % NS_XDATA)
            ET.SubElement(opt, '{%s}value' % NS_XDATA).text = ns
        result = await iq.send(timeout=120)
        value = result.xml.find('.//{%s}field/{%s}value' % (NS_XDATA, NS_XDATA))
        return (value.text or '').strip() if value is not None else ''

    async def send_s5b(self, peer, sid, path):
        proxy_jid, host, port = self.args.proxy_jid, self.args.proxy_host, self.args.proxy_port
        iq = self.make_iq_set(ito=peer)
        q = ET.SubElement(iq.xml, '{%s}query' % NS_S5B, {'sid': sid, 'mode': 'tcp'})
        ET.SubElement(q, '{%s}streamhost' % NS_S5B, {'jid': proxy_jid, 'host': host, 'port': str(port)})
        result = await iq.send(timeout=120)
        used = result.xml.find('.//{%s}streamhost-used' % NS_S5B)
        if used is None or used.get('jid') != proxy_jid:
            raise RuntimeError('receiver did not use the proxy')
        s5b = self['xep_0065']
        dst = s5b._get_dest_sha1(sid, self.boundjid.full, peer)
        _transport, proto = await s5b._connect_proxy(dst, host, port)
        await proto.connected
        await s5b.activate(proxy_jid, sid, peer, timeout=120)
        with open(path, 'rb') as f:
            while True:
                data = f.read(1048576)
                if not data:
                    break
                await proto.write(data)
        proto.transport.close()  # flushes what is buffered, then closes

    async def send_ibb(self, peer, sid, path, block):
        stream = await self['xep_0047'].open_stream(peer, block_size=block, sid=sid, timeout=120)
        with open(path, 'rb') as f:
            await stream.sendfile(f, timeout=120)
        await stream.close(timeout=30)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--jid', required=True)
    p.add_argument('--password', required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--dir', required=True)
    p.add_argument('--proxy-jid', required=True)
    p.add_argument('--proxy-host', default='127.0.0.1')
    p.add_argument('--proxy-port', type=int, required=True)
    p.add_argument('--timeout', type=float, default=3600)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    done = loop.create_future()
    bot = Bot(args)

    def quit_soon():
        if not done.done():
            bot.disconnect()
            loop.call_later(2, lambda: done.done() or done.set_result(0))

    def read_stdin():
        for _line in sys.stdin:
            pass
        loop.call_soon_threadsafe(quit_soon)

    threading.Thread(target=read_stdin, daemon=True).start()
    loop.call_later(args.timeout, quit_soon)
    bot.add_event_handler('disconnected', lambda _e: done.done() or done.set_result(0))
    bot.connect((args.host, args.port), use_ssl=False, force_starttls=False, disable_starttls=True)
    loop.run_until_complete(done)
    os._exit(0)


if __name__ == '__main__':
    main()
