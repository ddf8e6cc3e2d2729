//! `xs:dateTime` values of `<validity>` (RFC 4745 §7.4, CP-12) converted to Unix seconds.
//!
//! Lexical form from XML Schema Part 2 §3.2.7: `-?YYYY-MM-DDThh:mm:ss(.s+)?(Z|(+|-)hh:mm)`.
//! RFC 4745 erratum 1455 makes the timezone mandatory, so a value without one is refused
//! rather than guessed. Years use proleptic Gregorian, astronomical numbering (XSD 1.1:
//! `0000` is 1 BCE). `24:00:00` means the first instant of the next day.

use thiserror::Error;

/// Why a `<from>` or `<until>` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DateTimeError {
    #[error("not an xs:dateTime: {0}")]
    Syntax(&'static str),
    #[error("xs:dateTime without timezone (RFC 4745 erratum 1455 makes it mandatory)")]
    MissingTimezone,
    #[error("xs:dateTime field out of range: {0}")]
    OutOfRange(&'static str),
}

/// Years beyond nine digits are refused so the arithmetic cannot overflow.
const MAX_YEAR_DIGITS: usize = 9;

/// Parses an `xs:dateTime` into Unix seconds.
///
/// A fractional second is rounded *up*: with integer `now`, `now >= t` and `now < t` give
/// the same answers for the exact instant `t` and for `ceil(t)`, which is what CP-12 needs.
pub fn parse_datetime(text: &str) -> Result<i64, DateTimeError> {
    // xs:dateTime has whiteSpace="collapse": surrounding XML white space is not part of it.
    let mut cur = Cursor {
        rest: text.trim_matches([' ', '\t', '\r', '\n']),
    };
    let negative = cur.eat('-');
    let year_digits = cur.digits();
    if year_digits.len() < 4 {
        return Err(DateTimeError::Syntax("year needs at least four digits"));
    }
    if year_digits.len() > 4 && year_digits.starts_with('0') {
        return Err(DateTimeError::Syntax(
            "year longer than four digits has a leading zero",
        ));
    }
    if year_digits.len() > MAX_YEAR_DIGITS {
        return Err(DateTimeError::OutOfRange("year"));
    }
    let mut year = number(year_digits)?;
    if negative {
        year = -year;
    }
    cur.expect('-')?;
    let month = cur.two_digits()?;
    cur.expect('-')?;
    let day = cur.two_digits()?;
    cur.expect('T')?;
    let hour = cur.two_digits()?;
    cur.expect(':')?;
    let minute = cur.two_digits()?;
    cur.expect(':')?;
    let second = cur.two_digits()?;
    let mut fraction_nonzero = false;
    if cur.eat('.') {
        let frac = cur.digits();
        if frac.is_empty() {
            return Err(DateTimeError::Syntax("empty fraction of a second"));
        }
        fraction_nonzero = frac.bytes().any(|b| b != b'0');
    }
    let offset_seconds = if cur.eat('Z') {
        0
    } else if cur.rest.starts_with(['+', '-']) {
        let sign = if cur.eat('-') {
            -1
        } else {
            i64::from(cur.eat('+'))
        };
        let tz_hour = cur.two_digits()?;
        cur.expect(':')?;
        let tz_minute = cur.two_digits()?;
        if tz_minute > 59 || tz_hour > 14 || (tz_hour == 14 && tz_minute != 0) {
            return Err(DateTimeError::OutOfRange("timezone offset"));
        }
        sign * (tz_hour * 3600 + tz_minute * 60)
    } else if cur.rest.is_empty() {
        return Err(DateTimeError::MissingTimezone);
    } else {
        return Err(DateTimeError::Syntax(
            "unexpected characters after the time",
        ));
    };
    if !cur.rest.is_empty() {
        return Err(DateTimeError::Syntax(
            "unexpected characters after the timezone",
        ));
    }

    if !(1..=12).contains(&month) {
        return Err(DateTimeError::OutOfRange("month"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(DateTimeError::OutOfRange("day"));
    }
    let end_of_day = hour == 24 && minute == 0 && second == 0 && !fraction_nonzero;
    if (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
        return Err(DateTimeError::OutOfRange("time of day"));
    }

    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + minute * 60 + second + i64::from(fraction_nonzero);
    Ok(local - offset_seconds)
}

struct Cursor<'t> {
    rest: &'t str,
}

impl<'t> Cursor<'t> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), DateTimeError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(DateTimeError::Syntax("missing separator"))
        }
    }

    fn digits(&mut self) -> &'t str {
        let end = self
            .rest
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.rest.len());
        let (d, r) = self.rest.split_at(end);
        self.rest = r;
        d
    }

    fn two_digits(&mut self) -> Result<i64, DateTimeError> {
        let b = self.rest.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_digit() || !b[1].is_ascii_digit() {
            return Err(DateTimeError::Syntax("expected two digits"));
        }
        let (d, r) = self.rest.split_at(2);
        self.rest = r;
        number(d)
    }
}

fn number(digits: &str) -> Result<i64, DateTimeError> {
    digits
        .parse::<i64>()
        .map_err(|_| DateTimeError::OutOfRange("number"))
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`
/// method: March-based years grouped in 400-year eras).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4745 §7.4 / CP-12: values as written in policy documents.
    #[test]
    fn utc_and_offsets_cp12() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T17:13:20-05:00"),
            Ok(1_700_000_000)
        );
        // RFC 4745 §14 example values.
        assert_eq!(
            parse_datetime("2003-12-24T17:00:00+01:00"),
            Ok(1_072_281_600)
        );
        assert_eq!(
            parse_datetime("2003-08-15T10:20:00.000-05:00"),
            Ok(1_060_960_800)
        );
        assert_eq!(parse_datetime("  2000-02-29T12:00:00Z\n"), Ok(951_825_600));
    }

    #[test]
    fn fractions_round_up_for_integer_now() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000Z"), Ok(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:00.001Z"), Ok(1));
        assert_eq!(parse_datetime("1970-01-01T00:00:09.999999Z"), Ok(10));
    }

    #[test]
    fn end_of_day_and_pre_epoch() {
        assert_eq!(
            parse_datetime("1999-12-31T24:00:00Z"),
            parse_datetime("2000-01-01T00:00:00Z")
        );
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Ok(-1));
        assert_eq!(parse_datetime("0000-03-01T00:00:00Z"), Ok(-62_162_035_200));
        assert!(parse_datetime("-0001-01-01T00:00:00Z").is_ok_and(|t| t < -62_162_035_200));
        assert_eq!(parse_datetime("10000-01-01T00:00:00Z"), Ok(253_402_300_800));
    }

    // Erratum 1455: the timezone is mandatory; no guessing of local time.
    #[test]
    fn missing_timezone_refused() {
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20"),
            Err(DateTimeError::MissingTimezone)
        );
    }

    #[test]
    fn malformed_values_refused() {
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14 22:13:20Z",
            "23-11-14T22:13:20Z",
            "02023-11-14T22:13:20Z",
            "2023-13-14T22:13:20Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2023-11-14T24:00:01Z",
            "2023-11-14T24:00:00.5Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:60Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+15:00",
            "2023-11-14T22:13:20+14:30",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14T22:13:20X",
            "1234567890-01-01T00:00:00Z",
            "2023-1-14T22:13:20Z",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_datetime("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_datetime("2000-02-29T00:00:00Z").is_ok());
        assert!(parse_datetime("1900-02-29T00:00:00Z").is_err());
    }
}
