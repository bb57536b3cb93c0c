//! Turning a CF time coordinate value into a date for a map title.
//!
//! CF files store time as a number of UNITs since a reference date, in a
//! named calendar (`units = "days since 1950-01-01"`, `calendar = "noleap"`).
//! [`format_cf_time`] turns one such value into text such as
//! `2015-01-16 12:00`, or gives up with `None` whenever it does not fully
//! understand the units or the calendar: a title without a date is better
//! than a title with a wrong one.
//!
//! Decisions:
//! * The result is rounded to the nearest second.
//! * Output is `YYYY-MM-DD HH:MM`, with `:SS` added only when the seconds are
//!   not zero. When the time of day is exactly midnight and the unit is days
//!   or coarser, only `YYYY-MM-DD` is shown (daily and monthly data are
//!   usually stamped at midnight, and "00:00" adds nothing there).
//! * A time zone on the reference date (`Z`, `UTC`, `GMT`, `+05:30`, `-0300`,
//!   `+5`) is applied, and the result is shown in UTC.
//! * `months` and `years` are only accepted for the `360_day` calendar, where
//!   they are exactly 30 and 360 days; elsewhere their length is ambiguous.
//! * The `standard`/`gregorian` calendar is the mixed Julian/Gregorian one of
//!   CF (and of the `cftime` library): Julian up to 1582-10-04, Gregorian from
//!   1582-10-15; the ten days in between do not exist.
//! * Shown years are limited to 1..=9999 (0..=9999 for the idealised
//!   calendars `noleap`, `all_leap` and `360_day`, which have a year 0); a
//!   reference year 0 is refused in the real-world calendars, where its
//!   meaning differs between conventions.

/// Seconds in one day.
const DAY: i64 = 86_400;
/// Largest offset (in seconds) accepted from the value; about 3 million years,
/// far beyond what can be shown and far below `i64` overflow.
const MAX_OFFSET_SECONDS: f64 = 1e14;

/// The CF calendars understood here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calendar {
    /// Julian before 1582-10-15, Gregorian from then on.
    Standard,
    ProlepticGregorian,
    Julian,
    NoLeap,
    AllLeap,
    Day360,
}

/// A calendar date and time of day, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// The parsed `units` attribute: the length of one unit and the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeUnits {
    /// Length of one unit in seconds.
    unit_seconds: f64,
    /// Whether the unit is a day or longer (decides whether midnight is shown).
    coarse: bool,
    /// Reference date and time (whole seconds), in its own time zone.
    reference: DateTime,
    /// Fraction of a second of the reference time (e.g. `00:00:00.5`).
    reference_fraction: f64,
    /// Offset of the reference's time zone east of UTC, in seconds.
    zone_seconds: i64,
}

/// A CF time coordinate value as a date, e.g. `"2015-01-16 12:00"`, or `None`
/// when the units or calendar are not understood or the date cannot be shown.
///
/// `calendar` is the variable's `calendar` attribute; absent means
/// `standard`, as CF says. See the module documentation for the format.
pub fn format_cf_time(value: f64, units: &str, calendar: Option<&str>) -> Option<String> {
    let calendar = parse_calendar(calendar)?;
    let units = parse_units(units, calendar)?;
    let moment = add_offset(value, &units, calendar)?;
    let shown_year_ok = moment.year <= 9999 && moment.year >= calendar.first_year();
    shown_year_ok.then(|| render(&moment, units.coarse))
}

/// Maps a CF `calendar` attribute to a [`Calendar`]; `None` for unknown names.
fn parse_calendar(name: Option<&str>) -> Option<Calendar> {
    let name = name.map(|n| n.trim().to_ascii_lowercase()).unwrap_or_default();
    match name.as_str() {
        "" | "standard" | "gregorian" => Some(Calendar::Standard),
        "proleptic_gregorian" => Some(Calendar::ProlepticGregorian),
        "julian" => Some(Calendar::Julian),
        "noleap" | "365_day" => Some(Calendar::NoLeap),
        "all_leap" | "366_day" => Some(Calendar::AllLeap),
        "360_day" => Some(Calendar::Day360),
        _ => None,
    }
}

/// Parses `"UNIT since REFERENCE"` (case-insensitive) for `calendar`.
fn parse_units(units: &str, calendar: Calendar) -> Option<TimeUnits> {
    let lower = units.trim().to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    let (unit_seconds, coarse) = unit_length(words.next()?, calendar)?;
    if words.next()? != "since" {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    let (reference, reference_fraction, zone_seconds) = parse_reference(&rest)?;
    if !calendar.is_valid_date(reference.year, reference.month, reference.day) {
        return None;
    }
    Some(TimeUnits { unit_seconds, coarse, reference, reference_fraction, zone_seconds })
}

/// Length in seconds of a time unit name, and whether it is a day or longer.
/// Months and years are only exact (30 and 360 days) in the 360-day calendar.
fn unit_length(unit: &str, calendar: Calendar) -> Option<(f64, bool)> {
    let exact_months = calendar == Calendar::Day360;
    match unit {
        "seconds" | "second" | "secs" | "sec" | "s" => Some((1.0, false)),
        "minutes" | "minute" | "mins" | "min" => Some((60.0, false)),
        "hours" | "hour" | "hrs" | "hr" | "h" => Some((3600.0, false)),
        "days" | "day" | "d" => Some((86_400.0, true)),
        "months" | "month" if exact_months => Some((30.0 * 86_400.0, true)),
        "years" | "year" if exact_months => Some((360.0 * 86_400.0, true)),
        _ => None,
    }
}

/// Parses the words after "since": a date, an optional time (joined to the
/// date by `T` or separate) and an optional time zone (attached or separate).
/// Returns the date-time, the fraction of a second and the zone offset.
fn parse_reference(words: &[&str]) -> Option<(DateTime, f64, i64)> {
    let (first, rest) = words.split_first()?;
    let (date_text, joined_time) = match first.split_once('t') {
        Some((date, time)) => (date, Some(time)),
        None => (*first, None),
    };
    let mut rest = rest.iter().copied();
    let time_text = match joined_time {
        Some(time) => Some(time),
        None => rest.next(),
    };
    let (year, month, day) = parse_date(date_text)?;
    let (clock, zone_attached) = match time_text {
        // A separate word that is not a time may already be the time zone.
        Some(text) if !text.starts_with(|c: char| c.is_ascii_digit()) => ("0", Some(text)),
        Some(text) => split_zone(text),
        None => ("0", None),
    };
    let (hour, minute, second, fraction) = parse_clock(clock)?;
    let zone_text = match (zone_attached, rest.next()) {
        (Some(_), Some(_)) => return None,
        (attached, separate) => attached.or(separate),
    };
    let zone_seconds = zone_text.map_or(Some(0), parse_zone)?;
    if rest.next().is_some() {
        return None;
    }
    let reference = DateTime { year, month, day, hour, minute, second };
    Some((reference, fraction, zone_seconds))
}

/// Splits a trailing time zone (`z`, `+hh:mm`, `-hhmm`) off a time of day.
fn split_zone(text: &str) -> (&str, Option<&str>) {
    if let Some(clock) = text.strip_suffix('z') {
        return (clock, Some("z"));
    }
    match text.find(['+', '-']) {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    }
}

/// Parses `Y-M-D` (months and days may have one digit). Negative years are
/// not accepted; range checks against the calendar happen later.
fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let mut parts = text.split('-');
    let year = parse_digits(parts.next()?)?;
    let month = parse_digits(parts.next()?)?;
    let day = parse_digits(parts.next()?)?;
    if parts.next().is_some() || month > 12 || day > 31 {
        return None;
    }
    Some((i64::from(year), month, day))
}

/// Parses `H`, `H:M` or `H:M:S[.fraction]`; returns whole seconds and the
/// fraction of a second separately.
fn parse_clock(text: &str) -> Option<(u32, u32, u32, f64)> {
    let mut parts = text.split(':');
    let hour = parse_digits(parts.next()?)?;
    let minute = parts.next().map_or(Some(0), parse_digits)?;
    let seconds: f64 = match parts.next() {
        Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') => s.parse().ok()?,
        Some(_) => return None,
        None => 0.0,
    };
    if parts.next().is_some() || hour > 23 || minute > 59 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole = seconds.floor();
    Some((hour, minute, whole as u32, seconds - whole))
}

/// Parses a time zone: `z`, `utc`, `gmt`, or `±h`, `±hh`, `±hhmm`, `±hh:mm`.
/// Returns its offset east of UTC in seconds.
fn parse_zone(text: &str) -> Option<i64> {
    if matches!(text, "z" | "utc" | "gmt") {
        return Some(0);
    }
    let (sign, digits) = match text.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let (hours, minutes) = match digits.split_once(':') {
        Some((h, m)) => (parse_digits(h)?, parse_digits(m)?),
        None if digits.len() == 4 => (parse_digits(digits.get(..2)?)?, parse_digits(digits.get(2..)?)?),
        None if digits.len() <= 2 => (parse_digits(digits)?, 0),
        None => return None,
    };
    if hours > 14 || minutes > 59 {
        return None;
    }
    Some(sign * i64::from(hours * 3600 + minutes * 60))
}

/// Parses a non-empty run of at most 6 ASCII digits.
fn parse_digits(text: &str) -> Option<u32> {
    let plausible = !text.is_empty() && text.len() <= 6;
    if plausible && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// The reference moment plus `value` units, converted to UTC and rounded to
/// the nearest second; `None` for non-finite or absurdly large values.
fn add_offset(value: f64, units: &TimeUnits, calendar: Calendar) -> Option<DateTime> {
    let offset = (value * units.unit_seconds + units.reference_fraction).round();
    if !offset.is_finite() || offset.abs() > MAX_OFFSET_SECONDS {
        return None;
    }
    let reference = &units.reference;
    let day = calendar.day_number(reference.year, reference.month, reference.day)?;
    let clock = i64::from(reference.hour * 3600 + reference.minute * 60 + reference.second);
    let total =
        day.checked_mul(DAY)?.checked_add(clock)?.checked_add(offset as i64)?.checked_sub(units.zone_seconds)?;
    let (year, month, day) = calendar.date_of(total.div_euclid(DAY))?;
    let second_of_day = total.rem_euclid(DAY) as u32;
    Some(DateTime {
        year,
        month,
        day,
        hour: second_of_day / 3600,
        minute: second_of_day / 60 % 60,
        second: second_of_day % 60,
    })
}

/// Formats a moment as described in the module documentation.
fn render(moment: &DateTime, coarse_unit: bool) -> String {
    let date = format!("{:04}-{:02}-{:02}", moment.year, moment.month, moment.day);
    let midnight = moment.hour == 0 && moment.minute == 0 && moment.second == 0;
    if midnight && coarse_unit {
        date
    } else if moment.second == 0 {
        format!("{date} {:02}:{:02}", moment.hour, moment.minute)
    } else {
        format!("{date} {:02}:{:02}:{:02}", moment.hour, moment.minute, moment.second)
    }
}

/// Julian calendar date of the last day before the Gregorian reform.
const LAST_JULIAN: (i64, u32, u32) = (1582, 10, 4);
/// Gregorian calendar date of the first day of the Gregorian reform.
const FIRST_GREGORIAN: (i64, u32, u32) = (1582, 10, 15);

impl Calendar {
    /// The first year that may be shown: the real-world calendars have no
    /// year 0 in CF's usual reading, the idealised ones do.
    fn first_year(self) -> i64 {
        match self {
            Calendar::NoLeap | Calendar::AllLeap | Calendar::Day360 => 0,
            _ => 1,
        }
    }

    /// Whether `year-month-day` exists in this calendar (and may be used).
    fn is_valid_date(self, year: i64, month: u32, day: u32) -> bool {
        let in_gap =
            self == Calendar::Standard && (year, month, day) > LAST_JULIAN && (year, month, day) < FIRST_GREGORIAN;
        let julian_part = self == Calendar::Standard && (year, month, day) < FIRST_GREGORIAN;
        let rule = if julian_part { CycleRule::JULIAN } else { self.rule() };
        (1..=12).contains(&month)
            && day >= 1
            && day <= rule.month_length(year, month)
            && year >= self.first_year()
            && !in_gap
    }

    /// A day count (days since this calendar's 0000-01-01; for `Standard`,
    /// since proleptic-Gregorian 0000-01-01) for a valid date.
    fn day_number(self, year: i64, month: u32, day: u32) -> Option<i64> {
        if !self.is_valid_date(year, month, day) {
            return None;
        }
        if self != Calendar::Standard || (year, month, day) >= FIRST_GREGORIAN {
            return self.rule().day_number(year, month, day);
        }
        let julian = CycleRule::JULIAN.day_number(year, month, day)?;
        julian.checked_add(julian_to_gregorian_shift()?)
    }

    /// The date of a day count made by [`Calendar::day_number`].
    fn date_of(self, day_number: i64) -> Option<(i64, u32, u32)> {
        if self != Calendar::Standard {
            return self.rule().date_of(day_number);
        }
        let (y, m, d) = FIRST_GREGORIAN;
        if day_number >= CycleRule::GREGORIAN.day_number(y, m, d)? {
            CycleRule::GREGORIAN.date_of(day_number)
        } else {
            CycleRule::JULIAN.date_of(day_number.checked_sub(julian_to_gregorian_shift()?)?)
        }
    }

    /// The uniform leap-year rule behind this calendar (for `Standard`, the
    /// Gregorian rule; its Julian part is handled by the callers).
    fn rule(self) -> CycleRule {
        match self {
            Calendar::Standard | Calendar::ProlepticGregorian => CycleRule::GREGORIAN,
            Calendar::Julian => CycleRule::JULIAN,
            Calendar::NoLeap => CycleRule::NO_LEAP,
            Calendar::AllLeap => CycleRule::ALL_LEAP,
            Calendar::Day360 => CycleRule::DAY_360,
        }
    }
}

/// What to add to a Julian day count to get the Gregorian day count of the
/// same day: the reform made Julian 1582-10-04 the day before Gregorian
/// 1582-10-15.
fn julian_to_gregorian_shift() -> Option<i64> {
    let (jy, jm, jd) = LAST_JULIAN;
    let (gy, gm, gd) = FIRST_GREGORIAN;
    let last_julian = CycleRule::JULIAN.day_number(jy, jm, jd)?;
    let first_gregorian = CycleRule::GREGORIAN.day_number(gy, gm, gd)?;
    Some(first_gregorian - 1 - last_julian)
}

/// A calendar whose pattern of year lengths repeats every `years` years.
#[derive(Debug, Clone, Copy)]
struct CycleRule {
    /// Length of the repeating cycle in years.
    years: i64,
    /// Length of the repeating cycle in days (checked by a test).
    days: i64,
    /// Which years are leap years (given the year, any integer).
    leap: fn(i64) -> bool,
    /// Whether every month has 30 days (the 360-day calendar).
    thirty_day_months: bool,
}

impl CycleRule {
    const GREGORIAN: CycleRule = CycleRule {
        years: 400,
        days: 146_097,
        leap: |y| y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0),
        thirty_day_months: false,
    };
    const JULIAN: CycleRule =
        CycleRule { years: 4, days: 1461, leap: |y| y.rem_euclid(4) == 0, thirty_day_months: false };
    const NO_LEAP: CycleRule = CycleRule { years: 1, days: 365, leap: |_| false, thirty_day_months: false };
    const ALL_LEAP: CycleRule = CycleRule { years: 1, days: 366, leap: |_| true, thirty_day_months: false };
    const DAY_360: CycleRule = CycleRule { years: 1, days: 360, leap: |_| false, thirty_day_months: true };

    /// Days in `month` (1..=12) of `year`.
    fn month_length(&self, year: i64, month: u32) -> u32 {
        match month {
            _ if self.thirty_day_months => 30,
            2 if (self.leap)(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days in `year`.
    fn year_length(&self, year: i64) -> i64 {
        match () {
            _ if self.thirty_day_months => 360,
            _ if (self.leap)(year) => 366,
            _ => 365,
        }
    }

    /// Days from 0000-01-01 of this rule to `year-month-day` (may be negative).
    fn day_number(&self, year: i64, month: u32, day: u32) -> Option<i64> {
        let cycles = year.div_euclid(self.years);
        let cycle_start = cycles.checked_mul(self.years)?;
        let mut days = cycles.checked_mul(self.days)?;
        days += (cycle_start..year).map(|y| self.year_length(y)).sum::<i64>();
        days += (1..month).map(|m| i64::from(self.month_length(year, m))).sum::<i64>();
        days.checked_add(i64::from(day) - 1)
    }

    /// The date `day_number` days after 0000-01-01 of this rule.
    fn date_of(&self, day_number: i64) -> Option<(i64, u32, u32)> {
        let mut year = day_number.div_euclid(self.days).checked_mul(self.years)?;
        let mut left = day_number.rem_euclid(self.days);
        while left >= self.year_length(year) {
            left -= self.year_length(year);
            year += 1;
        }
        let mut month = 1;
        while left >= i64::from(self.month_length(year, month)) {
            left -= i64::from(self.month_length(year, month));
            month += 1;
        }
        Some((year, month, left as u32 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shorthand for the function under test.
    fn f(value: f64, units: &str, calendar: Option<&str>) -> Option<String> {
        format_cf_time(value, units, calendar)
    }

    #[test]
    fn zero_days_is_the_reference_date() {
        assert_eq!(f(0.0, "days since 1950-01-01", None).as_deref(), Some("1950-01-01"));
    }

    #[test]
    fn fractional_days_standard() {
        // python3: datetime(1950,1,1) + timedelta(days=23741.5) = 2015-01-01 12:00:00
        let shown = f(23741.5, "days since 1950-01-01", Some("standard"));
        assert_eq!(shown.as_deref(), Some("2015-01-01 12:00"));
    }

    #[test]
    fn day_360_calendar() {
        assert_eq!(f(30.0, "days since 2000-01-01", Some("360_day")).as_deref(), Some("2000-02-01"));
        assert_eq!(f(1.0, "months since 2000-01-01", Some("360_day")).as_deref(), Some("2000-02-01"));
        assert_eq!(f(2.0, "years since 2000-02-30", Some("360_day")).as_deref(), Some("2002-02-30"));
        assert_eq!(f(1.0, "months since 2000-01-01", None), None);
        assert_eq!(f(1.0, "years since 2000-01-01", Some("noleap")), None);
    }

    #[test]
    fn noleap_and_all_leap() {
        assert_eq!(f(59.0, "days since 2001-01-01", Some("noleap")).as_deref(), Some("2001-03-01"));
        assert_eq!(f(365.0, "days since 2000-01-01", Some("noleap")).as_deref(), Some("2001-01-01"));
        assert_eq!(f(365.0, "days since 2000-01-01", Some("365_day")).as_deref(), Some("2001-01-01"));
        assert_eq!(f(59.0, "days since 2001-01-01", Some("all_leap")).as_deref(), Some("2001-02-29"));
        assert_eq!(f(0.0, "days since 2001-02-29", Some("noleap")), None);
    }

    #[test]
    fn hours_minutes_seconds() {
        // python3: datetime(1900,1,1) + timedelta(hours=1009932) = 2015-03-19 12:00:00
        let shown = f(1_009_932.0, "hours since 1900-01-01 00:00:00.0", None);
        assert_eq!(shown.as_deref(), Some("2015-03-19 12:00"));
        assert_eq!(f(0.0, "hours since 2015-01-01", None).as_deref(), Some("2015-01-01 00:00"));
        assert_eq!(f(90.0, "Minutes since 2015-01-01", None).as_deref(), Some("2015-01-01 01:30"));
        // python3: datetime(1970,1,1) + timedelta(seconds=1420070461) = 2015-01-01 00:01:01
        let shown = f(1_420_070_461.0, "seconds since 1970-01-01T00:00:00Z", None);
        assert_eq!(shown.as_deref(), Some("2015-01-01 00:01:01"));
    }

    #[test]
    fn rounds_to_the_nearest_second() {
        let shown = f(0.5 + 0.4 / 86_400.0, "days since 2000-01-01", None);
        assert_eq!(shown.as_deref(), Some("2000-01-01 12:00"));
        let shown = f(0.5 + 0.6 / 86_400.0, "days since 2000-01-01", None);
        assert_eq!(shown.as_deref(), Some("2000-01-01 12:00:01"));
        // 1 day minus a rounding error is midnight of the next day.
        let shown = f(1.0 - 1e-9, "days since 2000-01-01", None);
        assert_eq!(shown.as_deref(), Some("2000-01-02"));
    }

    #[test]
    fn negative_offsets() {
        // python3: datetime(1950,1,1) - timedelta(days=1.25) = 1949-12-30 18:00:00
        assert_eq!(f(-1.25, "days since 1950-01-01", None).as_deref(), Some("1949-12-30 18:00"));
        assert_eq!(f(-1.0, "days since 2001-01-01", Some("noleap")).as_deref(), Some("2000-12-31"));
        assert_eq!(f(-1.0, "days since 2000-03-01", Some("360_day")).as_deref(), Some("2000-02-30"));
    }

    #[test]
    fn reference_spellings() {
        let expect = Some("2015-01-02".to_string());
        for units in [
            "days since 2015-01-01",
            "days since 2015-1-1",
            "days since 2015-1-1 0:0:0",
            "DAYS SINCE 2015-01-01 00:00:00",
            "days since 2015-01-01T00:00:00Z",
            "days since 2015-01-01 00:00:00.0",
            "days since 2015-01-01 00:00:00 UTC",
            "days since 2015-01-01 00:00:00 +00:00",
            "days since 2015-01-01 00:00:00+00:00",
            "days since 2015-01-01 00:00",
            "days since 2015-01-01 UTC",
            "d since 2015-01-01",
        ] {
            assert_eq!(f(1.0, units, None), expect, "{units}");
        }
    }

    #[test]
    fn time_zones_are_applied() {
        // 00:00 at UTC+05:30 is 18:30 UTC the day before.
        let shown = f(0.0, "hours since 2015-01-01 00:00:00 +05:30", None);
        assert_eq!(shown.as_deref(), Some("2014-12-31 18:30"));
        let shown = f(0.0, "hours since 2015-01-01T00:00:00-0300", None);
        assert_eq!(shown.as_deref(), Some("2015-01-01 03:00"));
        assert_eq!(f(0.0, "hours since 2015-01-01 00:00 +5", None).as_deref(), Some("2014-12-31 19:00"));
        assert_eq!(f(0.0, "hours since 2015-01-01 00:00 +25:00", None), None);
    }

    #[test]
    fn julian_and_mixed_calendars() {
        // cftime.num2date(0, 'days since 1582-10-04', 'standard') = 1582-10-04;
        // one day later is the first Gregorian day, 1582-10-15.
        assert_eq!(f(1.0, "days since 1582-10-04", None).as_deref(), Some("1582-10-15"));
        assert_eq!(f(-1.0, "days since 1582-10-15", None).as_deref(), Some("1582-10-04"));
        assert_eq!(f(0.0, "days since 1582-10-10", None), None);
        // 1900 is a leap year only in the Julian calendar.
        assert_eq!(f(59.0, "days since 1900-01-01", Some("julian")).as_deref(), Some("1900-02-29"));
        assert_eq!(f(59.0, "days since 1900-01-01", None).as_deref(), Some("1900-03-01"));
        // Gregorian days before the reform, proleptically.
        let shown = f(-1.0, "days since 1582-10-15", Some("proleptic_gregorian"));
        assert_eq!(shown.as_deref(), Some("1582-10-14"));
    }

    #[test]
    fn garbage_is_refused() {
        for units in [
            "",
            "days",
            "days since",
            "days after 2000-01-01",
            "fortnights since 2000-01-01",
            "days since yesterday",
            "days since 2000-13-01",
            "days since 2000-02-30",
            "days since 2000-01-01 25:00:00",
            "days since 2000-01-01 00:00:00 UTC extra",
            "days since 2000-01-01 00:00:00Z UTC",
            "days since -2000-01-01",
            "days since 2000-01-01-01",
            "days since 0000-01-01",
        ] {
            assert_eq!(f(1.0, units, None), None, "{units:?}");
        }
        assert_eq!(f(1.0, "days since 2000-01-01", Some("martian")), None);
    }

    #[test]
    fn non_finite_and_huge_values_are_refused() {
        let units = "seconds since 1970-01-01";
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300, f64::MAX] {
            assert_eq!(f(value, units, None), None, "{value}");
            assert_eq!(f(value, "years since 0000-01-01", Some("360_day")), None, "{value}");
        }
        // Beyond year 9999 or before year 1.
        assert_eq!(f(1e7, "days since 2000-01-01", None), None);
        assert_eq!(f(-1e6, "days since 2000-01-01", None), None);
        assert_eq!(f(1e13, "seconds since 2000-01-01", Some("julian")), None);
    }

    #[test]
    fn odd_characters_never_panic() {
        for units in ["days since 2000-01-01 00:00 +1\u{e9}1", "d\u{e9} since \u{e9}", "days since 2000-01-01T\u{e9}"] {
            assert_eq!(f(1.0, units, None), None, "{units:?}");
        }
    }

    #[test]
    fn idealised_calendars_have_year_zero() {
        let shown = f(15.0, "days since 0000-01-01", Some("noleap"));
        assert_eq!(shown.as_deref(), Some("0000-01-16"));
        assert_eq!(f(-1.0, "days since 0000-01-01", Some("noleap")), None);
    }

    #[test]
    fn cycle_lengths_match_the_leap_rules() {
        for rule in
            [CycleRule::GREGORIAN, CycleRule::JULIAN, CycleRule::NO_LEAP, CycleRule::ALL_LEAP, CycleRule::DAY_360]
        {
            let by_months: i64 =
                (0..rule.years).flat_map(|y| (1..=12).map(move |m| i64::from(rule.month_length(y, m)))).sum();
            assert_eq!(by_months, rule.days);
            let by_years: i64 = (0..rule.years).map(|y| rule.year_length(y)).sum();
            assert_eq!(by_years, rule.days);
        }
    }

    #[test]
    fn round_trip_every_day_of_every_calendar() {
        for calendar in [
            Calendar::Standard,
            Calendar::ProlepticGregorian,
            Calendar::Julian,
            Calendar::NoLeap,
            Calendar::AllLeap,
            Calendar::Day360,
        ] {
            // Early years, the Gregorian reform, and the years of modern data.
            for first_year in [1, 1560, 1890] {
                let start = calendar.day_number(first_year, 1, 1).unwrap();
                let mut previous = calendar.date_of(start - 1).unwrap();
                for n in start..start + 80 * 366 {
                    let date = calendar.date_of(n).unwrap();
                    assert!(calendar.is_valid_date(date.0, date.1, date.2), "{calendar:?} {date:?}");
                    assert!(date > previous, "{calendar:?} {date:?}");
                    assert_eq!(calendar.day_number(date.0, date.1, date.2), Some(n));
                    previous = date;
                }
            }
        }
    }
}
