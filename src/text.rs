//! Text that came from outside (DICOM values, AE titles, file names) made safe to show. A
//! SeriesDescription or a calling AE title is attacker-controlled: written raw, an ESC sequence
//! retitles the operator's terminal, a newline forges a log line, a BEL or NUL corrupts a report.
//! Every place that prints such text goes through [`printable`].

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1, and the Unicode line and paragraph
/// separators) written as a visible escape (`\x1b`, `\n`, `\u{2028}`), and everything else
/// unchanged. Borrows when there is nothing to escape, which is the common case.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Whether `c` must not reach a terminal, a log line or a report as itself.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            printable("Cine SAX 8mm – Müller^Anna"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn terminal_and_log_controls_become_visible_escapes() {
        assert_eq!(printable("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(printable("x\ny\r\t"), "x\\ny\\r\\t");
        assert_eq!(printable("\u{9b}31m\u{7f}\0"), "\\x9b31m\\x7f\\x00");
        assert_eq!(printable("l\u{2028}m"), "l\\u{2028}m");
    }
}
