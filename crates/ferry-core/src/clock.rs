//! Time as a dependency: production uses the system clock, tests a fixed one.

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that stands still unless moved: for tests of time-based rules.
#[derive(Debug, Default)]
pub struct FixedClock(pub std::sync::atomic::AtomicU64);

impl FixedClock {
    pub fn at(ms: u64) -> Self {
        FixedClock(std::sync::atomic::AtomicU64::new(ms))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The UTC calendar day of an instant (an application's expiry is a UTC day).
pub fn utc_date(ms: u64) -> jiff::civil::Date {
    jiff::Timestamp::from_millisecond(ms as i64)
        .unwrap_or_default()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// An RFC 5322 date (`Tue, 24 Nov 2026 05:00:00 +0000`) for a header.
pub fn rfc5322_date(ms: u64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms as i64).unwrap_or_default();
    jiff::fmt::rfc2822::to_string(&ts.to_zoned(jiff::tz::TimeZone::UTC)).unwrap_or_default()
}
