//! A phone's side of digest authentication, for the tests of this crate's
//! modules and of the crates built on it (the peer core's SIP service).

use crate::digest::{Algorithm, Credentials, Ha1};
use crate::message::SipMessage;

/// Answers the `alg` challenge of a 401 or 407 as a phone would: the
/// request again with Authorization or Proxy-Authorization. When `alg` is
/// not offered it answers the first challenge with `alg` anyway, as a phone
/// trying a downgrade would.
pub fn authorize(req: &SipMessage, challenge: &SipMessage, user: &str, password: &str, alg: Algorithm) -> SipMessage {
    let proxy = challenge.status() == Some(407);
    let (asked, answer) = if proxy {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let offers: Vec<String> = challenge
        .headers
        .iter()
        .filter(|h| h.is(asked))
        .map(|h| h.value().into_owned())
        .collect();
    let offer = offers
        .iter()
        .find(|v| v.contains(&format!("algorithm={}", alg.name())))
        .or(offers.first())
        .expect("the answer carries a challenge");
    let quoted = |name: &str| -> String {
        offer
            .split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("quoted parameter")
            .to_string()
    };
    let realm = quoted("realm");
    let mut c = Credentials {
        username: user.into(),
        realm: realm.clone(),
        nonce: quoted("nonce"),
        uri: req.request_uri().expect("a request").to_string(),
        response: String::new(),
        algorithm: Some(alg.name().into()),
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    let method = req.method().expect("a request");
    c.response = c
        .expected_response(method, &Ha1::new(user, &realm, password))
        .expect("computable");
    let mut out = req.clone();
    out.push(answer, &c.header_value());
    out
}

#[cfg(test)]
pub use heap::heap_held;

/// The unit tests' global allocator: only in this crate's own test build,
/// so no crate that uses [`authorize`] gets a second one.
#[cfg(test)]
mod heap {
    /// Counts the heap bytes the current thread holds, so a test can say how
    /// much memory a piece of state keeps. Per thread, so tests running in
    /// parallel do not see each other's allocations.
    pub struct CountingAllocator;

    thread_local! {
        static HELD: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    }

    /// Heap bytes allocated and not yet freed by this thread.
    pub fn heap_held() -> isize {
        HELD.with(|h| h.get())
    }

    fn count(delta: isize) {
        // try_with: the allocator also runs while thread-locals are torn down.
        let _ = HELD.try_with(|h| h.set(h.get() + delta));
    }

    // SAFETY: every call is passed to the system allocator unchanged; the
    // counting only reads sizes.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            count(layout.size() as isize);
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            count(-(layout.size() as isize));
            // SAFETY: as above.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            count(new_size as isize - layout.size() as isize);
            // SAFETY: as above.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAllocator = CountingAllocator;
}
