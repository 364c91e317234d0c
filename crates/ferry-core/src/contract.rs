//! The organisation's contract with its upstream: contracted hourly peak
//! and yearly total, the contract year in its own time zone, and the price
//! of going over. Money is kept in integer micro-units (10⁻⁶ of the
//! currency) until the last step, so sums are exact.

use serde::{Deserialize, Serialize};

/// What the contract is priced on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Messages,
    Recipients,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Messages => "messages",
            Unit::Recipients => "recipients",
        }
    }
}

/// A price in micro-units of the currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Micros(pub u128);

impl Micros {
    /// Parses a decimal such as `0.0012` (at most 6 decimals).
    pub fn parse(s: &str) -> Option<Micros> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let frac: u128 = format!("{frac:0<6}").parse().ok()?;
        Some(Micros(whole * 1_000_000 + frac))
    }

    /// The decimal [`Micros::parse`] reads, with all six places (`0.001200`).
    pub fn decimal(self) -> String {
        format!("{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }

    /// Rounded half up to cents.
    pub fn to_cents(self) -> u128 {
        (self.0 + 5_000) / 10_000
    }
}

/// One step of a tiered price for units over the yearly total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// This price applies to excess units up to this many (cumulative); None: no end.
    pub up_to: Option<u64>,
    pub price: String,
}

/// The `[contract]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contract {
    pub unit: Unit,
    /// Contracted units in any one hour; None: no hourly contract.
    pub hourly_peak: Option<u64>,
    /// Contracted units in a contract year; None: no yearly contract.
    pub yearly_total: Option<u64>,
    /// The first day of a contract year (its anniversary starts the next).
    pub year_start: jiff::civil::Date,
    /// IANA zone the contract's days and years are in (hour buckets stay UTC).
    pub time_zone: String,
    pub currency: String,
    /// Price of each unit over the yearly total (decimal string).
    pub price_per_unit_over_yearly: String,
    /// Price of each unit by which the year's peak hour exceeds the hourly peak.
    pub price_per_unit_over_peak: String,
    /// When given, replaces `price_per_unit_over_yearly` with a tiered table.
    pub yearly_tiers: Vec<Tier>,
}

impl Default for Contract {
    fn default() -> Self {
        Contract {
            unit: Unit::Messages,
            hourly_peak: None,
            yearly_total: None,
            year_start: jiff::civil::date(2026, 1, 1),
            time_zone: "UTC".into(),
            currency: "EUR".into(),
            price_per_unit_over_yearly: "0".into(),
            price_per_unit_over_peak: "0".into(),
            yearly_tiers: Vec::new(),
        }
    }
}

/// A contract checked and ready for arithmetic.
#[derive(Debug, Clone)]
pub struct Terms {
    pub unit: Unit,
    pub hourly_peak: Option<u64>,
    pub yearly_total: Option<u64>,
    pub year_start: jiff::civil::Date,
    pub zone: jiff::tz::TimeZone,
    pub currency: String,
    pub over_yearly: Micros,
    pub over_peak: Micros,
    pub tiers: Vec<(Option<u64>, Micros)>,
}

/// A contract setting that cannot be used; names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ContractError {
    pub key: &'static str,
    pub problem: String,
}

impl Contract {
    pub fn terms(&self) -> Result<Terms, ContractError> {
        let err = |key: &'static str, problem: String| ContractError { key, problem };
        let zone = jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|e| err("contract.time_zone", format!("{:?}: {e}", self.time_zone)))?;
        let price = |key: &'static str, s: &str| {
            Micros::parse(s).ok_or_else(|| err(key, format!("{s:?} is not a price (a decimal with at most 6 places)")))
        };
        let mut tiers = Vec::new();
        for t in &self.yearly_tiers {
            tiers.push((t.up_to, price("contract.yearly_tiers", &t.price)?));
        }
        if tiers
            .windows(2)
            .any(|w| w[0].0.is_none() || w[0].0 >= w[1].0 && w[1].0.is_some())
        {
            return Err(err(
                "contract.yearly_tiers",
                "tiers must rise, and only the last may be open-ended".into(),
            ));
        }
        Ok(Terms {
            unit: self.unit,
            hourly_peak: self.hourly_peak,
            yearly_total: self.yearly_total,
            year_start: self.year_start,
            zone,
            currency: self.currency.clone(),
            over_yearly: price("contract.price_per_unit_over_yearly", &self.price_per_unit_over_yearly)?,
            over_peak: price("contract.price_per_unit_over_peak", &self.price_per_unit_over_peak)?,
            tiers,
        })
    }
}

/// A contract year: [start, end) in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContractYear {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl ContractYear {
    /// By how much a count made so far in the year is multiplied to project
    /// it to the year's end (a straight line), or `None` before `min_days`
    /// have passed: a forecast made on day two says nothing.
    pub fn projection_factor(&self, now_ms: u64, min_days: u32) -> Option<f64> {
        let elapsed = now_ms.saturating_sub(self.start_ms).max(1);
        (elapsed >= min_days as u64 * 86_400_000).then(|| (self.end_ms - self.start_ms) as f64 / elapsed as f64)
    }
}

impl Terms {
    /// The contract year containing `ms`: anniversaries of `year_start` at
    /// local midnight in the contract's zone (so a year may be 8759 or 8761
    /// UTC hours long, never off by a DST shift).
    pub fn year_of(&self, ms: u64) -> ContractYear {
        let local = jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap_or_default()
            .to_zoned(self.zone.clone());
        let mut year = local.year();
        loop {
            let start = self.anniversary(year);
            if start > ms {
                year -= 1;
                continue;
            }
            let end = self.anniversary(year + 1);
            if end <= ms {
                year += 1;
                continue;
            }
            return ContractYear {
                start_ms: start,
                end_ms: end,
            };
        }
    }

    fn anniversary(&self, year: i16) -> u64 {
        let month = self.year_start.month();
        // A 29 February start falls on the 28th in other years.
        let date = jiff::civil::Date::new(year, month, self.year_start.day())
            .or_else(|_| jiff::civil::Date::new(year, month, 28))
            .unwrap_or(self.year_start);
        let zoned = date
            .to_zoned(self.zone.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0);
        zoned.max(0) as u64
    }

    /// The cost of `excess` units over the yearly total, cumulative.
    pub fn yearly_excess_cost(&self, excess: u64) -> Micros {
        if self.tiers.is_empty() {
            return Micros(self.over_yearly.0 * excess as u128);
        }
        let (mut cost, mut below) = (0u128, 0u64);
        for (up_to, price) in &self.tiers {
            let top = up_to.unwrap_or(u64::MAX).min(excess);
            if top > below {
                cost += price.0 * (top - below) as u128;
                below = top;
            }
        }
        Micros(cost)
    }

    pub fn peak_excess_cost(&self, excess: u64) -> Micros {
        Micros(self.over_peak.0 * excess as u128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(zone: &str, start: jiff::civil::Date) -> Terms {
        Contract {
            time_zone: zone.into(),
            year_start: start,
            ..Contract::default()
        }
        .terms()
        .expect("valid")
    }

    fn ms(s: &str) -> u64 {
        s.parse::<jiff::Timestamp>().expect("timestamp").as_millisecond() as u64
    }

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(Micros::parse("0.0012"), Some(Micros(1_200)));
        assert_eq!(Micros::parse("12"), Some(Micros(12_000_000)));
        assert_eq!(Micros::parse("1.2345678"), None);
        assert_eq!(Micros::parse("-1"), None);
        assert_eq!(Micros(12_345).to_cents(), 1);
        assert_eq!(Micros(15_000).to_cents(), 2);
    }

    #[test]
    fn contract_years_follow_the_local_zone() {
        let t = terms("Europe/Zurich", jiff::civil::date(2026, 7, 1));
        let y = t.year_of(ms("2026-06-30T22:30:00Z"));
        // 00:30 on 1 July in Zurich (UTC+2): the new year has begun.
        assert_eq!(y.start_ms, ms("2026-06-30T22:00:00Z"));
        assert_eq!(y.end_ms, ms("2027-06-30T22:00:00Z"));
        let before = t.year_of(ms("2026-06-30T21:59:59Z"));
        assert_eq!(before.end_ms, y.start_ms);
        assert_eq!(before.start_ms, ms("2025-06-30T22:00:00Z"));
    }

    #[test]
    fn a_year_across_dst_has_local_midnights_at_both_ends() {
        // Starting in winter (UTC+1), the year still ends at local midnight.
        let t = terms("Europe/Zurich", jiff::civil::date(2026, 1, 1));
        let y = t.year_of(ms("2026-08-01T00:00:00Z"));
        assert_eq!(y.start_ms, ms("2025-12-31T23:00:00Z"));
        assert_eq!(y.end_ms, ms("2026-12-31T23:00:00Z"));
    }

    #[test]
    fn tiered_prices() {
        let mut c = Contract {
            yearly_tiers: vec![
                Tier {
                    up_to: Some(100),
                    price: "0.01".into(),
                },
                Tier {
                    up_to: None,
                    price: "0.005".into(),
                },
            ],
            ..Contract::default()
        };
        let t = c.terms().expect("valid");
        assert_eq!(t.yearly_excess_cost(50), Micros(500_000));
        assert_eq!(t.yearly_excess_cost(150), Micros(1_000_000 + 250_000));
        assert_eq!(Micros::parse(&Micros(1_250_000).decimal()), Some(Micros(1_250_000)));
        c.yearly_tiers = vec![
            Tier {
                up_to: None,
                price: "1".into(),
            },
            Tier {
                up_to: Some(5),
                price: "1".into(),
            },
        ];
        assert_eq!(c.terms().unwrap_err().key, "contract.yearly_tiers");
    }
}
