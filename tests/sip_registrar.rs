//! The registrar over real UDP sockets (issue #14 scope 1; RFC 3261 §10.3): bindings with
//! their durations, several contacts, refresh order, removal one by one and with `*`, 423,
//! and who may register what (SIP Digest, the own address of record only, third-party
//! registration from a trusted SIP/IP core).

mod common;
use common::sip_ua::*;
use common::*;

const ALICE: &str = "sip:alice@example.com";

fn contacts(m: &Msg) -> Vec<String> {
    let mut out: Vec<String> = m.headers("Contact").iter().map(|c| c.to_string()).collect();
    out.sort();
    out
}

// RFC 3261 §10.3 steps 6–8 in development mode (the From URI registers).
#[tokio::test]
async fn bindings_durations_order_and_removal() {
    let s = TestServer::start_with(|c| c.im.registration_max_secs = 7200).await;
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    // OPTIONS names REGISTER among the methods served.
    let options = format!(
        "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKo1;rport\r\nMax-Forwards: 70\r\nFrom: <{ALICE}>;tag=o\r\nTo: <sip:example.com>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ua.local()
    );
    let (r, _) = ua.request(&options).await;
    assert!(
        r.header("Allow").unwrap().contains("REGISTER"),
        "{}",
        r.text
    );

    let first = ua.register(
        &["sip:alice@192.0.2.1:5070", "sip:alice@192.0.2.2"],
        Some(99999),
        "",
    );
    let (r, _) = ua.request(&first).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert_eq!(
        contacts(&r),
        [
            "<sip:alice@192.0.2.1:5070>;expires=7200",
            "<sip:alice@192.0.2.2>;expires=7200"
        ],
        "capped at registration_max_secs"
    );
    assert!(r.header("To").unwrap().contains("tag="));

    // §10.3 step 7: below the minimum.
    let req = ua.register(&["sip:alice@192.0.2.3"], Some(10), "");
    let (r, _) = ua.request(&req).await;
    assert_eq!(r.status(), Some(423));
    assert_eq!(r.header("Min-Expires"), Some("60"));

    // One removed, the other refreshed; the reply lists what is left.
    let req = ua.register(&["sip:alice@192.0.2.1:5070"], Some(0), "");
    let (r, _) = ua.request(&req).await;
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.2>;expires=7200"]);

    // §10.3 step 6: the first REGISTER again (a late retransmission, new branch): its CSeq is
    // not above the stored one for 192.0.2.2, so nothing changes (not even 192.0.2.1 again).
    let (r, _) = ua
        .request(&first.replace("z9hG4bKreg", "z9hG4bKlate"))
        .await;
    assert_eq!(r.status(), Some(500), "{}", r.text);

    // A query (no Contact) lists the bindings; `*` with Expires 0 removes them all.
    let req = ua.register(&[], None, "");
    let (r, _) = ua.request(&req).await;
    assert_eq!(contacts(&r).len(), 1);
    let req = ua.register(&["*"], Some(0), "");
    let (r, _) = ua.request(&req).await;
    assert_eq!(r.status(), Some(200));
    assert!(contacts(&r).is_empty(), "{}", r.text);
    let req = ua.register(&["*"], Some(60), "");
    assert_eq!(ua.request(&req).await.0.status(), Some(400));
    s.stop().await;
}

/// Registers `contact` for `ua`'s address with Alice's Digest credentials (after the 401):
/// the final status.
async fn register_with_digest(ua: &mut Ua, contact: &str) -> u16 {
    let req = ua.register(&[contact], Some(600), "");
    let (r, _) = ua.request(&req).await;
    assert_eq!(r.status(), Some(401), "{}", r.text);
    let challenges = r.headers("WWW-Authenticate");
    let auth = digest_authorization(&challenges, "alice", "pw", "REGISTER", "sip:example.com");
    let req = ua.register(&[contact], Some(600), &auth);
    ua.request(&req).await.0.status().unwrap_or(0)
}

// §10.3 steps 4–5: SIP Digest against the credential store; a user registers only their own
// address of record; a trusted SIP/IP core registers anyone's (third-party registration).
#[tokio::test]
async fn who_may_register() {
    for trusted in [false, true] {
        let s = auth_server(trusted, "pw").await;
        let sip = s.running().sip_addr.unwrap();
        if trusted {
            // The S-CSCF copies Bob's registration: no Digest, Bob's AOR.
            let mut core = Ua::new(sip, "sip:bob@example.com").await;
            let pai = "P-Asserted-Identity: <sip:scscf@example.com>\r\n";
            let req = core.register(&["sip:bob@192.0.2.9"], Some(600), pai);
            let (r, _) = core.request(&req).await;
            assert_eq!(r.status(), Some(200), "{}", r.text);
            assert_eq!(contacts(&r), ["<sip:bob@192.0.2.9>;expires=600"]);
            s.stop().await;
            continue;
        }
        // Alice registers her own address with her password: 200.
        let mut ua = Ua::new(sip, ALICE).await;
        assert_eq!(
            register_with_digest(&mut ua, "sip:alice@192.0.2.1").await,
            200
        );
        // Alice's credentials for Bob's address: 403.
        let mut as_bob = Ua::new(sip, "sip:bob@example.com").await;
        assert_eq!(
            register_with_digest(&mut as_bob, "sip:x@192.0.2.1").await,
            403
        );
        s.stop().await;
    }
}
