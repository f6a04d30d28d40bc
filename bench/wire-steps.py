#!/usr/bin/env python3
"""One small request step by step, as the wire saw it: bench item 7 (libpurple
receiver, component against the slixmpp bot) captured on loopback.

    tcpdump -i lo -s 400 -U -w /tmp/cap.pcap tcp &     # apt-get install tcpdump
    XR_BENCH_PURPLE_CASES=1 XR_BENCH_PURPLE_RUNS=15 node dist/bench/run.js --only=7
    kill %1; python3 bench/wire-steps.py /tmp/cap.pcap

For every project id the intranet was asked for, the packet times of each step
after the request message reached the sender's own socket (ejabberd's copy to
the component or the bot), in ms; medians per sender. The component is told
apart by the domain the request was sent to (reports.example.com; the bot has its own).
The first request of the run (the component's cold start) is left out.
"""
import re
import statistics
import subprocess
import sys

STEPS = ['GET on the wire', "intranet's first answer bytes", 'SI offer out', 'offer reaches libpurple',
         "libpurple's accept", 'streamhost offer out', "libpurple's SOCKS5 greeting", 'streamhost-used',
         'first data byte to libpurple', 'last data byte to libpurple']


def packets(path):
    out = subprocess.run(['tcpdump', '-r', path, '-tt', '-nn', '-A', '-s', '400'],
                         capture_output=True, text=True, errors='replace', check=True).stdout
    head = re.compile(r'^(\d+\.\d+) IP6? \S+?\.(\d+) > \S+?\.(\d+): .*length (\d+)')
    pk = []
    for line in out.split('\n'):
        m = head.match(line)
        if m:
            pk.append([float(m[1]), int(m[2]), int(m[3]), '', int(m[4])])
        elif pk:
            pk[-1][3] += line
    return out, pk


def steps_of(pid, pk):
    """Times of the steps of one request, relative to its arrival at the sender."""
    t0 = None
    ev = {}
    shport = None
    for t, s, d, p, n in pk:
        q = p.replace('"', "'")
        if t0 is None:
            # ejabberd's copy carries from= (libpurple's own stanza has none)
            if pid in q and '<message' in q and "from='purple" in q and '<body>' in q:
                t0, ev['in'] = t, (s, d)
            continue
        if 'last' in ev and '<body>report' in p:
            break  # the next request
        if shport is not None and n > 0 and (s == shport or d == shport):
            if d == shport and n == 3 and 'conn' not in ev:
                ev['conn'] = t
            elif s == shport and n > 1000:
                ev.setdefault('data', t)
                ev['last'] = t
            continue
        if 'get' not in ev and f'GET /projects/{pid}/' in q:
            ev['get'], ev['http'] = t, (s, d)
        elif 'http' in ev and 'resp' not in ev and (d, s) == ev['http'] and 'HTTP/1.1 ' in q:
            ev['resp'] = t
        elif pid in q and 'protocol/si' in q and "type='set'" in q:
            if 'offer' not in ev:
                ev['offer'], ev['offer_ports'] = t, (s, d)
            elif 'at_purple' not in ev and (s, d) != ev['offer_ports']:
                ev['at_purple'] = t
        elif pid in q and 'protocol/si' in q and "type='result'" in q and 'accept' not in ev:
            ev['accept'] = t
        elif pid in q and 'streamhost-used' in q and 'used' not in ev:
            ev['used'] = t
        elif pid in q and '<streamhost ' in q and 'sh' not in ev:
            ev['sh'] = t
            shport = int(re.search(r"port='(\d+)'", q)[1])
    keys = ['get', 'resp', 'offer', 'at_purple', 'accept', 'sh', 'conn', 'used', 'data', 'last']
    if t0 is None or any(k not in ev for k in keys):
        return None
    return [(ev[k] - t0) * 1000 for k in keys]


def main():
    text, pk = packets(sys.argv[1])
    ids = sorted(set(re.findall(r'GET /projects/(\d+)/', text)), key=int)
    ours = set(re.findall(r"to=.(\d+)@reports\.example\.com", text))
    rows = {'component': [], 'bot': []}
    for pid in ids[1:]:
        r = steps_of(pid, pk)
        if r is not None:
            rows['component' if pid in ours else 'bot'].append(r)
    n = {k: len(v) for k, v in rows.items()}
    print(f"ms after the request reached the sender (medians; component {n['component']}, bot {n['bot']} requests)")
    print(f"{'step':32} {'component':>10} {'bot':>10}")
    for i, name in enumerate(STEPS):
        med = [statistics.median(r[i] for r in rows[k]) if rows[k] else float('nan') for k in ('component', 'bot')]
        print(f'{name:32} {med[0]:10.2f} {med[1]:10.2f}')


if __name__ == '__main__':
    main()
