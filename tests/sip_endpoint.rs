//! The SIP endpoint over real UDP and TCP sockets on port 0 (RFC 3261 §8.2, §17.2, §18;
//! RFC 3581; RFC 5626 §4.4.1; RFC 6665 §4.2.1): what a SIP user agent or core sees today.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn request(method: &str, branch: &str, extra: &str, local: SocketAddr) -> String {
    format!(
        "{method} sip:xcapd@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:xcapd@127.0.0.1>\r\n\
         Call-ID: call-{branch}@127.0.0.1\r\n\
         CSeq: 7 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

struct Udp {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Udp {
    async fn new(server: SocketAddr) -> Udp {
        Udp {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn send(&self, text: &str) {
        self.socket
            .send_to(text.as_bytes(), self.server)
            .await
            .unwrap();
    }

    async fn recv(&self) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(2), self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    async fn ask(&self, text: &str) -> String {
        self.send(text).await;
        self.recv().await.expect("a response")
    }
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// RFC 3261 §11, §8.2.6: OPTIONS is answered 200 with what we accept; the response echoes
// From, Call-ID and CSeq, tags To, and marks the top Via with received and rport (RFC 3581).
#[tokio::test]
async fn options_over_udp_and_retransmission() {
    let s = TestServer::start().await;
    let udp = Udp::new(s.running().sip_addr.expect("SIP listening")).await;
    let req = request("OPTIONS", "opt1", "", udp.local());
    let resp = udp.ask(&req).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let via = header(&resp, "Via").unwrap();
    assert!(
        via.contains(&format!("rport={}", udp.local().port())),
        "{via}"
    );
    assert!(via.contains("branch=z9hG4bKopt1"), "{via}");
    assert_eq!(
        header(&resp, "From"),
        Some("\"Alice\" <sip:alice@example.com>;tag=a1")
    );
    assert_eq!(header(&resp, "Call-ID"), Some("call-opt1@127.0.0.1"));
    assert_eq!(header(&resp, "CSeq"), Some("7 OPTIONS"));
    let to = header(&resp, "To").unwrap();
    assert!(to.contains(";tag="), "{to}");
    assert!(header(&resp, "Allow").unwrap().contains("SUBSCRIBE"));
    assert!(header(&resp, "Server").unwrap().starts_with("xcapd/"));
    // §17.2.2: the retransmitted request gets the same response again.
    let again = udp.ask(&req).await;
    assert_eq!(again, resp);
    s.stop().await;
}

// RFC 6665 §4.2.1 (XE-01): an event package we do not serve is 489; SUBSCRIBE needs Event.
#[tokio::test]
async fn subscribe_answers() {
    let s = TestServer::start().await;
    let udp = Udp::new(s.running().sip_addr.unwrap()).await;
    let resp = udp
        .ask(&request(
            "SUBSCRIBE",
            "s1",
            "Event: presence\r\nExpires: 600\r\n",
            udp.local(),
        ))
        .await;
    assert_eq!(status(&resp), 489, "{resp}");
    let resp = udp.ask(&request("SUBSCRIBE", "s2", "", udp.local())).await;
    assert!(
        resp.starts_with("SIP/2.0 400 Missing Event header"),
        "{resp}"
    );
    s.stop().await;
}

// RFC 3261 §8.2.1, §8.2.2: methods we know but do not serve (405 with Allow; INVITE 488 while
// session mode is not offered), unknown
// methods (501), unsupported URI schemes (416), required extensions (420 + Unsupported).
#[tokio::test]
async fn refusals() {
    let s = TestServer::start().await;
    let udp = Udp::new(s.running().sip_addr.unwrap()).await;
    let resp = udp.ask(&request("PUBLISH", "p1", "", udp.local())).await;
    assert_eq!(status(&resp), 405, "{resp}");
    assert_eq!(
        header(&resp, "Allow"),
        Some("OPTIONS, SUBSCRIBE, REGISTER, MESSAGE")
    );
    // Issue #14 scope 7 (IM-09): session-mode IM is refused with the reason and Allow.
    let resp = udp.ask(&request("INVITE", "i1", "", udp.local())).await;
    assert_eq!(status(&resp), 488, "{resp}");
    assert!(resp.contains("use MESSAGE"), "{resp}");
    assert!(header(&resp, "Allow").is_some(), "{resp}");
    let resp = udp.ask(&request("FROB", "f1", "", udp.local())).await;
    assert_eq!(status(&resp), 501, "{resp}");
    let resp = udp
        .ask(&request(
            "OPTIONS",
            "r1",
            "Require: 100rel, timer\r\n",
            udp.local(),
        ))
        .await;
    assert_eq!(status(&resp), 420, "{resp}");
    assert_eq!(header(&resp, "Unsupported"), Some("100rel, timer"));
    let http = request("OPTIONS", "u1", "", udp.local()).replacen(
        "sip:xcapd@127.0.0.1 SIP",
        "http://127.0.0.1/ SIP",
        1,
    );
    assert_eq!(status(&udp.ask(&http).await), 416);
    // ACK is never answered.
    udp.send(&request("ACK", "a1", "", udp.local())).await;
    assert_eq!(udp.recv().await, None);
    s.stop().await;
}

// RFC 3261 §8.2: malformed requests get 400 with a reason when they can be answered; bytes
// that cannot be answered are dropped; the endpoint keeps serving either way.
#[tokio::test]
async fn malformed_requests() {
    let s = TestServer::start().await;
    let udp = Udp::new(s.running().sip_addr.unwrap()).await;
    let local = udp.local();
    let no_cseq = request("OPTIONS", "m1", "", local).replace("CSeq: 7 OPTIONS\r\n", "");
    let resp = udp.ask(&no_cseq).await;
    assert!(
        resp.starts_with("SIP/2.0 400 Missing or malformed CSeq header"),
        "{resp}"
    );
    let wrong_cseq = request("OPTIONS", "m2", "", local).replace("7 OPTIONS", "7 INVITE");
    assert!(udp
        .ask(&wrong_cseq)
        .await
        .starts_with("SIP/2.0 400 CSeq method"));
    let long_body =
        request("OPTIONS", "m3", "", local).replace("Content-Length: 0", "Content-Length: 500");
    let resp = udp.ask(&long_body).await;
    assert!(resp.starts_with("SIP/2.0 400 Bad Content-Length"), "{resp}");
    let bad_mf =
        request("OPTIONS", "m4", "", local).replace("Max-Forwards: 70", "Max-Forwards: lots");
    assert_eq!(status(&udp.ask(&bad_mf).await), 400);
    // Garbage, a stray response and a request without Via: no answer.
    for junk in [
        "\u{0}\u{1}garbage\r\n\r\n".to_string(),
        "SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n".to_string(),
        request("OPTIONS", "m5", "", local).replace(
            &format!("Via: SIP/2.0/UDP {local};branch=z9hG4bKm5;rport\r\n"),
            "",
        ),
    ] {
        udp.send(&junk).await;
        assert_eq!(udp.recv().await, None, "{junk:?}");
    }
    let big = format!(
        "OPTIONS sip:x@y SIP/2.0\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let _ = udp
        .socket
        .send_to(&big.as_bytes()[..65_000], udp.server)
        .await;
    assert_eq!(
        status(&udp.ask(&request("OPTIONS", "m6", "", local)).await),
        200
    );
    s.stop().await;
}

async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    common::sip_ua::read_message(stream, buf).await
}

// RFC 3261 §18.3: messages framed by Content-Length, pipelined or split over reads; RFC 5626
// §4.4.1: a CRLF CRLF ping gets a CRLF pong; a message without Content-Length cannot be framed
// on a stream: 400 and the connection closes.
#[tokio::test]
async fn tcp_framing() {
    let s = TestServer::start().await;
    let addr = s.running().sip_addr.unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let tcp_req = |b: &str| request("OPTIONS", b, "", local).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let two = format!("{}{}", tcp_req("t1"), tcp_req("t2"));
    tcp.write_all(two.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let first = read_response(&mut tcp, &mut buf).await.unwrap();
    let second = read_response(&mut tcp, &mut buf).await.unwrap();
    assert!(
        first.contains("z9hG4bKt1") && first.starts_with("SIP/2.0 200"),
        "{first}"
    );
    assert!(second.contains("z9hG4bKt2"), "{second}");
    let split = tcp_req("t3");
    let (a, b) = split.split_at(40);
    tcp.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(b.as_bytes()).await.unwrap();
    let third = read_response(&mut tcp, &mut buf).await.unwrap();
    assert!(third.contains("z9hG4bKt3"), "{third}");
    tcp.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    let unframed = tcp_req("t4").replace("Content-Length: 0\r\n", "");
    tcp.write_all(unframed.as_bytes()).await.unwrap();
    let resp = read_response(&mut tcp, &mut buf).await.unwrap_or_default();
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed");
    s.stop().await;
}

// `[sip] listen = ""` turns SIP off; the XCAP side is unaffected.
#[tokio::test]
async fn sip_can_be_disabled() {
    let s = TestServer::start_with(|c| c.sip.listen = String::new()).await;
    assert_eq!(s.running().sip_addr, None);
    assert_eq!(s.get("xcap-caps/global/index").await.status, 200);
    s.stop().await;
}

// RFC 3261 §17.1.3, §18.1.2: a request the server sends goes out from its SIP UDP socket with
// a Via naming that socket; the peer's response reaches the server's transaction there.
#[tokio::test]
async fn requests_sent_by_the_server_get_their_responses() {
    use xcapd::sip::client::Outcome;
    use xcapd::sip::message::{parse, Headers, Limits, Message, Method, StartLine};
    let s = TestServer::start().await;
    let sip = s.running().sip_addr.unwrap();
    let client = s.running().sip_client.clone().expect("SIP client");
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    let mut headers = Headers::new();
    headers.push("From", format!("<sip:xcapd@{sip}>;tag=n1"));
    headers.push("To", format!("<sip:peer@{dest}>"));
    headers.push("Call-ID", "out-1@127.0.0.1");
    headers.push("CSeq", "1 OPTIONS");
    headers.push("Max-Forwards", "70");
    let request = Message {
        start: StartLine::Request {
            method: Method::Options,
            uri: format!("sip:peer@{dest}"),
        },
        headers,
        body: Vec::new(),
    };
    let waiter = tokio::spawn(async move { client.request(request, dest).await });
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, sip, "sent from the SIP socket");
    let req = parse(&buf[..n], &Limits::default()).unwrap();
    let via = req.headers.get("Via").unwrap().to_string();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {sip};branch=z9hG4bK")),
        "{via}"
    );
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:xcapd@{sip}>;tag=n1\r\nTo: <sip:peer@{dest}>;tag=p\r\nCall-ID: out-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(reply.as_bytes(), from).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Final(ref m) if m.status() == Some(200)),
        "{outcome:?}"
    );
    s.stop().await;
}

// A flood of bare line ends over TCP is dropped as it comes (keep-alive padding) and answered
// with pongs; the connection still serves requests afterwards. Two different Content-Length
// values cannot be framed: 400 and the connection closes (no request smuggled behind it).
#[tokio::test]
async fn tcp_crlf_flood_and_conflicting_lengths() {
    let s = TestServer::start().await;
    let addr = s.running().sip_addr.unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(&vec![b'\n'; 200_000]).await.unwrap();
    let req = request("OPTIONS", "fl1", "", local).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let resp = read_response(&mut tcp, &mut buf).await.unwrap();
    assert!(
        resp.starts_with("SIP/2.0 200") && resp.contains("z9hG4bKfl1"),
        "{resp}"
    );
    let smuggle = request("OPTIONS", "fl2", "", local)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace(
            "Content-Length: 0\r\n",
            "Content-Length: 60\r\nContent-Length: 0\r\n",
        );
    tcp.write_all(smuggle.as_bytes()).await.unwrap();
    let resp = read_response(&mut tcp, &mut buf).await.unwrap();
    assert!(resp.starts_with("SIP/2.0 400 Bad Content-Length"), "{resp}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed");
    s.stop().await;
}

// RFC 3261 §8.2.1 looks at the method first (405 even for an odd Request-URI); §9.2: CANCEL
// matches no transaction of ours (481); §21.5.14: too large is 513.
#[tokio::test]
async fn method_first_cancel_and_too_large() {
    let s = TestServer::start_with(|c| c.sip.max_message_bytes = 2048).await;
    let udp = Udp::new(s.running().sip_addr.unwrap()).await;
    let odd = request("PUBLISH", "o1", "", udp.local()).replacen(
        "sip:xcapd@127.0.0.1 SIP",
        "im:xcapd@127.0.0.1 SIP",
        1,
    );
    assert_eq!(status(&udp.ask(&odd).await), 405);
    assert_eq!(
        status(&udp.ask(&request("CANCEL", "c1", "", udp.local())).await),
        481
    );
    let big = request(
        "OPTIONS",
        "b1",
        &format!("X-Pad: {}\r\n", "a".repeat(4000)),
        udp.local(),
    );
    let resp = udp.ask(&big).await;
    assert!(resp.starts_with("SIP/2.0 513"), "{resp}");
    s.stop().await;
}
