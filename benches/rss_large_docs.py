#!/usr/bin/env python3
"""RSS of a running xcapd while writing, then reading back, distinct 1-4 MB documents
(issue #11 item 4). Loopback only, bounded by the byte count given.

usage: rss_large_docs.py PID PORT MEGABYTES
"""
import http.client
import random
import sys
import time

pid, port, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) * 1024 * 1024


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def document(n, size):
    entry = len('<entry uri="sip:000000-0000000@example.com"/>')
    entries = "".join(f'<entry uri="sip:{n:06d}-{j:07d}@example.com"/>' for j in range(size // entry))
    return ('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l">'
            + entries + "</list></resource-lists>").encode()


random.seed(7)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
written = n = 0
print(f"fresh: RSS {rss_mb()} MB")
started = time.time()
while written < total:
    body = document(n, random.randint(1, 4) * 1024 * 1024 - 200_000)
    c.request("PUT", f"/xcap-root/resource-lists/users/sip:m{n}@example.com/index", body,
              {"Content-Type": "application/resource-lists+xml"})
    r = c.getresponse()
    r.read()
    if r.status not in (200, 201):
        sys.exit(f"PUT {n}: {r.status}")
    written += len(body)
    n += 1
print(f"wrote {n} documents, {written / 1e6:.0f} MB in {time.time() - started:.0f} s: RSS {rss_mb()} MB")
time.sleep(5)
print(f"idle 5 s: RSS {rss_mb()} MB")
read = 0
for i in range(n):
    c.request("GET", f"/xcap-root/resource-lists/users/sip:m{i}@example.com/index")
    read += len(c.getresponse().read())
print(f"read back {read / 1e6:.0f} MB: RSS {rss_mb()} MB")
time.sleep(5)
print(f"idle 5 s: RSS {rss_mb()} MB")
