//! Sigma string values compiled into matchers: `*` and `?` wildcards, `\` escapes, and the
//! `contains` / `startswith` / `endswith` modifiers (which only add wildcards around the value).
//!
//! Literals are lower-cased once at load. A record's text is compared byte-wise with ASCII
//! case folding when it is ASCII (every CloudTrail field we have seen is), so that path never
//! allocates; non-ASCII text is lower-cased once per comparison.

/// One piece of a compiled value.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters, including none.
    Any,
}

/// Which wildcards a modifier adds around the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Whole,
    Contains,
    StartsWith,
    EndsWith,
}

/// The common shapes get their own variant so that most comparisons are one `eq`,
/// `starts_with`, `ends_with` or substring search.
#[derive(Debug, Clone)]
enum Shape {
    /// `*` alone: any text at all.
    AnyText,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Anything else: the segments between `*`s (each a run of literals and `?`), whether the
    /// value starts with `*`, and whether it ends with `*`.
    Glob {
        segments: Vec<Vec<Token>>,
        open_start: bool,
        open_end: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct StrPattern {
    shape: Shape,
    cased: bool,
}

/// How literals are compared with the text.
#[derive(Clone, Copy)]
enum Fold {
    /// Byte for byte (cased, or text already lower-cased).
    Exact,
    /// ASCII text against a lower-cased literal.
    Ascii,
}

impl Fold {
    fn starts_with(self, text: &str, literal: &str) -> bool {
        match self {
            Fold::Exact => text.starts_with(literal),
            Fold::Ascii => {
                text.len() >= literal.len() && text.as_bytes()[..literal.len()].eq_ignore_ascii_case(literal.as_bytes())
            }
        }
    }

    fn ends_with(self, text: &str, literal: &str) -> bool {
        match self {
            Fold::Exact => text.ends_with(literal),
            Fold::Ascii => {
                text.len() >= literal.len()
                    && text.as_bytes()[text.len() - literal.len()..].eq_ignore_ascii_case(literal.as_bytes())
            }
        }
    }

    fn equals(self, text: &str, literal: &str) -> bool {
        text.len() == literal.len() && self.starts_with(text, literal)
    }

    /// Byte offset of the first occurrence of `literal` in `text` at or after `from`.
    fn find(self, text: &str, literal: &str, from: usize) -> Option<usize> {
        match self {
            Fold::Exact => text.get(from..)?.find(literal).map(|at| at + from),
            Fold::Ascii => {
                let bytes = text.as_bytes();
                let needle = literal.as_bytes();
                if needle.is_empty() {
                    return Some(from);
                }
                if bytes.len() < needle.len() {
                    return None;
                }
                (from..=bytes.len() - needle.len())
                    .find(|&at| bytes[at..at + needle.len()].eq_ignore_ascii_case(needle))
            }
        }
    }
}

/// Splits a Sigma string into tokens. `\*`, `\?` and `\\` are the literal characters; a
/// backslash before anything else is itself (the specification's rule, so Windows paths such as
/// `C:\Windows` need no doubling).
fn tokenize(value: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    literal.push(next);
                    chars.next();
                }
                _ => literal.push('\\'),
            },
            '*' | '?' => {
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(if c == '*' { Token::Any } else { Token::One });
            }
            _ => literal.push(c),
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    tokens
}

impl StrPattern {
    /// Compiles a rule's string value with the anchoring its modifiers ask for.
    pub(crate) fn new(value: &str, anchor: Anchor, cased: bool) -> StrPattern {
        let mut tokens = Vec::new();
        if matches!(anchor, Anchor::Contains | Anchor::EndsWith) {
            tokens.push(Token::Any);
        }
        for token in tokenize(value) {
            match token {
                Token::Literal(text) if !cased => tokens.push(Token::Literal(text.to_lowercase())),
                // `**` is `*`.
                Token::Any if tokens.last() == Some(&Token::Any) => {}
                other => tokens.push(other),
            }
        }
        if matches!(anchor, Anchor::Contains | Anchor::StartsWith) && tokens.last() != Some(&Token::Any) {
            tokens.push(Token::Any);
        }
        StrPattern { shape: shape_of(tokens), cased }
    }

    /// Whether the pattern accepts every text (the value was `*`, or `|contains: '*'`).
    #[cfg(test)]
    pub(crate) fn accepts_anything(&self) -> bool {
        matches!(self.shape, Shape::AnyText)
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        if matches!(self.shape, Shape::AnyText) {
            return true;
        }
        if self.cased {
            self.matches_folded(text, Fold::Exact)
        } else if text.is_ascii() {
            self.matches_folded(text, Fold::Ascii)
        } else {
            self.matches_folded(&text.to_lowercase(), Fold::Exact)
        }
    }

    fn matches_folded(&self, text: &str, fold: Fold) -> bool {
        match &self.shape {
            Shape::AnyText => true,
            Shape::Exact(literal) => fold.equals(text, literal),
            Shape::Prefix(literal) => fold.starts_with(text, literal),
            Shape::Suffix(literal) => fold.ends_with(text, literal),
            Shape::Contains(literal) => fold.find(text, literal, 0).is_some(),
            Shape::Glob { segments, open_start, open_end } => glob(segments, *open_start, *open_end, text, fold),
        }
    }
}

fn shape_of(tokens: Vec<Token>) -> Shape {
    match tokens.as_slice() {
        [] => return Shape::Exact(String::new()),
        [Token::Any] => return Shape::AnyText,
        [Token::Literal(l)] => return Shape::Exact(l.clone()),
        [Token::Literal(l), Token::Any] => return Shape::Prefix(l.clone()),
        [Token::Any, Token::Literal(l)] => return Shape::Suffix(l.clone()),
        [Token::Any, Token::Literal(l), Token::Any] => return Shape::Contains(l.clone()),
        _ => {}
    }
    let open_start = tokens.first() == Some(&Token::Any);
    let open_end = tokens.last() == Some(&Token::Any);
    let segments =
        tokens.split(|token| *token == Token::Any).filter(|s| !s.is_empty()).map(<[Token]>::to_vec).collect();
    Shape::Glob { segments, open_start, open_end }
}

/// Where a segment (literals and `?`) ends if it matches `text` at `at`.
fn segment_at(segment: &[Token], text: &str, mut at: usize, fold: Fold) -> Option<usize> {
    for token in segment {
        let rest = text.get(at..)?;
        match token {
            Token::Literal(literal) => {
                if !fold.starts_with(rest, literal) {
                    return None;
                }
                at += literal.len();
            }
            Token::One => at += rest.chars().next()?.len_utf8(),
            Token::Any => return None,
        }
    }
    Some(at)
}

/// Glob matching without backtracking: the first segment is pinned to the start unless the value
/// opens with `*`, the last to the end unless it closes with `*`, and every segment in between
/// takes its leftmost match (which never loses a match the later segments could use).
fn glob(segments: &[Vec<Token>], open_start: bool, open_end: bool, text: &str, fold: Fold) -> bool {
    let Some((last, middle_and_first)) = segments.split_last() else {
        return open_start || open_end || text.is_empty();
    };
    let mut at = 0;
    let mut middle = middle_and_first;
    if !open_start {
        // With a single segment and no `*` at all the value is an exact glob.
        let first = if segments.len() == 1 { last } else { &middle_and_first[0] };
        match segment_at(first, text, 0, fold) {
            Some(end) => at = end,
            None => return false,
        }
        if segments.len() == 1 {
            return open_end || at == text.len();
        }
        middle = &middle_and_first[1..];
    }
    for segment in middle {
        match leftmost(segment, text, at, fold) {
            Some(end) => at = end,
            None => return false,
        }
    }
    if open_end {
        return leftmost(last, text, at, fold).is_some();
    }
    // The last segment must end exactly at the end: try the starts from the right.
    let mut start = text.len();
    loop {
        if start >= at && text.is_char_boundary(start) && segment_at(last, text, start, fold) == Some(text.len()) {
            return true;
        }
        if start <= at {
            return false;
        }
        start -= 1;
    }
}

fn leftmost(segment: &[Token], text: &str, from: usize, fold: Fold) -> Option<usize> {
    (from..=text.len()).filter(|&at| text.is_char_boundary(at)).find_map(|at| segment_at(segment, text, at, fold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(value: &str) -> StrPattern {
        StrPattern::new(value, Anchor::Whole, false)
    }

    #[test]
    fn plain_values_match_the_whole_text_case_insensitively() {
        assert!(whole("ConsoleLogin").matches("consolelogin"));
        assert!(whole("ConsoleLogin").matches("CONSOLELOGIN"));
        assert!(!whole("ConsoleLogin").matches("ConsoleLogins"));
        assert!(!whole("ConsoleLogin").matches("xConsoleLogin"));
        assert!(whole("").matches(""));
        assert!(!whole("").matches("a"));
    }

    #[test]
    fn wildcards_star_and_question_mark() {
        assert!(whole("Put*Policy").matches("PutUserPolicy"));
        assert!(whole("Put*Policy").matches("PutPolicy"));
        assert!(!whole("Put*Policy").matches("PutUserPolicyX"));
        assert!(whole("Get?bject").matches("GetObject"));
        assert!(!whole("Get?bject").matches("Getbject"));
        assert!(whole("a*b*c").matches("a-b-b-c"));
        assert!(whole("*b*c").matches("xxbyyc"));
        assert!(!whole("*b*c").matches("xxbyycd"));
        assert!(whole("a?c*").matches("abcdef"));
        assert!(whole("*a?c").matches("zzabc"));
        assert!(whole("??").matches("é!"));
        assert!(!whole("??").matches("é"));
        assert!(whole("*").accepts_anything());
        assert!(whole("**").accepts_anything());
    }

    #[test]
    fn escapes() {
        assert!(whole(r"a\*b").matches("a*b"));
        assert!(!whole(r"a\*b").matches("axxb"));
        assert!(whole(r"a\?").matches("a?"));
        assert!(!whole(r"a\?").matches("ab"));
        assert!(whole(r"C:\Windows").matches(r"c:\windows"));
        assert!(whole(r"a\\").matches(r"a\"));
        // `\\*`: a literal backslash, then a wildcard.
        assert!(whole(r"a\\*").matches(r"a\anything"));
    }

    #[test]
    fn anchoring_modifiers_add_wildcards_around_the_value() {
        let contains = StrPattern::new("S3 Browser", Anchor::Contains, false);
        assert!(contains.matches("s3 browser 9.5.5 https://s3browser.com"));
        assert!(!contains.matches("S3Browser"));
        let starts = StrPattern::new("UpdateFunctionConfiguration", Anchor::StartsWith, false);
        assert!(starts.matches("UpdateFunctionConfiguration20150331v2"));
        assert!(!starts.matches("xUpdateFunctionConfiguration"));
        let ends = StrPattern::new(".amazonaws.com", Anchor::EndsWith, false);
        assert!(ends.matches("s3.AMAZONAWS.com"));
        assert!(!ends.matches("s3.amazonaws.com.evil"));
        // Wildcards inside the value still work under a modifier.
        assert!(StrPattern::new("a*c", Anchor::Contains, false).matches("xxabbbcxx"));
        assert!(StrPattern::new("*", Anchor::Contains, false).accepts_anything());
    }

    #[test]
    fn cased_compares_exactly_and_non_ascii_text_is_lowercased() {
        let cased = StrPattern::new("Success", Anchor::Whole, true);
        assert!(cased.matches("Success"));
        assert!(!cased.matches("success"));
        assert!(whole("ÉTÉ").matches("été"));
        assert!(StrPattern::new("té", Anchor::Contains, false).matches("ÉTÉ"));
    }
}
