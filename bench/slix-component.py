#!/usr/bin/python3
"""The stronger baseline of the benchmarks (issue 15): the report bot people
write with slixmpp, done competently. Run with /usr/bin/python3 (Debian
python3-slixmpp 1.8.3).

It is an external component (XEP-0114), like xmpp-reports, on its own domain.
A chat message to PROJECT@DOMAIN makes it:

1. download the whole report (GET of --url-template with {project}) into
   memory, over plain HTTP/1.1 on asyncio streams (Content-Length read in
   one readexactly: no per-chunk Python work);
2. offer it by SI (XEP-0095/0096) from PROJECT@DOMAIN/reports, S5B and IBB,
   or IBB only when the message body is "ibb";
3. S5B (XEP-0065): offer its own streamhost (an asyncio TCP server on
   --streamhost-host, no proxy hop), accept libpurple's SOCKS5 connect,
   and after <streamhost-used/> write the whole buffer at once and close;
   IBB (XEP-0047): IQ-carried blocks of --ibb-block bytes, --ibb-window in
   flight, then <close/> (libpurple never answers it, so it is not awaited).

It does not ask disco#info: Pidgin always takes SI.

The SI offer and the bytestream stanzas are written as raw XML (slixmpp
1.8.3's XEP-0095/0096 sender side is broken, see bench/slix-sender.py);
the XMPP stream, IQ tracking and the component handshake are slixmpp's.

stdout: JSON lines {"event":"online"|"fetched"|"sent"|"failed", ...}.
stdin: EOF ends it.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
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


_idle = {}  # (host, port) -> [(reader, writer)]: connections the intranet kept open


async def _get_once(reader, writer, u):
    path = u.path + ('?' + u.query if u.query else '')
    writer.write(('GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: slix-bot\r\n\r\n' % (path, u.netloc)).encode('ascii'))
    head = await reader.readuntil(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ':' in line:
            k, v = line.split(':', 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get('content-length', '0')))
    return status, headers, body


async def http_get(url):
    """The whole body of a plain-HTTP GET, in memory (Content-Length required), over a kept-alive
    connection when the intranet left one open (as a competent client's connection pool would)."""
    u = urllib.parse.urlsplit(url)
    key = (u.hostname, u.port or 80)
    pool = _idle.setdefault(key, [])
    for attempt in (0, 1):
        reused = bool(pool) and attempt == 0
        reader, writer = pool.pop() if reused else await asyncio.open_connection(*key)
        try:
            status, headers, body = await _get_once(reader, writer, u)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            if reused:
                continue  # the server closed the idle connection meanwhile: once more on a new one
            raise
        if headers.get('connection', '').lower() == 'close':
            writer.close()
        else:
            pool.append((reader, writer))
        if status != 200:
            raise RuntimeError('intranet answered %d' % status)
        return body
    raise RuntimeError('unreachable')


class Streamhost:
    """Its own SOCKS5 streamhost (XEP-0065 §5.3): waits for the target's CONNECT to a known DST.ADDR."""

    def __init__(self):
        self.waiting = {}  # dst hex -> future of the StreamWriter
        self.port = 0

    async def start(self, host):
        self.server = await asyncio.start_server(self.handle, host, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def expect(self, dst):
        fut = asyncio.get_running_loop().create_future()
        self.waiting[dst] = fut
        return fut

    async def handle(self, reader, writer):
        try:
            ver, n = await reader.readexactly(2)
            methods = await reader.readexactly(n)
            if ver != 5 or 0 not in methods:
                writer.write(b'\x05\xff')
                writer.close()
                return
            writer.write(b'\x05\x00')
            ver, cmd, _rsv, atyp = await reader.readexactly(4)
            if ver != 5 or cmd != 1 or atyp != 3:
                writer.close()
                return
            (alen,) = await reader.readexactly(1)
            addr = await reader.readexactly(alen)
            await reader.readexactly(2)  # port: 0
            fut = self.waiting.pop(addr.decode('ascii', 'replace'), None)
            if fut is None or fut.done():
                writer.write(b'\x05\x02\x00\x03' + bytes([alen]) + addr + b'\x00\x00')
                writer.close()
                return
            writer.write(b'\x05\x00\x00\x03' + bytes([alen]) + addr + b'\x00\x00')
            sock = writer.get_extra_info('socket')
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fut.set_result(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


class Bot(slixmpp.ComponentXMPP):
    def __init__(self, args, streamhost):
        super().__init__(args.domain, args.secret, args.host, args.port)
        self.args = args
        self.streamhost = streamhost
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('message', self.on_message)

    async def on_start(self, _event):
        emit({'event': 'online', 'domain': self.args.domain, 'streamhost_port': self.streamhost.port})

    def on_message(self, msg):
        if msg['type'] not in ('chat', 'normal') or not msg['body']:
            return
        asyncio.ensure_future(self.serve(msg['from'].full, msg['to'].user, msg['body'].strip()))

    async def serve(self, peer, project, body):
        sender = '%s@%s/reports' % (project, self.args.domain)
        sid = 's' + uuid.uuid4().hex
        methods = (NS_IBB,) if body == 'ibb' else (NS_S5B, NS_IBB)
        try:
            t0 = time.monotonic()
            url = self.args.url_template.replace('{project}', urllib.parse.quote(project, safe=''))
            data = await http_get(url)
            emit({'event': 'fetched', 'project': project, 'bytes': len(data), 'ms': (time.monotonic() - t0) * 1000})
            method = await self.offer(sender, peer, sid, project + '.pdf', len(data), methods)
            if method == NS_S5B:
                await self.send_s5b(sender, peer, sid, data)
                how = 's5b'
            elif method == NS_IBB:
                await self.send_ibb(sender, peer, sid, data)
                how = 'ibb'
            else:
                raise RuntimeError('receiver chose %r' % method)
            emit({'event': 'sent', 'to': peer, 'sid': sid, 'bytes': len(data), 'method': how})
        except Exception as exc:  # report and keep serving
            emit({'event': 'failed', 'to': peer, 'sid': sid, 'reason': '%s: %s' % (type(exc).__name__, exc)})

    async def offer(self, sender, peer, sid, name, size, methods):
        iq = self.make_iq_set(ito=peer, ifrom=sender)
        si = ET.SubElement(iq.xml, '{%s}si' % NS_SI, {'id': sid, 'profile': NS_FT,
                                                      'mime-type': 'application/pdf'})
        ET.SubElement(si, '{%s}file' % NS_FT, {'name': name, 'size': str(size)})
        feature = ET.SubElement(si, '{%s}feature' % NS_FNEG)
        x = ET.SubElement(feature, '{%s}x' % NS_XDATA, {'type': 'form'})
        field = ET.SubElement(x, '{%s}field' % NS_XDATA, {'var': 'stream-method', 'type': 'list-single'})
        for ns in methods:
            opt = ET.SubElement(field, '{%s}option' % NS_XDATA)
            ET.SubElement(opt, '{%s}value' % NS_XDATA).text = ns
        result = await iq.send(timeout=120)
        value = result.xml.find('.//{%s}field/{%s}value' % (NS_XDATA, NS_XDATA))
        return (value.text or '').strip() if value is not None else ''

    async def send_s5b(self, sender, peer, sid, data):
        dst = hashlib.sha1((sid + sender + peer).encode('utf-8')).hexdigest()
        connected = self.streamhost.expect(dst)
        iq = self.make_iq_set(ito=peer, ifrom=sender)
        q = ET.SubElement(iq.xml, '{%s}query' % NS_S5B, {'sid': sid, 'mode': 'tcp'})
        ET.SubElement(q, '{%s}streamhost' % NS_S5B,
                      {'jid': sender, 'host': self.args.streamhost_host, 'port': str(self.streamhost.port)})
        try:
            result = await iq.send(timeout=120)
            used = result.xml.find('.//{%s}streamhost-used' % NS_S5B)
            if used is None or used.get('jid') != sender:
                raise RuntimeError('receiver did not use our streamhost')
            writer = await asyncio.wait_for(connected, 30)
        finally:
            self.streamhost.waiting.pop(dst, None)
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def send_ibb(self, sender, peer, sid, data):
        block = self.args.ibb_block
        iq = self.make_iq_set(ito=peer, ifrom=sender)
        ET.SubElement(iq.xml, '{%s}open' % NS_IBB, {'sid': sid, 'block-size': str(block), 'stanza': 'iq'})
        await iq.send(timeout=120)
        window = asyncio.Semaphore(self.args.ibb_window)
        failed = []

        async def one(seq, chunk):
            try:
                d = self.make_iq_set(ito=peer, ifrom=sender)
                el = ET.SubElement(d.xml, '{%s}data' % NS_IBB, {'sid': sid, 'seq': str(seq & 0xFFFF)})
                el.text = base64.b64encode(chunk).decode('ascii')
                await d.send(timeout=120)
            except Exception as exc:
                failed.append(exc)
            finally:
                window.release()

        tasks = []
        for seq, off in enumerate(range(0, len(data), block)):
            await window.acquire()
            if failed:
                raise failed[0]
            tasks.append(asyncio.ensure_future(one(seq, data[off:off + block])))
        await asyncio.gather(*tasks)
        if failed:
            raise failed[0]
        close = self.make_iq_set(ito=peer, ifrom=sender)
        ET.SubElement(close.xml, '{%s}close' % NS_IBB, {'sid': sid})
        close.send()  # libpurple never answers <close/>


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--domain', required=True)
    p.add_argument('--secret', required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--url-template', required=True)
    p.add_argument('--streamhost-host', default='127.0.0.1')
    p.add_argument('--ibb-block', type=int, default=32768)
    p.add_argument('--ibb-window', type=int, default=8)
    p.add_argument('--timeout', type=float, default=3600)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    done = loop.create_future()
    streamhost = Streamhost()
    loop.run_until_complete(streamhost.start(args.streamhost_host))
    bot = Bot(args, streamhost)

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
    bot.connect()
    loop.run_until_complete(done)
    os._exit(0)


if __name__ == '__main__':
    main()
