//! The PROXY protocol v1/v2 header reader (`ferry_relay::proxy`), fed the
//! bytes a balancer's connection might start with, exactly as the async
//! reader feeds it: as many more bytes as it asks for each time.
//!
//! Checked: no panic; it never asks past the header's bound (107 bytes for
//! v1, 16 + 4096 for v2) nor for zero bytes; a complete header was read
//! whole (v1 up to its LF); the same bytes give the same answer again.

#![no_main]

use ferry_relay::proxy::{HeaderRead, ProxyError, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, used) = read(data);
    let (again, used_again) = read(data);
    assert_eq!(used, used_again);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("two answers for one header: {first:?} {again:?}"),
    }
    if let Ok(HeaderRead::Complete(_)) = first {
        let header = &data[..used];
        if header.starts_with(b"PROXY ") {
            assert!(header.ends_with(b"\n") && used <= 107);
            assert_eq!(header.iter().filter(|&&b| b == b'\n').count(), 1);
        } else {
            let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
            assert_eq!(used, 16 + length);
        }
    }
});

/// Reads a header out of `data` as the reader reads a socket; running out
/// of bytes is the connection closing. The answer and the bytes taken.
fn read(data: &[u8]) -> (Result<HeaderRead, ProxyError>, usize) {
    let mut used = 0;
    loop {
        match parse_header(&data[..used]) {
            Ok(HeaderRead::Need(more)) => {
                assert!(more > 0, "asked for nothing at {used}");
                assert!(used + more <= 16 + 4096, "asked past any header: {used} + {more}");
                if used + more > data.len() {
                    return (Ok(HeaderRead::Need(more)), used);
                }
                used += more;
            }
            done => return (done, used),
        }
    }
}
