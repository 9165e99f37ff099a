//! Numbers for people: counts with their noun, sizes, rates and durations,
//! as reports, logs and progress bars print them.

use std::time::Duration;

/// `n` with its thousands separated: `1,398`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count and its noun, singular for one: `1 item`, `3,200 items`,
/// `1 entry`, `2 entries`.
pub fn count(n: usize, noun: &str) -> String {
    let noun = match (n, noun.strip_suffix('y')) {
        (1, _) => noun.to_string(),
        (_, Some(stem)) => format!("{stem}ies"),
        _ => format!("{noun}s"),
    };
    format!("{} {noun}", thousands(n as u64))
}

/// A number for people: whole from 10 up (`15`, `1,398`), one decimal
/// below (`4.7`).
fn amount(x: f64) -> String {
    if x >= 9.95 {
        thousands(x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

/// A size in binary units: `512 B`, `4.7 MiB`, `15 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && n >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{} B", thousands(n));
    }
    format!("{} {}", amount(n as f64 / (1u64 << (10 * unit)) as f64), UNITS[unit])
}

/// Items per second: `1,398 items/s`.
pub fn items_per_second(rate: f64) -> String {
    format!("{} items/s", amount(rate))
}

/// Bytes per second: `15 MiB/s`.
pub fn bytes_per_second(rate: f64) -> String {
    format!("{}/s", bytes(rate as u64))
}

/// A duration for people, to the second: `45 s`, `3 min 20 s`, `2 h 5 min`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
