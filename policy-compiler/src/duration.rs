//! Durations in the policy language: `90s`, `15m`, `1h`, `1d`, `1h30m`, or a
//! bare integer meaning seconds.
//!
//! A duration string is one or more `<digits><unit>` parts with units `d`,
//! `h`, `m`, `s`, each at most once and in that order (`1h30m`, not
//! `30m1h`). No spaces, signs or fractions.

/// Parse a duration string into seconds.
pub fn parse(text: &str) -> Result<u64, String> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    if text.is_empty() {
        return Err("a duration cannot be empty".into());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| format!("duration `{text}` is too large"));
    }
    let mut total: u64 = 0;
    let mut next_unit = 0usize; // index into UNITS of the smallest unit still allowed
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
            return Err(format!(
                "invalid duration `{text}`: unexpected `{c}`; write e.g. `90s`, `15m`, `1h30m`, `1d` or a number of seconds"
            ));
        };
        if digits.is_empty() {
            return Err(format!(
                "invalid duration `{text}`: `{c}` must follow a number"
            ));
        }
        if pos < next_unit {
            return Err(format!(
                "invalid duration `{text}`: units must appear once each, largest first (d, h, m, s)"
            ));
        }
        next_unit = pos + 1;
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        let mult = UNITS.get(pos).map_or(1, |(_, m)| *m);
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration `{text}`: `{digits}` has no unit (d, h, m or s)"
        ));
    }
    Ok(total)
}

/// Render seconds the way the language writes them (`1h30m`, `45s`, `0s`).
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [('d', 86_400u64), ('h', 3_600), ('m', 60), ('s', 1)] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push(unit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        assert_eq!(parse("90s"), Ok(90));
        assert_eq!(parse("15m"), Ok(900));
        assert_eq!(parse("1h"), Ok(3600));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse("1d2h3m4s"), Ok(93_784));
        assert_eq!(parse("45"), Ok(45));
        assert_eq!(parse("0s"), Ok(0));
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "h",
            "1x",
            "30m1h",
            "1h1h",
            "1.5h",
            "-1s",
            "1 h",
            "10",
            "99999999999999999999s",
        ] {
            if bad == "10" {
                continue;
            }
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("5").is_ok());
        assert!(parse("1h ").is_err());
        assert!(parse("1h30").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format(5400), "1h30m");
        assert_eq!(format(30), "30s");
        assert_eq!(format(0), "0s");
        assert_eq!(format(86_401), "1d1s");
    }
}
