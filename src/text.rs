//! Text helpers for messages: a value quoted in an error is cut to a readable length.

/// `s` cut to at most `max` characters (on a character boundary), with how much was left out.
pub fn shorten(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… ({} more characters)", total - max)
}

/// A value's `Debug` form, cut to a readable length (for replies quoted in errors).
pub fn debug_short(v: &impl std::fmt::Debug) -> String {
    shorten(&format!("{v:?}"), 200)
}

/// `message` with every quoted value in it ("…" or `…`) cut to `max` characters, so a long bad
/// value does not bury the words around it (what was expected, the fix).
pub fn shorten_quoted(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len().min(4 * max + 200));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                out.push_str(&shorten(&after[..close], max));
                out.push(quote);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&shorten(after, max));
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_say_so() {
        assert_eq!(shorten("abc", 3), "abc");
        let long = "é".repeat(5000);
        let short = shorten(&long, 10);
        assert!(short.starts_with(&"é".repeat(10)));
        assert!(short.ends_with("(4990 more characters)"), "{short}");
        assert!(debug_short(&vec![7u8; 4000]).chars().count() < 260);
    }

    #[test]
    fn quoted_values_are_cut_and_the_words_around_them_kept() {
        let bad = "x".repeat(5000);
        let m = format!("invalid value: string \"{bad}\", expected a number or \"max\"");
        let short = shorten_quoted(&m, 40);
        assert!(short.len() < 150, "{short}");
        assert!(short.ends_with(", expected a number or \"max\""), "{short}");
        assert!(short.contains("(4960 more characters)"));
        assert_eq!(
            shorten_quoted("unknown field `ratee`", 40),
            "unknown field `ratee`"
        );
    }
}
