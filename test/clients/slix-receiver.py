#!/usr/bin/python3
"""slixmpp-based receiving XMPP client for the integration tests.

Run it with Debian's interpreter (``/usr/bin/python3``): python3-slixmpp
1.8.3 is not importable from other Python builds.

It logs in over plain TCP (no TLS), answers disco#info, accepts or declines
SI file offers (XEP-0095/0096) and receives them over SOCKS5 bytestreams
(XEP-0065, the offering side is the initiator) or in-band bytestreams
(XEP-0047), with the same line protocol as the libpurple receiver:

* stdout: one JSON object per line, flushed:
    {"event":"online","jid":"<full jid>"}
    {"event":"message","from":"<full jid>","type":"chat"|"normal","body":"...",
     "oob":"<url>" (only with a jabber:x:oob element), "oob_desc":"..."}
    {"event":"message_error","from":"...","condition":"...","text":"..."}
    {"event":"presence","from":"...","type":"available"|"unavailable"|"subscribe"|...,
     "show":...,"status":...}
    {"event":"subscription_request","from":"..."}  (as well, for type subscribe;
     slixmpp's roster authorizes it and subscribes back automatically)
    {"event":"iq","from":"...","type":"result"|"error","id":"...","xml":"...",
     "condition":"..."}  (only replies to IQs sent with the raw command)
    {"event":"offer","from":"...","sid":"...","name":"...","size":N,
     "methods":["s5b","ibb",<other URIs verbatim>],"hash":...,"desc":...,"date":...,
     "mime":...,"profile":"..."}
    {"event":"declined","from":"...","sid":"...","name":"...","size":N}  (--decline)
    {"event":"streamhosts","from":"...","sid":"...","mode":"tcp",
     "hosts":[{"jid":"...","host":"...","port":N}]}
    {"event":"s5b_failed","from":"...","sid":"...","errors":[...]}  (no streamhost
     worked; item-not-found was sent; an IBB open is awaited for 30 s if offered)
    {"event":"received","from":"...","sid":"...","name":"...","size":N,"bytes":N,
     "sha256":"<hex>","method":"s5b"|"ibb","path":"<absolute>",
     "streamhost":"<jid>","eof":true|false (s5b) | "block_size":N (ibb)}
    {"event":"failed","from":"...","sid":"...","name":"...","reason":"...",
     "bytes":N,"size":N,"method":"s5b"|"ibb"|null}
    {"event":"vanishing","bytes":N,"sid":"..."}  (then exit 4 at once)
    {"event":"warning","message":"..."}  (bad command, unexpected stanza)
    {"event":"timeout","seconds":N}  (then exit 3)
    {"event":"error","message":"..."}  (fatal, then exit 2)
  Every offer ends in exactly one of received, failed or declined.
* stdin: one JSON command per line:
    {"cmd":"send","to":"...","body":"...","type":"chat"}
    {"cmd":"subscribe"|"unsubscribe"|"subscribed"|"unsubscribed","to":"..."}
    {"cmd":"presence","to":...,"type":...,"show":...,"status":...}
    {"cmd":"raw","xml":"<iq .../>"}
    {"cmd":"quit"}
  EOF on stdin, SIGTERM and SIGINT mean quit.

Exit codes: 0 after quit, 2 after a fatal error, 3 when --timeout runs
out, 4 for --disconnect-after-bytes.

The SI / bytestream / IBB handling is written directly against the XML
rather than with slixmpp's xep_0065/xep_0047/xep_0095 plugins, so that the
client can try streamhosts in document order with a per-host timeout,
report the advertised streamhosts, count bytes against the offered size and
"vanish" mid-transfer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, NoReturn, Optional, Tuple

import slixmpp
from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher.base import MatcherBase

NS_CLIENT = 'jabber:client'
NS_SI = 'http://jabber.org/protocol/si'
NS_FT = 'http://jabber.org/protocol/si/profile/file-transfer'
NS_FNEG = 'http://jabber.org/protocol/feature-neg'
NS_XDATA = 'jabber:x:data'
NS_S5B = 'http://jabber.org/protocol/bytestreams'
NS_IBB = 'http://jabber.org/protocol/ibb'
NS_OOB = 'jabber:x:oob'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'

METHOD_NS = {'s5b': NS_S5B, 'ibb': NS_IBB}
NS_METHOD = {v: k for k, v in METHOD_NS.items()}

S5B_HOST_TIMEOUT = 15.0      # seconds per streamhost, as libpurple
IBB_FALLBACK_WINDOW = 30.0   # seconds to wait for IBB open after S5B failed
STREAM_START_TIMEOUT = 60.0  # seconds from accepting an offer to a stream
EOF_GRACE = 5.0              # seconds to wait for EOF once all bytes arrived

log = logging.getLogger('slix-receiver')


# --------------------------------------------------------------------------
# output

def emit(obj: Dict[str, Any]) -> None:
    """Write one JSON event line to stdout and flush it."""
    try:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + '\n')
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def hard_exit(code: int) -> None:
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(code)


# --------------------------------------------------------------------------
# helpers

class ChildMatcher(MatcherBase):
    """Matches a top-level stanza (by tag) that has a given direct child."""

    def __init__(self, stanza_tag: str, child_tag: str) -> None:
        super().__init__((stanza_tag, child_tag))
        self.stanza_tag = '{%s}%s' % (NS_CLIENT, stanza_tag)
        self.child_tag = child_tag

    def match(self, xml: Any) -> bool:
        x = xml.xml
        return x.tag == self.stanza_tag and x.find(self.child_tag) is not None


def safe_name(name: str) -> str:
    """Reduce an offered file name to a harmless single path component."""
    name = name.replace('\\', '/').split('/')[-1]
    name = ''.join(c for c in name if c.isprintable() and c not in '<>:"|?*')
    name = name.strip().lstrip('.').strip()
    if not name:
        name = 'file'
    while len(name.encode('utf-8')) > 200:
        base, ext = os.path.splitext(name)
        if len(ext) > 20 or not base:
            name = name[:-1]
        else:
            name = base[:-1] + ext
    return name


def claim_unique_path(out_dir: str, name: str) -> str:
    """Create (exclusively) and return a not yet existing path for name."""
    base, ext = os.path.splitext(name)
    n = 0
    while True:
        candidate = name if n == 0 else '%s-%d%s' % (base, n, ext)
        path = os.path.join(out_dir, candidate)
        try:
            with open(path, 'xb'):
                pass
            return path
        except FileExistsError:
            n += 1


def s5b_dst_addr(sid: str, initiator: str, target: str) -> str:
    return hashlib.sha1((sid + initiator + target).encode('utf-8')).hexdigest()


def parse_int(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


# --------------------------------------------------------------------------
# transfers

class Transfer:
    """One accepted SI file offer and its (single) data stream."""

    counter = 0

    def __init__(self, peer: str, sid: str, name: str, size: int,
                 offered: List[str], chosen: str, out_dir: str) -> None:
        Transfer.counter += 1
        self.peer = peer
        self.sid = sid
        self.name = name
        self.size = size
        self.offered = offered          # short method names / raw URIs
        self.chosen = chosen            # 's5b' or 'ibb'
        self.out_dir = out_dir
        # negotiated -> s5b-connecting -> streaming -> done
        #                              \-> ibb-fallback -> streaming -> done
        self.state = 'negotiated'
        self.method: Optional[str] = None
        self.bytes = 0
        self.sha = hashlib.sha256()
        self.part_path = os.path.join(
            out_dir, '.slix-%s-%d.part' % (
                hashlib.sha1((peer + '\0' + sid).encode('utf-8')).hexdigest()[:12],
                Transfer.counter))
        self.fh: Optional[Any] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.ibb_next_seq = 0
        self.ibb_block_size = 0
        self.streamhost: Optional[str] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    def open_file(self) -> None:
        if self.fh is None:
            self.fh = open(self.part_path, 'wb')

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


# --------------------------------------------------------------------------
# the client

class Receiver(slixmpp.ClientXMPP):

    def __init__(self, args: argparse.Namespace, exit_future: 'asyncio.Future[int]') -> None:
        super().__init__(args.jid, args.password)
        self.args = args
        self.exit_future = exit_future
        self.quitting = False
        self.online = False
        self.methods: List[str] = args.methods
        self.transfers: Dict[Tuple[str, str], Transfer] = {}
        self.raw_iq_ids: Dict[str, bool] = {}   # ids of IQs sent with the raw command

        self.register_plugin('xep_0030')
        self.register_plugin('xep_0115')
        self['feature_mechanisms'].unencrypted_plain = True

        disco = self['xep_0030']
        disco.add_identity(category='client', itype='pc', name='slix-receiver')
        if not args.no_si:
            for feature in (NS_SI, NS_FT, NS_S5B, NS_IBB):
                disco.add_feature(feature)

        self.add_event_handler('session_start', self.on_session_start)
        self.add_event_handler('disconnected', self.on_disconnected)
        self.add_event_handler('connection_failed', self.on_connection_failed)
        self.add_event_handler('failed_all_auth', self.on_failed_auth)
        self.add_event_handler('no_auth', self.on_failed_auth)
        self.add_event_handler('stream_error', self.on_stream_error)

        self.register_handler(Callback(
            'rx message', ChildMatcher('message', '{%s}body' % NS_CLIENT), self.on_message))
        self.register_handler(Callback(
            'rx message error', ChildMatcher('message', '{%s}error' % NS_CLIENT),
            self.on_message_error))
        self.register_handler(Callback(
            'rx presence', _TagMatcher('presence'), self.on_presence))
        self.register_handler(Callback(
            'rx iq reply', _IqReplyMatcher(), self.on_iq_reply))
        self.register_handler(Callback(
            'rx si', ChildMatcher('iq', '{%s}si' % NS_SI), self.on_si))
        self.register_handler(Callback(
            'rx s5b', ChildMatcher('iq', '{%s}query' % NS_S5B), self.on_s5b))
        self.register_handler(Callback(
            'rx ibb open', ChildMatcher('iq', '{%s}open' % NS_IBB), self.on_ibb_open))
        self.register_handler(Callback(
            'rx ibb data', ChildMatcher('iq', '{%s}data' % NS_IBB), self.on_ibb_data))
        self.register_handler(Callback(
            'rx ibb close', ChildMatcher('iq', '{%s}close' % NS_IBB), self.on_ibb_close))
        self.register_handler(Callback(
            'rx ibb message data', ChildMatcher('message', '{%s}data' % NS_IBB),
            self.on_ibb_message_data))

    # ---------------------------------------------------------------- session

    async def get_dns_records(self, domain: str, port: Optional[int] = None
                              ) -> List[Tuple[str, str, int]]:
        """Connect to --host/--port only: no DNS (slixmpp 1.8.3 otherwise
        queries A/AAAA for an empty name even when given an address)."""
        return [(self.args.host, self.args.host, self.args.port)]

    async def on_session_start(self, _event: Any) -> None:
        try:
            await self.get_roster(timeout=10)
        except Exception as exc:  # roster is a nicety, not a requirement
            log.warning('roster request failed: %r', exc)
        self.send_presence()
        self.online = True
        emit({'event': 'online', 'jid': self.boundjid.full})

    def on_disconnected(self, reason: Any) -> None:
        if self.quitting:
            finish(self.exit_future, self.pending_exit_code)
            return
        emit({'event': 'error', 'message': 'disconnected: %s' % (reason,)})
        finish(self.exit_future, 2)

    def on_connection_failed(self, exc: Any) -> None:
        if self.quitting:
            return
        emit({'event': 'error', 'message': 'connection failed: %s' % (exc,)})
        self.quitting = True
        finish(self.exit_future, 2)

    def on_failed_auth(self, _event: Any = None) -> None:
        emit({'event': 'error', 'message': 'authentication failed'})
        self.quitting = True
        self.pending_exit_code = 2
        self.disconnect(wait=1.0)
        asyncio.get_event_loop().call_later(2.0, finish, self.exit_future, 2)

    def on_stream_error(self, err: Any) -> None:
        if not self.quitting:
            emit({'event': 'error', 'message': 'stream error: %s' % (
                err['condition'] if err is not None else '?',)})
            self.quitting = True
            self.pending_exit_code = 2
            asyncio.get_event_loop().call_later(2.0, finish, self.exit_future, 2)

    pending_exit_code = 0

    def quit(self, code: int = 0) -> None:
        if self.quitting:
            return
        self.quitting = True
        self.pending_exit_code = code
        loop = asyncio.get_event_loop()
        loop.call_later(4.0, finish, self.exit_future, code)
        try:
            self.disconnect(wait=2.0)
        except Exception:
            finish(self.exit_future, code)

    # ---------------------------------------------------------------- commands

    def on_command_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError('not a JSON object')
        except ValueError as exc:
            emit({'event': 'warning', 'message': 'bad command line: %s' % exc})
            return
        name = cmd.get('cmd')
        try:
            if name == 'quit':
                self.quit(0)
            elif name == 'send':
                self.send_message(mto=cmd['to'], mbody=cmd.get('body', ''),
                                  mtype=cmd.get('type', 'chat'))
            elif name in ('subscribe', 'unsubscribe', 'subscribed', 'unsubscribed'):
                self.send_presence(pto=cmd['to'], ptype=name)
            elif name == 'presence':
                self.send_presence(pto=cmd.get('to'), ptype=cmd.get('type'),
                                   pshow=cmd.get('show'), pstatus=cmd.get('status'))
            elif name == 'raw':
                xml = cmd['xml']
                try:
                    el = ET.fromstring(xml)
                    if el.tag.rsplit('}', 1)[-1] == 'iq' and el.get('id'):
                        self.raw_iq_ids[el.get('id')] = True
                except ET.ParseError:
                    pass
                self.send_raw(xml)
            else:
                emit({'event': 'warning', 'message': 'unknown command: %r' % (name,)})
        except KeyError as exc:
            emit({'event': 'warning', 'message': 'command %r lacks %s' % (name, exc)})
        except Exception as exc:
            emit({'event': 'warning', 'message': 'command %r failed: %r' % (name, exc)})

    # ---------------------------------------------------------------- messages etc.

    def on_message(self, msg: Any) -> None:
        x = msg.xml
        mtype = x.get('type', 'normal')
        if mtype not in ('chat', 'normal'):
            return
        event: Dict[str, Any] = {
            'event': 'message',
            'from': x.get('from', ''),
            'type': mtype,
            'body': x.findtext('{%s}body' % NS_CLIENT, ''),
        }
        oob = x.find('{%s}x' % NS_OOB)
        if oob is not None:
            event['oob'] = (oob.findtext('{%s}url' % NS_OOB) or '').strip()
            desc = oob.findtext('{%s}desc' % NS_OOB)
            if desc is not None:
                event['oob_desc'] = desc
        emit(event)

    def on_message_error(self, msg: Any) -> None:
        x = msg.xml
        if x.get('type') != 'error':
            return
        err = x.find('{%s}error' % NS_CLIENT)
        emit({'event': 'message_error', 'from': x.get('from', ''),
              'condition': error_condition(x),
              'text': err.findtext('{%s}text' % NS_STANZAS) if err is not None else None})

    def on_presence(self, pres: Any) -> None:
        x = pres.xml
        emit({
            'event': 'presence',
            'from': x.get('from', ''),
            'type': x.get('type', 'available'),
            'show': x.findtext('{%s}show' % NS_CLIENT),
            'status': x.findtext('{%s}status' % NS_CLIENT),
        })
        if x.get('type') == 'subscribe':
            emit({'event': 'subscription_request', 'from': x.get('from', '')})

    def on_iq_reply(self, iq: Any) -> None:
        """Report the reply to an IQ that was sent with the raw command."""
        x = iq.xml
        if self.raw_iq_ids.pop(x.get('id') or '', None) is None:
            return
        event = {'event': 'iq', 'from': x.get('from', ''), 'type': x.get('type'),
                 'id': x.get('id'), 'xml': tostring(x)}
        if x.get('type') == 'error':
            event['condition'] = error_condition(x)
        emit(event)

    # ---------------------------------------------------------------- IQ replies

    def reply_result(self, iq: Any, payload: Optional[ET.Element] = None) -> None:
        reply = iq.reply(clear=True)
        if payload is not None:
            reply.xml.append(payload)
        reply.send()

    def reply_error(self, iq: Any, etype: str, condition: str,
                    text: Optional[str] = None, code: Optional[str] = None,
                    app: Optional[str] = None) -> None:
        reply = iq.reply(clear=True)
        reply['type'] = 'error'
        reply['error']['type'] = etype
        reply['error']['condition'] = condition
        if text is not None:
            reply['error']['text'] = text
        if code is not None:
            reply['error'].xml.set('code', code)
        if app is not None:
            reply['error'].xml.append(ET.Element(app))
        reply.send()

    # ---------------------------------------------------------------- SI offer

    def on_si(self, iq: Any) -> None:
        x = iq.xml
        itype = x.get('type')
        if itype in ('result', 'error'):
            return
        if itype != 'set':
            self.reply_error(iq, 'cancel', 'bad-request')
            return
        peer = x.get('from', '')
        si = x.find('{%s}si' % NS_SI)
        sid = si.get('id') or ''
        profile = si.get('profile') or ''
        file_el = si.find('{%s}file' % NS_FT)
        offered: List[str] = []
        for field in si.iter('{%s}field' % NS_XDATA):
            if field.get('var') == 'stream-method':
                values = [o.findtext('{%s}value' % NS_XDATA) for o in
                          field.findall('{%s}option' % NS_XDATA)]
                if not values:
                    values = [v.text for v in field.findall('{%s}value' % NS_XDATA)]
                offered = [NS_METHOD.get((v or '').strip(), (v or '').strip())
                           for v in values if v and v.strip()]
        name = file_el.get('name') if file_el is not None else None
        size = parse_int(file_el.get('size')) if file_el is not None else None
        event: Dict[str, Any] = {
            'event': 'offer', 'from': peer, 'sid': sid, 'name': name, 'size': size,
            'methods': offered,
            'hash': file_el.get('hash') if file_el is not None else None,
            'desc': file_el.findtext('{%s}desc' % NS_FT) if file_el is not None else None,
            'date': file_el.get('date') if file_el is not None else None,
            'mime': si.get('mime-type'),
            'profile': profile,
        }
        emit(event)

        def refuse(reason: str) -> None:
            emit({'event': 'failed', 'from': peer, 'sid': sid, 'name': name,
                  'reason': reason, 'bytes': 0})

        if self.args.no_si:
            self.reply_error(iq, 'cancel', 'service-unavailable', code='503')
            refuse('refused: client without SI (service-unavailable)')
            return
        if profile != NS_FT:
            self.reply_error(iq, 'modify', 'bad-request', code='400',
                             app='{%s}bad-profile' % NS_SI)
            refuse('bad profile %r' % profile)
            return
        if not sid or file_el is None or not name or size is None or size < 0:
            self.reply_error(iq, 'modify', 'bad-request', code='400')
            refuse('malformed offer (sid, file name and size are required)')
            return
        if self.args.decline:
            self.reply_error(iq, 'cancel', 'forbidden', text='Offer Declined', code='403')
            emit({'event': 'declined', 'from': peer, 'sid': sid, 'name': name, 'size': size})
            return
        key = (peer, sid)
        if key in self.transfers:
            self.reply_error(iq, 'cancel', 'conflict', code='409')
            emit({'event': 'warning', 'message': 'duplicate SI offer sid %s from %s' % (sid, peer)})
            return
        chosen = next((m for m in self.methods if m in offered), None)
        if chosen is None:
            self.reply_error(iq, 'cancel', 'bad-request', code='400',
                             app='{%s}no-valid-streams' % NS_SI)
            refuse('no acceptable stream method (offered %s, accepting %s)' % (
                offered, self.methods))
            return

        t = Transfer(peer, sid, name, size, offered, chosen, self.args.out)
        self.transfers[key] = t
        t.timer = asyncio.get_event_loop().call_later(
            STREAM_START_TIMEOUT, self.fail, t, 'no stream opened within %d s' % STREAM_START_TIMEOUT)

        si_el = ET.Element('{%s}si' % NS_SI)
        feature = ET.SubElement(si_el, '{%s}feature' % NS_FNEG)
        form = ET.SubElement(feature, '{%s}x' % NS_XDATA, {'type': 'submit'})
        field = ET.SubElement(form, '{%s}field' % NS_XDATA, {'var': 'stream-method'})
        value = ET.SubElement(field, '{%s}value' % NS_XDATA)
        value.text = METHOD_NS[chosen]
        self.reply_result(iq, si_el)

    # ---------------------------------------------------------------- completion

    def add_bytes(self, t: Transfer, data: bytes) -> bool:
        """Store a chunk; False (and the transfer failed) if it overflows."""
        if t.bytes + len(data) > t.size:
            self.fail(t, 'too many bytes: more than the offered %d (had %d, got %d more)' % (
                t.size, t.bytes, len(data)))
            return False
        if data:
            t.open_file()
            assert t.fh is not None
            t.fh.write(data)
            t.sha.update(data)
            t.bytes += len(data)
        limit = self.args.disconnect_after_bytes
        if limit is not None and t.bytes >= limit:
            emit({'event': 'vanishing', 'bytes': t.bytes, 'sid': t.sid})
            hard_exit(4)
        return True

    def _close(self, t: Transfer) -> None:
        t.cancel_timer()
        t.state = 'done'
        if t.fh is not None:
            t.fh.close()
            t.fh = None
        if t.writer is not None:
            try:
                t.writer.close()
            except Exception:
                pass
            t.writer = None
        self.transfers.pop((t.peer, t.sid), None)

    def succeed(self, t: Transfer, **extra: Any) -> None:
        if t.state == 'done':
            return
        t.open_file()   # zero-byte files still get created
        self._close(t)
        path = claim_unique_path(t.out_dir, safe_name(t.name))
        os.replace(t.part_path, path)
        event: Dict[str, Any] = {
            'event': 'received', 'from': t.peer, 'sid': t.sid, 'name': t.name,
            'size': t.size, 'bytes': t.bytes, 'sha256': t.sha.hexdigest(),
            'method': t.method, 'path': os.path.abspath(path),
        }
        event.update(extra)
        emit(event)

    def fail(self, t: Transfer, reason: str) -> None:
        if t.state == 'done':
            return
        self._close(t)
        try:
            os.unlink(t.part_path)
        except FileNotFoundError:
            pass
        emit({'event': 'failed', 'from': t.peer, 'sid': t.sid, 'name': t.name,
              'reason': reason, 'bytes': t.bytes, 'size': t.size, 'method': t.method})

    # ---------------------------------------------------------------- S5B

    def on_s5b(self, iq: Any) -> None:
        x = iq.xml
        if x.get('type') in ('result', 'error'):
            return
        if x.get('type') != 'set' or self.args.no_si:
            self.reply_error(iq, 'cancel', 'service-unavailable', code='503')
            return
        asyncio.ensure_future(self.s5b_session(iq))

    async def s5b_session(self, iq: Any) -> None:
        x = iq.xml
        peer = x.get('from', '')
        query = x.find('{%s}query' % NS_S5B)
        sid = query.get('sid') or ''
        mode = query.get('mode') or 'tcp'
        hosts = []
        for sh in query.findall('{%s}streamhost' % NS_S5B):
            hosts.append({'jid': sh.get('jid'), 'host': sh.get('host'),
                          'port': parse_int(sh.get('port'))})
        emit({'event': 'streamhosts', 'from': peer, 'sid': sid, 'mode': mode, 'hosts': hosts})

        t = self.transfers.get((peer, sid))
        if t is None or t.chosen != 's5b' or t.state != 'negotiated':
            self.reply_error(iq, 'cancel', 'not-acceptable', code='406')
            emit({'event': 'warning', 'message': 'bytestreams request for unknown or '
                  'unexpected sid %r from %s' % (sid, peer)})
            return
        if mode != 'tcp':
            self.reply_error(iq, 'cancel', 'not-acceptable', code='406')
            self.fail(t, 'bytestreams mode %r refused' % mode)
            return
        t.cancel_timer()
        t.state = 's5b-connecting'
        dst = s5b_dst_addr(sid, peer, self.boundjid.full)
        errors = []
        for h in hosts:
            if not h['jid'] or not h['host'] or not h['port']:
                errors.append('%s: incomplete streamhost' % (h,))
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    socks5_connect(h['host'], h['port'], dst), S5B_HOST_TIMEOUT)
            except Exception as exc:
                errors.append('%s:%s: %s' % (h['host'], h['port'], exc or type(exc).__name__))
                continue
            if t.state != 's5b-connecting':   # failed meanwhile (timer, shutdown)
                writer.close()
                return
            t.state = 'streaming'
            t.method = 's5b'
            t.streamhost = h['jid']
            t.writer = writer
            used = ET.Element('{%s}query' % NS_S5B, {'sid': sid})
            ET.SubElement(used, '{%s}streamhost-used' % NS_S5B, {'jid': h['jid']})
            self.reply_result(iq, used)
            await self.s5b_read(t, reader)
            return

        # No streamhost worked: libpurple answers item-not-found and waits
        # for an IBB open with the same sid (if IBB was offered).
        self.reply_error(iq, 'cancel', 'item-not-found', code='404')
        emit({'event': 's5b_failed', 'from': peer, 'sid': sid, 'errors': errors})
        if 'ibb' in t.offered and 'ibb' in self.methods:
            t.state = 'ibb-fallback'
            t.timer = asyncio.get_event_loop().call_later(
                IBB_FALLBACK_WINDOW, self.fail, t,
                'no streamhost reachable and no IBB open within %d s' % IBB_FALLBACK_WINDOW)
        else:
            self.fail(t, 'no streamhost reachable: %s' % '; '.join(errors))

    async def s5b_read(self, t: Transfer, reader: asyncio.StreamReader) -> None:
        try:
            while t.state == 'streaming':
                if t.bytes == t.size:
                    # All bytes are here: the initiator should now close.
                    try:
                        extra = await asyncio.wait_for(reader.read(65536), EOF_GRACE)
                    except asyncio.TimeoutError:
                        self.succeed(t, streamhost=t.streamhost, eof=False)
                        return
                    if not extra:
                        self.succeed(t, streamhost=t.streamhost, eof=True)
                        return
                    self.add_bytes(t, extra)   # fails the transfer
                    return
                data = await reader.read(65536)
                if not data:
                    self.fail(t, 'stream closed early: %d of %d bytes' % (t.bytes, t.size))
                    return
                if not self.add_bytes(t, data):
                    return
        except (ConnectionError, OSError) as exc:
            self.fail(t, 'S5B connection error after %d bytes: %s' % (t.bytes, exc))

    # ---------------------------------------------------------------- IBB

    def find_ibb(self, peer: str, sid: str) -> Optional[Transfer]:
        t = self.transfers.get((peer, sid))
        if t is not None and t.state == 'streaming' and t.method == 'ibb':
            return t
        return None

    def on_ibb_open(self, iq: Any) -> None:
        x = iq.xml
        if x.get('type') in ('result', 'error'):
            return
        if x.get('type') != 'set' or self.args.no_si:
            self.reply_error(iq, 'cancel', 'service-unavailable', code='503')
            return
        peer = x.get('from', '')
        op = x.find('{%s}open' % NS_IBB)
        sid = op.get('sid') or ''
        block_size = parse_int(op.get('block-size'))
        stanza = op.get('stanza') or 'iq'
        t = self.transfers.get((peer, sid))
        ok_state = t is not None and (
            (t.chosen == 'ibb' and t.state == 'negotiated') or t.state == 'ibb-fallback')
        if t is None or not ok_state:
            self.reply_error(iq, 'cancel', 'not-acceptable', code='406')
            emit({'event': 'warning', 'message': 'IBB open for unknown or unexpected sid %r '
                  'from %s' % (sid, peer)})
            return
        assert t is not None
        if block_size is None or block_size <= 0:
            self.reply_error(iq, 'modify', 'bad-request', code='400')
            self.fail(t, 'IBB open without a valid block-size')
            return
        if stanza != 'iq':
            self.reply_error(iq, 'cancel', 'not-acceptable', code='406')
            self.fail(t, 'IBB stanza=%r refused (only iq)' % stanza)
            return
        t.cancel_timer()
        t.state = 'streaming'
        t.method = 'ibb'
        t.ibb_block_size = block_size
        t.ibb_next_seq = 0
        self.reply_result(iq)

    def on_ibb_data(self, iq: Any) -> None:
        x = iq.xml
        if x.get('type') in ('result', 'error'):
            return
        if x.get('type') != 'set' or self.args.no_si:
            self.reply_error(iq, 'cancel', 'service-unavailable', code='503')
            return
        peer = x.get('from', '')
        d = x.find('{%s}data' % NS_IBB)
        sid = d.get('sid') or ''
        t = self.find_ibb(peer, sid)
        if t is None:
            self.reply_error(iq, 'cancel', 'item-not-found', code='404')
            return
        seq = parse_int(d.get('seq'))
        if seq != t.ibb_next_seq:
            self.reply_error(iq, 'cancel', 'unexpected-request', code='400')
            self.fail(t, 'IBB seq %s, expected %d' % (d.get('seq'), t.ibb_next_seq))
            return
        try:
            data = base64.b64decode(''.join((d.text or '').split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            self.reply_error(iq, 'cancel', 'unexpected-request', code='400')
            self.fail(t, 'IBB seq %d: bad base64: %s' % (seq, exc))
            return
        if len(data) > t.ibb_block_size:
            emit({'event': 'warning', 'message': 'IBB block of %d bytes exceeds block-size %d' % (
                len(data), t.ibb_block_size)})
        if t.bytes + len(data) > t.size:
            self.reply_error(iq, 'cancel', 'not-acceptable', code='406')
            self.add_bytes(t, data)   # fails the transfer
            return
        t.ibb_next_seq = (t.ibb_next_seq + 1) & 0xFFFF
        self.add_bytes(t, data)
        self.reply_result(iq)

    def on_ibb_close(self, iq: Any) -> None:
        x = iq.xml
        if x.get('type') in ('result', 'error'):
            return
        if x.get('type') != 'set' or self.args.no_si:
            self.reply_error(iq, 'cancel', 'service-unavailable', code='503')
            return
        peer = x.get('from', '')
        sid = x.find('{%s}close' % NS_IBB).get('sid') or ''
        t = self.find_ibb(peer, sid)
        if t is None:
            self.reply_error(iq, 'cancel', 'item-not-found', code='404')
            return
        self.reply_result(iq)
        if t.bytes == t.size:
            self.succeed(t, block_size=t.ibb_block_size)
        else:
            self.fail(t, 'IBB closed early: %d of %d bytes' % (t.bytes, t.size))

    def on_ibb_message_data(self, msg: Any) -> None:
        emit({'event': 'warning', 'message': 'ignored message-carried IBB data from %s' % (
            msg.xml.get('from'),)})


class _TagMatcher(MatcherBase):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = '{%s}%s' % (NS_CLIENT, tag)

    def match(self, xml: Any) -> bool:
        return xml.xml.tag == self.tag


class _IqReplyMatcher(MatcherBase):
    def __init__(self) -> None:
        super().__init__('iq-reply')

    def match(self, xml: Any) -> bool:
        x = xml.xml
        return x.tag == '{%s}iq' % NS_CLIENT and x.get('type') in ('result', 'error')


def error_condition(stanza_xml: ET.Element) -> Optional[str]:
    err = stanza_xml.find('{%s}error' % NS_CLIENT)
    if err is None:
        return None
    for child in err:
        if child.tag.startswith('{%s}' % NS_STANZAS) and not child.tag.endswith('}text'):
            return child.tag.split('}', 1)[1]
    return None


# --------------------------------------------------------------------------
# SOCKS5 (RFC 1928, no authentication, CONNECT to a domain name, port 0)

async def socks5_connect(host: str, port: int, dst: str
                         ) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b'\x05\x01\x00')
        await writer.drain()
        greeting = await reader.readexactly(2)
        if greeting != b'\x05\x00':
            raise ConnectionError('SOCKS5 greeting refused: %s' % greeting.hex())
        addr = dst.encode('ascii')
        writer.write(b'\x05\x01\x00\x03' + bytes([len(addr)]) + addr + b'\x00\x00')
        await writer.drain()
        head = await reader.readexactly(4)
        if head[0] != 5 or head[1] != 0:
            raise ConnectionError('SOCKS5 CONNECT failed: reply %s' % head.hex())
        atyp = head[3]
        if atyp == 1:
            await reader.readexactly(4 + 2)
        elif atyp == 3:
            n = (await reader.readexactly(1))[0]
            await reader.readexactly(n + 2)
        elif atyp == 4:
            await reader.readexactly(16 + 2)
        else:
            raise ConnectionError('SOCKS5 reply with unknown ATYP %d' % atyp)
        return reader, writer
    except BaseException:
        writer.close()
        raise


# --------------------------------------------------------------------------
# main

def finish(fut: 'asyncio.Future[int]', code: int) -> None:
    if not fut.done():
        fut.set_result(code)


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> 'NoReturn':  # type: ignore[override]
        self.print_usage(sys.stderr)
        emit({'event': 'error', 'message': 'bad command line: %s' % message})
        hard_exit(2)


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = _ArgParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--jid', required=True)
    p.add_argument('--password', required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=5222)
    p.add_argument('--out', required=True, help='directory for received files')
    p.add_argument('--timeout', type=float, default=120.0,
                   help='hard cap in seconds, then exit 3 (default 120)')
    p.add_argument('--decline', action='store_true', help='decline every SI offer')
    p.add_argument('--disconnect-after-bytes', type=int, default=None, metavar='N',
                   help='exit(4) abruptly once N bytes of a transfer arrived')
    p.add_argument('--methods', default='s5b,ibb',
                   help='accepted stream methods in order of preference (default s5b,ibb)')
    p.add_argument('--no-si', action='store_true',
                   help='behave as a client without SI file transfer')
    p.add_argument('--debug', action='store_true', help='slixmpp debug log on stderr')
    args = p.parse_args(argv)
    methods = [m.strip().lower() for m in args.methods.split(',') if m.strip()]
    for m in methods:
        if m not in METHOD_NS:
            p.error('unknown method %r in --methods (known: s5b, ibb)' % m)
    args.methods = methods
    return args


def main(argv: List[str]) -> int:
    try:
        sys.stdout.reconfigure(encoding='utf-8')  # type: ignore[attr-defined]
    except Exception:
        pass
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        emit({'event': 'error', 'message': 'cannot create --out directory: %s' % exc})
        return 2

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    exit_future: 'asyncio.Future[int]' = loop.create_future()
    xmpp = Receiver(args, exit_future)

    def on_timeout() -> None:
        emit({'event': 'timeout', 'seconds': args.timeout})
        if xmpp.quitting:
            finish(exit_future, 3)
        xmpp.quit(3)
        loop.call_later(3.0, finish, exit_future, 3)

    loop.call_later(args.timeout, on_timeout)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, xmpp.quit, 0)

    def read_stdin() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(xmpp.on_command_line, line)
        except Exception as exc:
            log.error('stdin reader: %r', exc)
        loop.call_soon_threadsafe(xmpp.quit, 0)

    threading.Thread(target=read_stdin, name='stdin', daemon=True).start()

    xmpp.connect((args.host, args.port), use_ssl=False, force_starttls=False,
                 disable_starttls=True)
    code = loop.run_until_complete(exit_future)
    return code


if __name__ == '__main__':
    hard_exit(main(sys.argv[1:]))
