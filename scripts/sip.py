#!/usr/bin/env python3
"""A minimal SIP user agent for trying xcapd's IM Server by hand (README walkthrough):
REGISTER an address of record, or send a pager-mode MESSAGE, over UDP, and print the answer.
Development mode (auth = "none"): the From URI is the user; no Digest.

    scripts/sip.py receive sip:bob@example.com [--port 5072]   (registers, answers MESSAGEs
                                                                  with 200 and prints them)
    scripts/sip.py register sip:bob@example.com sip:bob@127.0.0.1:5072 [--expires 600]
    scripts/sip.py message sip:alice@example.com sip:bob@example.com "hello Bob"
    (all take --server 127.0.0.1:5060)
"""
import argparse
import random
import socket
import sys


def request(server: str, build) -> int:
    host, port = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(20)
    local = "%s:%d" % sock.getsockname()
    tag = "%016x" % random.getrandbits(64)
    sock.sendto(build(local, tag).encode(), (host, int(port)))
    while True:
        try:
            answer, _ = sock.recvfrom(65535)
        except socket.timeout:
            print("no answer from", server, file=sys.stderr)
            return 1
        text = answer.decode(errors="replace")
        if text.startswith("SIP/2.0 1"):
            continue  # provisional
        print(text.split("\r\n")[0])
        return 0 if text.startswith("SIP/2.0 2") else 1


def register_text(aor: str, contact: str, expires: int, local: str, tag: str) -> str:
    domain = aor.split("@", 1)[-1]
    return (
        f"REGISTER sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{tag};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\n"
        f"Call-ID: {tag}@{local}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <{contact}>\r\nExpires: {expires}\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def receive(server: str, aor: str, port: int) -> int:
    """Registers sip:user@127.0.0.1:port for `aor` and answers every MESSAGE with 200."""
    host, sport = server.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    local = "%s:%d" % sock.getsockname()
    user = aor.split(":", 1)[-1].split("@", 1)[0]
    tag = "%016x" % random.getrandbits(64)
    sock.sendto(register_text(aor, f"sip:{user}@{local}", 600, local, tag).encode(), (host, int(sport)))
    print(f"registering {aor} at {local}; Ctrl-C ends", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        text = data.decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        if lines[0].startswith("SIP/2.0"):
            print("registrar:", lines[0], flush=True)
            continue
        if not lines[0].startswith("MESSAGE "):
            continue
        keep = [l for l in lines[1:] if l.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
        answer = ["SIP/2.0 200 OK"]
        for l in keep:
            if l.lower().startswith("to:") and ";tag=" not in l:
                l += ";tag=" + tag
            answer.append(l)
        answer.append("Content-Length: 0")
        sock.sendto(("\r\n".join(answer) + "\r\n\r\n").encode(), peer)
        sender = next((l for l in lines if l.lower().startswith("p-asserted-identity:")), "")
        print(f"MESSAGE {sender.split(':', 1)[-1].strip()}: {body}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1:5060", help="xcapd's SIP address")
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("receive", help="register and print incoming MESSAGEs")
    rec.add_argument("aor")
    rec.add_argument("--port", type=int, default=5072)
    reg = sub.add_parser("register", help="bind a contact to an address of record")
    reg.add_argument("aor")
    reg.add_argument("contact")
    reg.add_argument("--expires", type=int, default=600, help="seconds (0 removes it)")
    msg = sub.add_parser("message", help="send a text/plain MESSAGE")
    msg.add_argument("sender")
    msg.add_argument("recipient")
    msg.add_argument("text")
    args = ap.parse_args()

    if args.command == "receive":
        try:
            return receive(args.server, args.aor, args.port)
        except KeyboardInterrupt:
            return 0
    if args.command == "register":

        def build(local, tag):
            return register_text(args.aor, args.contact, args.expires, local, tag)
    else:
        body = args.text.encode()

        def build(local, tag):
            return (
                f"MESSAGE {args.recipient} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{tag};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <{args.sender}>;tag={tag}\r\n"
                f"To: <{args.recipient}>\r\nCall-ID: {tag}@{local}\r\nCSeq: 1 MESSAGE\r\n"
                "Content-Type: text/plain;charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{args.text}"
            )
    return request(args.server, build)


if __name__ == "__main__":
    sys.exit(main())
