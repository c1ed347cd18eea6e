//! Durations ("1m30s", "500ms") and sizes ("10MiB") as written in the config.

use std::time::Duration;

/// Parses a duration such as `"0s"`, `"250ms"`, `"10s"`, `"5m"`, `"1h30m"`, `"2d"`.
///
/// A bare `"0"` is accepted; any other number needs a unit, because a bare
/// `30` could mean seconds or milliseconds and guessing wrong is costly.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("the duration is empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let number: f64 = rest[..digits_end]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..digits_end]))?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "" => return Err(format!("{number} has no unit; write e.g. \"{number}s\"")),
            other => return Err(format!("unknown unit {other:?}; use ms, s, m, h or d")),
        };
        let seconds = number * seconds_per_unit;
        if !seconds.is_finite() || seconds > 10.0 * 365.0 * 86400.0 {
            return Err("the duration is longer than ten years".into());
        }
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

/// Parses a size such as `"10MiB"`, `"512KiB"`, `"1GB"`, `"4096"` (bytes).
///
/// `KiB`, `MiB`, `GiB` (and `K`, `M`, `G`) are powers of 1024; `KB`, `MB`,
/// `GB` are powers of 1000.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    if digits_end == 0 {
        return Err(format!("{raw:?} does not start with a number"));
    }
    let number: f64 = text[..digits_end]
        .parse()
        .map_err(|_| format!("{:?} is not a number", &text[..digits_end]))?;
    let multiplier: f64 = match text[digits_end..].trim() {
        "" | "B" => 1.0,
        "K" | "KiB" | "k" => 1024.0,
        "KB" | "kB" => 1000.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "MB" => 1e6,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown unit {other:?}; use B, KiB, MiB, GiB (or KB, MB, GB)"
            ))
        }
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes > 1e15 {
        return Err("the size is too large".into());
    }
    Ok(bytes as u64)
}

/// Formats a size the way the config writes it: `"1GiB"`, `"64MiB"`,
/// `"1.5KiB"`, `"100B"` (one decimal below 10 of a unit, none above).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = if value >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    format!("{text}{}", UNITS[unit])
}

/// Formats a duration the way the config writes it (`"1m30s"`, `"250ms"`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if seconds > 0 || out.is_empty() {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("0s", 0),
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1500),
            ("2d", 172_800_000),
        ];
        for (raw, millis) in ok {
            assert_eq!(
                parse_duration(raw),
                Ok(Duration::from_millis(millis)),
                "{raw}"
            );
        }
        for bad in ["", "10", "ten s", "5 parsecs", "s", "-1s", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("4096", 4096),
            ("10MiB", 10 * 1024 * 1024),
            ("1MB", 1_000_000),
            ("512KiB", 512 * 1024),
            ("1G", 1 << 30),
        ];
        for (raw, bytes) in ok {
            assert_eq!(parse_size(raw), Ok(bytes), "{raw}");
        }
        for bad in ["", "MiB", "10 parsecs", "1e99"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes_format_as_the_config_writes_them() {
        for (bytes, text) in [
            (100, "100B"),
            (1536, "1.5KiB"),
            (64 << 20, "64MiB"),
            (1 << 30, "1GiB"),
            (1_100_000_000, "1.0GiB"),
        ] {
            assert_eq!(format_size(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for raw in ["0s", "250ms", "10s", "1m30s", "2h", "1d1h1m1s"] {
            let parsed = parse_duration(raw).expect("valid");
            assert_eq!(format_duration(parsed), raw);
        }
    }
}
