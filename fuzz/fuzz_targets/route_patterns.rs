//! Route patterns against paths: `PathPattern::parse`, `NormalizedPath::new`, `matches`.
//! Input: the first line is a pattern, the rest a request path.
//!
//! Invariants: never panics; a normalised path starts with `/`, has no empty, `.` or `..`
//! segment except a single trailing `/`, no raw `\`, `;`, space, control or non-ASCII byte, no
//! encoded `/`, `\`, `%` or control character, and normalising it again changes nothing (so the
//! path a rule matched is exactly the path forwarded, and a second proxy sees the same thing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::policy::{NormalizedPath, PathPattern, normalize_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, text));
    let pattern = PathPattern::parse(pattern).ok();
    let Ok(normal) = NormalizedPath::new(path) else {
        return;
    };
    let s = normal.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    let inner = s.strip_suffix('/').unwrap_or(s);
    if !inner.is_empty() {
        for segment in inner[1..].split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..", "{path:?} -> {s:?}");
        }
    }
    assert!(
        s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b';'),
        "{path:?} -> {s:?}"
    );
    let upper = s.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%25", "%00", "%2E"] {
        assert!(!upper.contains(bad), "{path:?} -> {s:?} keeps {bad}");
    }
    assert_eq!(normalize_path(s).as_deref(), Ok(s), "normalising is not idempotent for {path:?}");
    if let Some(pattern) = pattern {
        let again = NormalizedPath::new(s).expect("idempotent");
        assert_eq!(pattern.matches(&normal), pattern.matches(&again));
    }
});
