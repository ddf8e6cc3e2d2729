#!/usr/bin/env python3
"""A resource list (RFC 4826) of N entries for the benchmarks: sip:user0@example.com ... in one
list named "friends"; --display-names gives each entry a display name.

    scripts/resource-list.py N [--display-names] > list.xml
"""
import sys

n = int(sys.argv[1])
names = "--display-names" in sys.argv[2:]
print('<?xml version="1.0" encoding="UTF-8"?>')
print('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">')
print('  <list name="friends">')
for i in range(n):
    if names:
        print(f'    <entry uri="sip:user{i}@example.com"><display-name>User {i}</display-name></entry>')
    else:
        print(f'    <entry uri="sip:user{i}@example.com"/>')
print('  </list>')
print('</resource-lists>')
