//! The whole pipeline without a server: `Gate::authorize(method, path, headers)`.
//! Input: line 1 is the method, line 2 the raw path, every further line one `Authorization`
//! header value (so duplicates are fuzzed too).
//!
//! Invariants: never panics and never waits; an admitted request carries a normalised path; a
//! protected route is only ever admitted with a principal, and a `deny` route never.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, header};
use libfuzzer_sys::fuzz_target;
use tokengate::policy::{Mode, normalize_path};
use tokengate_fuzz::{layer, poll_once};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let Some(Ok(method)) = lines.next().map(Method::from_bytes) else {
        return;
    };
    let Some(Ok(path)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for value in lines {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    let gate = layer().gate();
    let decision = poll_once(gate.authorize(&method, path, &headers)).expect("authorize never waits here");
    if let Ok(authorized) = decision {
        assert_eq!(normalize_path(path).as_deref(), Ok(authorized.path.as_str()));
        match authorized.requirement.mode {
            Mode::Deny | Mode::Introspect => panic!("admitted on a {:?} route", authorized.requirement.mode),
            Mode::Local => {
                let principal = authorized.principal.expect("a local route admits only with a principal");
                for scope in authorized.requirement.scopes.iter() {
                    assert!(principal.has_scope(scope));
                }
            }
            Mode::Optional | Mode::Public => {}
        }
    }
});
