//! The overnight window in local wall-clock time, as a site states it ("01:00-05:00").

use std::fmt;
use std::str::FromStr;

/// A daily time window in minutes after local midnight; `start > end` wraps past midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

const DAY: u32 = 24 * 60;

impl FromStr for Window {
    type Err = String;
    /// Parses `HH:MM-HH:MM` (end `24:00` allowed).
    fn from_str(s: &str) -> Result<Self, String> {
        let minutes = |t: &str| -> Result<u32, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{t:?} is not HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("{t:?}: bad hour"))?,
                m.parse().map_err(|_| format!("{t:?}: bad minute"))?,
            );
            if m >= 60 || h * 60 + m > DAY {
                return Err(format!("{t:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected HH:MM-HH:MM"))?;
        let w = Window {
            start: minutes(a)?,
            end: minutes(b)?,
        };
        if w.start == w.end || w.start == DAY {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(w)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl Window {
    /// Whether minute-of-day `m` lies inside.
    pub fn contains(&self, m: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }

    /// Minutes from `m` (inside the window) until it closes.
    pub fn minutes_left(&self, m: u32) -> u32 {
        if m < self.end {
            self.end - m
        } else {
            DAY - m + self.end
        }
    }
}

/// Local date (`YYYY-MM-DD`) and minute of day now, from the system's time zone.
pub fn local_now() -> (String, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack frame; it is the
    // thread-safe variant.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        let days = secs / 86_400;
        return (format!("day-{days}"), ((secs % 86_400) / 60) as u32);
    }
    (
        format!(
            "{:04}-{:02}-{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday
        ),
        (tm.tm_hour * 60 + tm.tm_min) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_wrap_midnight() {
        let w: Window = "23:30-02:00".parse().unwrap();
        assert!(
            w.contains(23 * 60 + 45)
                && w.contains(60)
                && !w.contains(2 * 60)
                && !w.contains(12 * 60)
        );
        assert_eq!(w.minutes_left(23 * 60 + 30), 150);
        let day: Window = "00:00-24:00".parse().unwrap();
        assert!(day.contains(0) && day.contains(DAY - 1));
        let night: Window = "01:00-05:00".parse().unwrap();
        assert_eq!(night.minutes_left(4 * 60), 60);
        assert_eq!(night.to_string(), "01:00-05:00");
        for bad in ["1-5", "01:00-01:00", "25:00-01:00", "01:70-02:00", "01:00"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn local_time_is_a_date_and_a_minute() {
        let (day, m) = local_now();
        assert_eq!(day.len(), 10, "{day}");
        assert!(m < DAY);
    }
}
