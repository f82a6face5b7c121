//! The `condition` language: `and`, `or`, `not`, parentheses, `1 of X` / `all of X` (with `*`
//! wildcards in X, or `them`), precedence `not` > `and` > `or`. Identifiers are resolved to the
//! indices of the search identifiers at load, so evaluation never looks a name up.

use crate::pattern::{Anchor, StrPattern};

/// Deeper nesting (parentheses or chained `not`) is refused: the parser and the evaluator
/// recurse once per level, and no real rule comes near this.
pub(crate) const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// `1 of`: any of these searches.
    AnyOf(Vec<usize>),
    /// `all of`: every one of these searches.
    AllOf(Vec<usize>),
}

impl Expr {
    pub(crate) fn eval(&self, search: &dyn Fn(usize) -> bool) -> bool {
        match self {
            Expr::Search(index) => search(*index),
            Expr::Not(inner) => !inner.eval(search),
            Expr::And(parts) => parts.iter().all(|part| part.eval(search)),
            Expr::Or(parts) => parts.iter().any(|part| part.eval(search)),
            Expr::AnyOf(indices) => indices.iter().any(|&index| search(index)),
            Expr::AllOf(indices) => indices.iter().all(|&index| search(index)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    And,
    Or,
    Not,
    Open,
    Close,
    One,
    All,
    Of,
    Them,
    Name(String),
}

fn tokenize(condition: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = condition.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            tokens.push(if c == '(' { Token::Open } else { Token::Close });
            chars.next();
        } else if c == '|' {
            return Err("aggregation (`| count() ...` and similar) is not part of the current Sigma specification; \
                        use a correlation rule (not supported here either)"
                .to_owned());
        } else if c.is_alphanumeric() || matches!(c, '_' | '*' | '?' | '-' | '.') {
            let mut end = start;
            while let Some(&(at, c)) = chars.peek() {
                if c.is_alphanumeric() || matches!(c, '_' | '*' | '?' | '-' | '.') {
                    end = at + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &condition[start..end];
            tokens.push(match word.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                "1" => Token::One,
                "all" => Token::All,
                "of" => Token::Of,
                "them" => Token::Them,
                "near" => return Err("`near` (temporal proximity) is not supported".to_owned()),
                _ => Token::Name(word.to_owned()),
            });
        } else {
            return Err(format!("unexpected character {c:?} in the condition"));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    identifiers: &'a [String],
}

/// Parses a condition against the rule's search identifiers (in their order in the rule).
pub(crate) fn parse(condition: &str, identifiers: &[String]) -> Result<Expr, String> {
    let tokens = tokenize(condition)?;
    if tokens.is_empty() {
        return Err("the condition is empty".to_owned());
    }
    let mut parser = Parser { tokens, at: 0, identifiers };
    let expr = parser.or(0)?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(token) => Err(format!("unexpected {} in the condition", describe(token))),
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::And => "`and`".to_owned(),
        Token::Or => "`or`".to_owned(),
        Token::Not => "`not`".to_owned(),
        Token::Open => "`(`".to_owned(),
        Token::Close => "`)`".to_owned(),
        Token::One => "`1`".to_owned(),
        Token::All => "`all`".to_owned(),
        Token::Of => "`of`".to_owned(),
        Token::Them => "`them`".to_owned(),
        Token::Name(name) => format!("`{name}`"),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        let mut parts = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut parts = vec![self.unary(depth)?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            parts.push(self.unary(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the condition is nested deeper than {MAX_DEPTH} levels"));
        }
        match self.next() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary(depth + 1)?))),
            Some(Token::Open) => {
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("a `(` in the condition is not closed".to_owned()),
                }
            }
            Some(quantifier @ (Token::One | Token::All)) => {
                if self.next() != Some(Token::Of) {
                    return Err(format!("{} must be followed by `of`", describe(&quantifier)));
                }
                let indices = match self.next() {
                    // `them` leaves out identifiers starting with `_`, as pySigma does: they are
                    // helpers meant to be referenced by name.
                    Some(Token::Them) => {
                        (0..self.identifiers.len()).filter(|&i| !self.identifiers[i].starts_with('_')).collect()
                    }
                    Some(Token::Name(pattern)) => self.matching(&pattern)?,
                    Some(other) => {
                        return Err(format!(
                            "`of` must be followed by a name pattern or `them`, not {}",
                            describe(&other)
                        ));
                    }
                    None => return Err("the condition ends after `of`".to_owned()),
                };
                if indices.is_empty() {
                    return Err("`of them` with no search identifier".to_owned());
                }
                Ok(if quantifier == Token::One { Expr::AnyOf(indices) } else { Expr::AllOf(indices) })
            }
            Some(Token::Name(name)) => match self.identifiers.iter().position(|known| *known == name) {
                Some(index) => Ok(Expr::Search(index)),
                None => Err(format!("the condition names `{name}`, which is not a search identifier")),
            },
            Some(other) => Err(format!("unexpected {} in the condition", describe(&other))),
            None => Err("the condition ends too early".to_owned()),
        }
    }

    fn matching(&self, pattern: &str) -> Result<Vec<usize>, String> {
        // Identifier names are compared case-sensitively, like the names themselves.
        let glob = StrPattern::new(pattern, Anchor::Whole, true);
        let indices: Vec<usize> = (0..self.identifiers.len()).filter(|&i| glob.matches(&self.identifiers[i])).collect();
        if indices.is_empty() {
            return Err(format!("`{pattern}` matches no search identifier"));
        }
        Ok(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Evaluates `condition` with the searches whose names are in `true_ones` holding.
    fn eval(condition: &str, all: &[&str], true_ones: &[&str]) -> bool {
        let identifiers = names(all);
        let expr = parse(condition, &identifiers).expect("parses");
        expr.eval(&|index| true_ones.contains(&identifiers[index].as_str()))
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let ids = ["a", "b", "c"];
        // a or (b and c)
        assert!(eval("a or b and c", &ids, &["a"]));
        assert!(!eval("a or b and c", &ids, &["b"]));
        // (not a) and b
        assert!(eval("not a and b", &ids, &["b"]));
        assert!(!eval("not a and b", &ids, &["a", "b"]));
        assert!(eval("not (a and b)", &ids, &["a"]));
        assert!(!eval("(a or b) and c", &ids, &["a"]));
        assert!(eval("(a or b) and c", &ids, &["a", "c"]));
        assert!(eval("not not a", &ids, &["a"]));
        assert!(eval("A AND b", &["A", "b"], &["A", "b"]));
    }

    #[test]
    fn quantifiers() {
        let ids = ["selection_a", "selection_b", "filter", "_helper"];
        assert!(eval("1 of selection_*", &ids, &["selection_b"]));
        assert!(!eval("all of selection_*", &ids, &["selection_b"]));
        assert!(eval("all of selection_*", &ids, &["selection_a", "selection_b"]));
        assert!(eval("1 of them", &ids, &["filter"]));
        assert!(!eval("1 of them", &ids, &["_helper"]));
        assert!(!eval("all of them", &ids, &["selection_a", "selection_b"]));
        assert!(eval("all of them", &ids, &["selection_a", "selection_b", "filter"]));
        assert!(eval("selection_a and not 1 of filter*", &ids, &["selection_a"]));
        assert!(eval("1 of selection_? ", &["selection_a", "selection_bb"], &["selection_a"]));
        assert!(!eval("1 of selection_? ", &["selection_a", "selection_bb"], &["selection_bb"]));
    }

    #[test]
    fn refusals_name_the_problem() {
        let ids = names(&["selection", "filter"]);
        let refuse = |condition: &str| parse(condition, &ids).expect_err(condition);
        assert!(refuse("selection | count() > 5").contains("aggregation"));
        assert!(refuse("selection | near filter").contains("aggregation"));
        assert!(refuse("selection near filter").contains("near"));
        assert!(refuse("selection and other").contains("`other`"));
        assert!(refuse("1 of nothing*").contains("matches no search identifier"));
        assert!(refuse("(selection").contains("not closed"));
        assert!(refuse("selection)").contains("unexpected `)`"));
        assert!(refuse("selection and").contains("ends too early"));
        assert!(refuse("").contains("empty"));
        assert!(refuse("2 of selection").contains("`2`"));
        assert!(refuse("selection filter").contains("unexpected `filter`"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let ids = names(&["a"]);
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep, &ids).expect_err("too deep").contains("nested deeper"));
        let nots = format!("{}a", "not ".repeat(10_000));
        assert!(parse(&nots, &ids).expect_err("too deep").contains("nested deeper"));
        let fine = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&fine, &ids).is_ok());
        // Long flat chains are not nesting.
        let chain = vec!["a"; 10_000].join(" and ");
        assert!(parse(&chain, &ids).is_ok());
    }
}
