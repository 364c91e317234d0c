//! Message content framing: the DATA decoder (dot-unstuffing, strict end of
//! data) and the line-ending check shared with BDAT.
//!
//! End of data is only `<CRLF>.<CRLF>`. A bare CR or bare LF anywhere in the
//! content marks the message as broken; the decoder keeps reading to the
//! real end of data so the client and server stay in step, and the session
//! then refuses the whole message. That is what makes every SMTP-smuggling
//! variant (`<LF>.<LF>`, `<CR>.<CR>`, `<LF>.<CRLF>` ...) fail: nothing after
//! such a sequence can become a second message.

/// Where the DATA decoder stands in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// At the start of a line (just after CRLF, or at the start of DATA).
    LineStart,
    /// Inside a line.
    Text,
    /// Saw CR inside a line; the next byte decides whether it was a line end.
    Cr,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
}

/// What the content of one message looked like once its end was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentFlaws {
    /// A CR not followed by LF, or an LF not preceded by CR.
    pub bare_line_ending: bool,
    /// More bytes than the limit; the excess was read and discarded.
    pub over_limit: bool,
}

/// Incremental DATA decoder: eats wire bytes, appends the unstuffed message
/// to a body buffer, and reports when `<CRLF>.<CRLF>` has been seen.
#[derive(Debug)]
pub struct DataDecoder {
    state: DataState,
    limit_bytes: usize,
    flaws: ContentFlaws,
}

impl DataDecoder {
    pub fn new(limit_bytes: usize) -> Self {
        DataDecoder {
            state: DataState::LineStart,
            limit_bytes,
            flaws: ContentFlaws::default(),
        }
    }

    /// Consumes bytes from `input`, appending content to `body`. Returns how
    /// many bytes were consumed and, when the end of data was reached, the
    /// flaws seen; bytes after the end are left for the command reader.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, Option<ContentFlaws>) {
        for (i, &b) in input.iter().enumerate() {
            if self.step(b, body) {
                return (i + 1, Some(self.flaws));
            }
        }
        (input.len(), None)
    }

    fn emit(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        if body.len() + bytes.len() > self.limit_bytes {
            self.flaws.over_limit = true;
        } else {
            body.extend_from_slice(bytes);
        }
    }

    /// One byte; true at the end of data.
    fn step(&mut self, b: u8, body: &mut Vec<u8>) -> bool {
        use DataState::*;
        match (self.state, b) {
            (LineStart, b'.') => self.state = Dot,
            (LineStart | Text, b'\r') => self.state = Cr,
            (LineStart | Text, b'\n') => self.bare(b"\n", body),
            (LineStart | Text, _) => {
                self.emit(&[b], body);
                self.state = Text;
            }
            (Cr, b'\n') => {
                self.emit(b"\r\n", body);
                self.state = LineStart;
            }
            (Cr, _) => {
                self.flaws.bare_line_ending = true;
                self.emit(b"\r", body);
                self.state = Text;
                return self.step(b, body);
            }
            (Dot, b'\r') => self.state = DotCr,
            (Dot, b'\n') => self.bare(b"\n", body),
            // Dot-unstuffing: a leading dot is dropped (RFC 5321 §4.5.2).
            (Dot, _) => {
                self.state = Text;
                return self.step(b, body);
            }
            (DotCr, b'\n') => return true,
            (DotCr, _) => {
                self.flaws.bare_line_ending = true;
                self.emit(b"\r", body);
                self.state = Text;
                return self.step(b, body);
            }
        }
        false
    }

    /// A bare LF is not a line start: only `<CRLF>.<CRLF>` ends the data,
    /// so `<LF>.<CRLF>` cannot end a message and let what follows become a
    /// second one.
    fn bare(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        self.flaws.bare_line_ending = true;
        self.emit(bytes, body);
        self.state = DataState::Text;
    }
}

/// Line-ending check over a stream of BDAT chunks (no dot-stuffing there, but
/// the content must still be CRLF-terminated lines; a CR at the end of one
/// chunk may be completed by an LF at the start of the next).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineEndingCheck {
    pending_cr: bool,
    bare: bool,
}

impl LineEndingCheck {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if !self.pending_cr => self.bare = true,
                _ if self.pending_cr && b != b'\n' => self.bare = true,
                _ => {}
            }
            self.pending_cr = b == b'\r';
        }
    }

    /// True when a bare CR or LF was seen, counting a CR left dangling at the end.
    pub fn finish(&self) -> bool {
        self.bare || self.pending_cr
    }
}

/// Dot-stuffs `body` for transmission with DATA (the inverse of the decoder):
/// used by tests and by the outbound client.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(wire: &[u8]) -> (Vec<u8>, usize, Option<ContentFlaws>) {
        let mut body = Vec::new();
        let (used, flaws) = DataDecoder::new(1 << 20).feed(wire, &mut body);
        (body, used, flaws)
    }

    #[test]
    fn unstuffs_and_stops_at_crlf_dot_crlf() {
        let (body, used, flaws) = decode(b"a\r\n..b\r\n.\r\nMAIL FROM:<x@y>\r\n");
        assert_eq!(body, b"a\r\n.b\r\n");
        assert_eq!(used, 11);
        assert_eq!(flaws, Some(ContentFlaws::default()));
    }

    #[test]
    fn smuggling_terminators_are_not_the_end() {
        for wire in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r.\rMAIL FROM:<x@y>\r\n",
            b"a\r.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\rMAIL FROM:<x@y>\r\n",
        ] {
            let (_, used, flaws) = decode(wire);
            assert_eq!(flaws, None, "{wire:?} ended the data");
            assert_eq!(used, wire.len());
            let mut d = DataDecoder::new(100);
            let mut body = Vec::new();
            d.feed(wire, &mut body);
            let (_, flaws) = d.feed(b"\r\n.\r\n", &mut body);
            assert!(flaws.unwrap().bare_line_ending, "{wire:?}");
        }
    }

    #[test]
    fn over_limit_is_read_to_the_end() {
        let mut body = Vec::new();
        let (used, flaws) = DataDecoder::new(4).feed(b"123456\r\n.\r\n", &mut body);
        assert_eq!(used, 11);
        assert!(flaws.unwrap().over_limit);
        assert!(body.len() <= 4);
    }

    #[test]
    fn line_ending_check_spans_chunks() {
        let mut c = LineEndingCheck::default();
        c.feed(b"a\r");
        c.feed(b"\nb\r\n");
        assert!(!c.finish());
        c.feed(b"x\ny\r\n");
        assert!(c.finish());
    }
}
