#!/usr/bin/env python3
"""A lab-traffic generator written apart from `portent simulate`, to check that the
analytics do not depend on one generator's habits (stdlib only).

A small office LAN (192.168.1.0/24, resolver .1) for a few hours: people browsing
(DNS, then HTTPS sessions of random sizes at exponential think times), NTP every
1024 s, an update agent hourly, MQTT keepalives of 2 bytes every minute; and four
planted behaviours, written to OUT.truth.json as (host, analytic):

  .50  HTTPS beacon, 45 s sleep shortened by up to 30 %, 220-260-byte check-ins,
       three rotating CDN addresses re-resolved every 5 min    -> periodic_transfer
  .51  25 chunks (24 x 512000 B + a smaller last one) on new TCP connections at
       irregular gaps (5-60 s)                                 -> fixed_size_transfer
  .52  resolves a name, then connects to port o3*256+o4 or o1*o2+o3 of the answer
                                                               -> dns_calculated_port
  .53  one long UDP flow, 1200 B every 120 s +- 10 %           -> periodic_transfer,
                                                                  fixed_size_transfer

Packets are captured with a 128-byte snap length (payloads are zeros anyway); the IP
lengths carry the sizes.

usage: lab_traffic.py OUT [SEED] [HOURS] [HOSTS]
"""
import struct, random, sys, json

rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
OUT = sys.argv[1]
T0 = 1_767_000_000.0
DUR = (float(sys.argv[3]) if len(sys.argv) > 3 else 4.0) * 3600.0
NHOSTS = int(sys.argv[4]) if len(sys.argv) > 4 else 20
SNAP = 128
pkts = []  # (ts, bytes)

def mac(i): return bytes([0x02, 0, 0, 0, (i >> 8) & 255, i & 255])
GW = mac(1)
def ip4(s): return bytes(int(x) for x in s.split('.'))
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
ipid = [0]
def ipv4(src, dst, proto, payload):
    ipid[0] = (ipid[0] + 1) & 0xffff
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), ipid[0], 0x4000, 64, proto, 0, ip4(src), ip4(dst))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload
def eth(smac, dmac, payload): return dmac + smac + b'\x08\x00' + payload
def hostmac(ip): return mac(int(ip.split('.')[-1]) + 10)
def emit(ts, src, dst, proto, l4):
    internal_src = src.startswith('192.168.')
    sm, dm = (hostmac(src), GW) if internal_src else (GW, hostmac(dst))
    pkts.append((ts, eth(sm, dm, ipv4(src, dst, proto, l4))))
def udp(ts, src, sport, dst, dport, data):
    emit(ts, src, dst, 17, struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data)
def tcpseg(ts, src, sport, dst, dport, seq, ack, flags, data=b''):
    emit(ts, src, dst, 6, struct.pack('!HHIIBBHHH', sport, dport, seq & 0xffffffff, ack & 0xffffffff, 0x50, flags, 64240, 0, 0) + data)
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
def tcp_session(ts, c, cport, s, sport, exchanges, rtt=0.03):
    """exchanges: list of (client_bytes, server_bytes, think_s)."""
    ci, si = rnd.getrandbits(32), rnd.getrandbits(32)
    tcpseg(ts, c, cport, s, sport, ci, 0, SYN); ts += rtt
    tcpseg(ts, s, sport, c, cport, si, ci + 1, SYN | ACK); ts += 0.0005
    tcpseg(ts, c, cport, s, sport, ci + 1, si + 1, ACK)
    cs, ss = ci + 1, si + 1
    for cb, sb, think in exchanges:
        ts += think
        for off in range(0, cb, 1448):
            n = min(1448, cb - off)
            tcpseg(ts, c, cport, s, sport, cs, ss, ACK | PSH, bytes(n)); cs += n; ts += 0.0002
        if cb: ts += rtt
        if cb and not sb:
            tcpseg(ts, s, sport, c, cport, ss, cs, ACK)
        for off in range(0, sb, 1448):
            n = min(1448, sb - off)
            tcpseg(ts, s, sport, c, cport, ss, cs, ACK | PSH, bytes(n)); ss += n; ts += 0.0002
            if (off // 1448) % 2 == 1:
                tcpseg(ts, c, cport, s, sport, cs, ss, ACK)
        if sb:
            tcpseg(ts + 0.0001, c, cport, s, sport, cs, ss, ACK)
    ts += 0.05
    tcpseg(ts, c, cport, s, sport, cs, ss, FIN | ACK); ts += rtt
    tcpseg(ts, s, sport, c, cport, ss, cs + 1, FIN | ACK); ts += 0.0005
    tcpseg(ts, c, cport, s, sport, cs + 1, ss + 1, ACK)
    return ts

def dns_name(n):
    return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.')) + b'\0'
RESOLVER = '192.168.1.1'
def dns(ts, client, name, addrs, ttl=300):
    qid = rnd.getrandbits(16); sport = rnd.randint(20000, 60000)
    q = struct.pack('!HHHHHH', qid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack('!HH', 1, 1)
    udp(ts, client, sport, RESOLVER, 53, q)
    ans = b''.join(b'\xc0\x0c' + struct.pack('!HHIH', 1, 1, ttl, 4) + ip4(a) for a in addrs)
    r = struct.pack('!HHHHHH', qid, 0x8180, 1, len(addrs), 0, 0) + dns_name(name) + struct.pack('!HH', 1, 1) + ans
    udp(ts + 0.012, RESOLVER, 53, client, sport, r)
    return ts + 0.013

def pub():
    while True:
        a = [rnd.randint(1, 223), rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254)]
        if a[0] not in (10, 127, 100, 169, 172, 192, 198, 203): return '.'.join(map(str, a))
def eport(): return rnd.randint(32768, 60999)

truth = []
hosts = ['192.168.1.%d' % i for i in range(20, 20 + NHOSTS)]
# --- background: browsing
sites = {('site%d.example-%s.com' % (i, rnd.choice(['shop', 'news', 'docs', 'cdn']))): [pub() for _ in range(rnd.randint(1, 3))] for i in range(150)}
names = list(sites)
for h in hosts:
    t = T0 + rnd.uniform(0, 600)
    while t < T0 + DUR:
        # a browsing burst: a few pages
        for _ in range(rnd.randint(1, 6)):
            n = rnd.choice(names); t = dns(t, h, n, sites[n], ttl=rnd.choice([60, 300, 3600]))
            for _ in range(rnd.randint(1, 4)):
                ex = [(rnd.randint(300, 1800), rnd.randint(2000, 120000), rnd.uniform(0.01, 0.3)) for _ in range(rnd.randint(1, 5))]
                tcp_session(t, h, eport(), rnd.choice(sites[n]), 443, ex)
                t += rnd.uniform(0.05, 2)
            t += rnd.expovariate(1 / 20)
        t += rnd.expovariate(1 / 600)
# --- benign traps: NTP every 1024 s, update agent hourly, MQTT keepalives
ntp = pub()
for h in hosts[: max(1, NHOSTS // 2)]:
    t = T0 + rnd.uniform(0, 1024)
    while t < T0 + DUR:
        udp(t, h, 123, ntp, 123, bytes(48)); udp(t + 0.02, ntp, 123, h, 123, bytes(48)); t += 1024 * rnd.uniform(0.99, 1.01)
upd = [pub(), pub()]
for h in hosts[: max(1, NHOSTS * 2 // 5)]:
    t = T0 + rnd.uniform(0, 3600)
    while t < T0 + DUR:
        t2 = dns(t, h, 'update.googleapis.com', upd)
        tcp_session(t2, h, eport(), rnd.choice(upd), 443, [(rnd.randint(500, 900), rnd.randint(300, 4000), 0.01)])
        t += 3600 * rnd.uniform(0.95, 1.05)
broker = pub()
for h in hosts[NHOSTS // 2 : NHOSTS // 2 + max(1, NHOSTS // 5)]:
    t = T0 + rnd.uniform(0, 60); cport = eport()
    tcp_session(t, h, cport, broker, 8883, [(2, 2, 60 * rnd.uniform(0.98, 1.02)) for _ in range(int(DUR / 61))])

# --- A: HTTPS beacon, 45 s shortened jitter (up to 30 %), rotating CDN addresses, DNS every 5 min
bh = '192.168.1.50'; bips = [pub(), pub(), pub()]; t = T0 + 300; last_dns = -1e9
while t < T0 + DUR - 60:
    if t - last_dns > 300:
        t = dns(t, bh, 'assets.cdn-edgecache.com', bips, ttl=300); last_dns = t
    tcp_session(t, bh, eport(), rnd.choice(bips), 443, [(rnd.randint(220, 260), rnd.randint(50, 80), 0.001)])
    t += 45 * (1 - 0.3 * rnd.random())
truth.append({'host': bh, 'analytic': 'periodic_transfer', 'what': 'https beacon 45s'})
# --- B: fixed-size exfil, 25 chunks of 512000 B over new TCP connections, irregular spacing
xh = '192.168.1.51'; xd = pub(); t = T0 + 3600
for i in range(25):
    size = 512000 if i < 24 else 123456
    t = tcp_session(t, xh, eport(), xd, 8443, [(size, 0, 0.001)]) + rnd.uniform(5, 60)
truth.append({'host': xh, 'analytic': 'fixed_size_transfer', 'what': 'exfil 25 x 512000'})
# --- C: DNS calculation: port = o3*256 + o4 and APT12 o1*o2+o3
ch = '192.168.1.52'; t = T0 + 1800
for i in range(4):
    port = 0
    while port < 1024:  # a well-known port would be a standard service, not a calculation
        a = pub(); o = list(map(int, a.split('.')))
        port = (o[2] * 256 + o[3]) % 65536 if i % 2 == 0 else (o[0] * o[1] + o[2]) % 65536
    t = dns(t, ch, 'ns%d.weather-svc.net' % i, [a], ttl=60)
    tcp_session(t + rnd.uniform(0.5, 5), ch, eport(), a, port, [(rnd.randint(100, 400), rnd.randint(100, 400), 0.01)])
    t += rnd.uniform(900, 2400)
truth.append({'host': ch, 'analytic': 'dns_calculated_port', 'what': 'o3*256+o4 / o1*o2+o3'})
# --- D: UDP periodic fixed-size exfil on one long flow: 1200 B every 120 s +-10 %
uh = '192.168.1.53'; ud = pub(); sp = eport(); t = T0 + 600
while t < T0 + DUR:
    udp(t, uh, sp, ud, 5000, bytes(1200)); t += 120 * rnd.uniform(0.9, 1.1)
truth.append({'host': uh, 'analytic': 'periodic_transfer', 'what': 'udp 120s'})
truth.append({'host': uh, 'analytic': 'fixed_size_transfer', 'what': 'udp 1200B'})

pkts.sort(key=lambda p: p[0])
with open(OUT, 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, SNAP, 1))
    for ts, b in pkts:
        sec = int(ts); us = int(round((ts - sec) * 1e6))
        if us >= 1000000: sec += 1; us -= 1000000
        cap = b[:SNAP]
        f.write(struct.pack('<IIII', sec, us, len(cap), len(b)) + cap)
json.dump(truth, open(OUT + '.truth.json', 'w'), indent=1)
print(len(pkts), 'packets')
