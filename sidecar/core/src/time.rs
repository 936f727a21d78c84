//! Instants and lease lengths. Instants are milliseconds since the Unix epoch, passed in by the caller.

use std::time::Duration;

/// The shortest lease a claim may take.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest lease a claim may take (30 days).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// An instant, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `d` after this one, saturating instead of overflowing.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// How long from `now` until this instant; zero if it has passed.
    pub fn remaining(self, now: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(now.0))
    }

    /// How long ago `earlier` was, as of `self` (zero if it is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Parses a lease length such as `90s`, `5m`, `2h` or `1d` and checks it lies within [`MIN_TTL`]..=[`MAX_TTL`].
///
/// A bare number is taken as seconds. The error says what was expected, ready to show to a user.
pub fn parse_ttl(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let usage = "expected a number with a unit (s, m, h or d), such as 90s, 5m, 1h30m or 1d";
    if text.is_empty() {
        return Err(format!("invalid ttl {input:?}: {usage}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, after) = rest.split_at(split);
        let value: u64 = digits.parse().map_err(|_| format!("invalid ttl {input:?}: {usage}"))?;
        let Some(unit) = after.chars().next() else {
            return Err(format!(
                "invalid ttl {input:?}: {value} needs a unit: {value}s, {value}m, {value}h or {value}d"
            ));
        };
        let seconds_per_unit = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("invalid ttl {input:?}: the unit must be s, m, h or d")),
        };
        total = total.saturating_add(value.saturating_mul(seconds_per_unit));
        rest = &after[unit.len_utf8()..];
    }
    let ttl = Duration::from_secs(total);
    check_ttl(ttl).map_err(|bounds| format!("invalid ttl {input:?}: {bounds}"))
}

/// Checks that a lease length lies within the allowed bounds.
pub(crate) fn check_ttl(ttl: Duration) -> Result<Duration, String> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err("a lease must last between 1s and 30d".to_owned());
    }
    Ok(ttl)
}

/// A short human rendering of a duration: `45s`, `29m`, `2h5m`, `3d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 if s % 3600 >= 60 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_enforces_bounds() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("30d"), Ok(MAX_TTL));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("1d2h3m4s"), Ok(Duration::from_secs(93_784)));
        assert!(parse_ttl("45").expect_err("a bare number is refused").contains("45s"), "the refusal names the units");
        assert!(parse_ttl("1h30").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("31d").is_err());
        assert!(parse_ttl("5w").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("-5s").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
