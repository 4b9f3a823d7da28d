//! The reader: source bytes to tokens, and the C `strtol(tok, base 0)` rule for ints.
//!
//! Tokens are turned into heap conses by [`crate::Interp`] inside a transaction; reading is
//! iterative, so no nesting depth can overflow the stack.

use std::sync::Arc;

use crate::{Error, Location};

/// One token of the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// `(`
    Open,
    /// `)`
    Close,
    /// An integer token (already wrapped to 32 bits).
    Int(i32),
    /// Any other token: a symbol name (raw bytes).
    Sym(Vec<u8>),
}

/// C's `isspace` in the "C" locale.
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Where a token starts: line and column (bytes), from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

/// Splits `src` into tokens with their positions and checks that the parentheses balance;
/// `file` names the source in errors, whose first line is `first_line`.
pub fn tokenize(src: &[u8], file: &Arc<str>, first_line: u32) -> Result<Vec<(Token, Pos)>, Error> {
    let mut out = Vec::new();
    let mut open: Vec<Pos> = Vec::new();
    let mut i = 0;
    let mut line = first_line;
    let mut line_start = 0;
    let at = |p: Pos| {
        Some(Location {
            file: file.clone(),
            line: p.line,
            col: p.col,
        })
    };
    while i < src.len() {
        let c = src[i];
        let pos = Pos {
            line,
            col: (i - line_start + 1) as u32,
        };
        match c {
            b'(' => {
                open.push(pos);
                out.push((Token::Open, pos));
                i += 1;
            }
            b')' => {
                if open.pop().is_none() {
                    return Err(Error::new("more ')' than '('").at(|| at(pos)));
                }
                out.push((Token::Close, pos));
                i += 1;
            }
            b';' => {
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
            }
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            c if is_space(c) => i += 1,
            _ => {
                let start = i;
                while i < src.len() && !(is_space(src[i]) || src[i] == b'(' || src[i] == b')') {
                    i += 1;
                }
                let tok = &src[start..i];
                let t = match parse_int(tok) {
                    Some(n) => Token::Int(n),
                    None => Token::Sym(tok.to_vec()),
                };
                out.push((t, pos));
            }
        }
    }
    if let Some(&pos) = open.last() {
        return Err(Error::new("more '(' than ')'").at(|| at(pos)));
    }
    Ok(out)
}

/// The paren depth at the end of `src` (negative if a `)` closes nothing), counting only
/// parens outside comments: the REPL reads lines until a form is complete.
pub fn depth_after(src: &[u8]) -> isize {
    let mut depth = 0isize;
    let mut i = 0;
    let mut at_token_start = true;
    while i < src.len() {
        let c = src[i];
        match c {
            b'(' => {
                depth += 1;
                at_token_start = true;
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return depth;
                }
                at_token_start = true;
            }
            b';' if at_token_start => {
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            c if is_space(c) => at_token_start = true,
            _ => at_token_start = false,
        }
        i += 1;
    }
    depth
}

/// `strtol(tok, &end, 0)` followed by `*end == '\0'` and a conversion to a 32-bit `int`:
/// the int `tok` denotes, or `None` if it is a symbol. Out-of-range values saturate to the
/// 64-bit `long` range (as `strtol` does) and then wrap to 32 bits.
pub fn parse_int(tok: &[u8]) -> Option<i32> {
    let (neg, rest) = match tok.first()? {
        b'-' => (true, &tok[1..]),
        b'+' => (false, &tok[1..]),
        _ => (false, tok),
    };
    let (base, digits) = if rest.len() > 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && rest[2].is_ascii_hexdigit()
    {
        (16, &rest[2..])
    } else if rest.len() > 1 && rest[0] == b'0' {
        (8, &rest[1..])
    } else {
        (10, rest)
    };
    if digits.is_empty() {
        return None;
    }
    let mut mag: u64 = 0;
    let mut overflow = false;
    for &d in digits {
        let v = (d as char).to_digit(base)? as u64;
        match mag.checked_mul(base as u64).and_then(|m| m.checked_add(v)) {
            Some(m) => mag = m,
            None => overflow = true,
        }
    }
    let long: i64 = if neg {
        if overflow || mag > 1u64 << 63 {
            i64::MIN
        } else {
            (mag as i64).wrapping_neg()
        }
    } else if overflow || mag > i64::MAX as u64 {
        i64::MAX
    } else {
        mag as i64
    };
    Some(long as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_rules() {
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"+7"), Some(7));
        assert_eq!(parse_int(b"0x10"), Some(16));
        assert_eq!(parse_int(b"0X1f"), Some(31));
        assert_eq!(parse_int(b"010"), Some(8));
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-0"), Some(0));
        assert_eq!(parse_int(b"08"), None);
        assert_eq!(parse_int(b"1.5"), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"+"), None);
        assert_eq!(parse_int(b"."), None);
        assert_eq!(parse_int(b"0x"), None);
        assert_eq!(parse_int(b"0xg"), None);
        assert_eq!(parse_int(b"12a"), None);
        assert_eq!(parse_int(b"2147483648"), Some(i32::MIN));
        assert_eq!(parse_int(b"4294967297"), Some(1));
        assert_eq!(parse_int(b"99999999999999999999999"), Some(-1));
        assert_eq!(parse_int(b"-99999999999999999999999"), Some(0));
        assert_eq!(parse_int(b"-0x10"), Some(-16));
    }

    #[test]
    fn tokens_and_balance() {
        let f: Arc<str> = "t.duh".into();
        let toks: Vec<Token> = tokenize(b"(a ;c\n 1)x;y", &f, 1)
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            toks,
            vec![
                Token::Open,
                Token::Sym(b"a".to_vec()),
                Token::Int(1),
                Token::Close,
                Token::Sym(b"x;y".to_vec()),
            ]
        );
        let pos: Vec<Pos> = tokenize(b"(a\n  b)", &f, 1)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            pos,
            vec![
                Pos { line: 1, col: 1 },
                Pos { line: 1, col: 2 },
                Pos { line: 2, col: 3 },
                Pos { line: 2, col: 4 },
            ]
        );
        let e = tokenize(b"(()", &f, 1).unwrap_err();
        assert_eq!(e.to_string(), "t.duh:1:1: more '(' than ')'");
        let e = tokenize(b"\n())", &f, 1).unwrap_err();
        assert_eq!(e.to_string(), "t.duh:2:3: more ')' than '('");
        assert_eq!(depth_after(b"(a (b ; (\n"), 2);
        assert_eq!(depth_after(b")"), -1);
    }
}
