//! AMQP topic matching: a routing key and a binding pattern are words split on `.` (the
//! empty key has no words, `"a..b"` has three, the middle one empty); in the pattern `*`
//! stands for exactly one word and `#` for zero or more.
//!
//! Matching walks both strings by byte position without allocating, the way a glob with
//! `?` and `*` is matched: greedy, going back to the last `#` on a mismatch and letting it
//! take one more word. That is O(words of the pattern x words of the key) at worst.

/// Whether `key` matches `pattern`.
pub(crate) fn matches(pattern: &str, key: &str) -> bool {
    let (pattern_end, key_end) = (end(pattern), end(key));
    let (mut p, mut k) = (0, 0);
    // After a `#`: the pattern position after it, and the key position it takes up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern_end {
            let (want, p_next) = word(pattern, p);
            if want == "#" {
                star = Some((p_next, k));
                p = p_next;
                continue;
            }
            if k < key_end {
                let (have, k_next) = word(key, k);
                if want == "*" || want == have {
                    p = p_next;
                    k = k_next;
                    continue;
                }
            }
        } else if k >= key_end {
            return true;
        }
        match star {
            Some((after, taken)) if taken < key_end => {
                let (_, next) = word(key, taken);
                star = Some((after, next));
                p = after;
                k = next;
            }
            _ => return false,
        }
    }
}

/// The position past the last word of `s`: words start at 0 and after each `.`; the empty
/// string has none.
fn end(s: &str) -> usize {
    if s.is_empty() { 0 } else { s.len() + 1 }
}

/// The word of `s` starting at byte `pos` (a word start before [`end`]), and where the next
/// one starts.
fn word(s: &str, pos: usize) -> (&str, usize) {
    let rest = s.get(pos..).unwrap_or_default();
    let len = rest.find('.').unwrap_or(rest.len());
    (rest.get(..len).unwrap_or_default(), pos + len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        for key in yes {
            assert!(matches(pattern, key), "{pattern:?} should match {key:?}");
        }
        for key in no {
            assert!(
                !matches(pattern, key),
                "{pattern:?} should not match {key:?}"
            );
        }
    }

    /// The examples of RabbitMQ's topic tutorial.
    #[test]
    fn rabbitmq_tutorial_examples() {
        check(
            "*.orange.*",
            &[
                "quick.orange.rabbit",
                "lazy.orange.elephant",
                "quick.orange.fox",
            ],
            &[
                "lazy.brown.fox",
                "orange",
                "quick.orange.male.rabbit",
                "quick.orange",
            ],
        );
        check(
            "*.*.rabbit",
            &["quick.orange.rabbit", "lazy.pink.rabbit"],
            &["quick.brown.fox", "rabbit", "quick.rabbit", "a.b.c.rabbit"],
        );
        check(
            "lazy.#",
            &[
                "lazy",
                "lazy.orange.elephant",
                "lazy.brown.fox",
                "lazy.pink.rabbit",
                "lazy.orange.new.rabbit",
                "lazy.",
            ],
            &["quick.brown.fox", "lazy-ish", "lazyx.a", "quick.lazy"],
        );
    }

    #[test]
    fn hash_alone_matches_everything_including_the_empty_key() {
        check("#", &["", "a", "a.b.c", ".", "..", "a..b"], &[]);
        check("#.#", &["", "a", "a.b"], &[]);
    }

    #[test]
    fn hash_in_the_middle_takes_zero_or_more_words() {
        check(
            "a.#.b",
            &["a.b", "a.x.b", "a.x.y.b", "a.b.b", "a..b", "a.b.x.b"],
            &["a", "b", "a.b.x", "x.a.b", "ab"],
        );
        check("#.b", &["b", "a.b", "a.b.b", ".b"], &["", "b.a", "ab"]);
        check("a.#.#.b", &["a.b", "a.x.b"], &["a"]);
        check("#.a.#", &["a", "x.a.y", "a.a"], &["", "x.y"]);
    }

    #[test]
    fn star_takes_exactly_one_word_and_words_may_be_empty() {
        // "" has no words, "." has two empty ones.
        check("*", &["a"], &["", "a.b", "."]);
        check("*.*", &[".", "a.b", "a."], &["a", "a.b.c"]);
        check("a..b", &["a..b"], &["a.b", "a.x.b"]);
        check("a.*.b", &["a..b", "a.x.b"], &["a.b"]);
        check("", &[""], &["a", ".", "#"]);
        check(".", &["."], &["", "a"]);
        check("a.", &["a."], &["a", "a.b"]);
    }

    #[test]
    fn literal_words_match_only_themselves() {
        check(
            "stock.usd.nyse",
            &["stock.usd.nyse"],
            &["stock.usd", "stock.usd.nyse.x", "stock.eur.nyse"],
        );
        // A key word that looks like a wildcard is just a word.
        check("a.b", &[], &["a.*", "a.#"]);
        check("a.*", &["a.*", "a.#"], &[]);
    }

    #[test]
    fn many_hashes_stay_fast() {
        let pattern = "#.a.#.a.#.a.#.a.#.a.#.b";
        let key = vec!["a"; 200].join(".");
        assert!(!matches(pattern, &key));
        assert!(matches(pattern, &format!("{key}.b")));
    }
}
