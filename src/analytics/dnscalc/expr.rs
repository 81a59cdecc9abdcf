//! A tiny, bounded expression language for derivations from config:
//! integers, the variables `o1..o4` (IPv4 octets) or `h1..h8` (IPv6 16-bit groups),
//! `+ - * / %` and parentheses. Compiled once to a fixed-size postfix program; evaluation
//! uses wrapping 64-bit arithmetic on a fixed stack and never panics or allocates
//! (division or remainder by zero yields no value).

use super::derivation::{Family, Operands};

/// Tokens a program may hold: bounds parse and evaluation work.
pub const MAX_PROGRAM: usize = 32;
/// Nested parentheses accepted.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Num(i64),
    Var(u8),
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A compiled expression over one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    prog: [Op; MAX_PROGRAM],
    len: usize,
    family: Family,
}

impl Expr {
    pub fn family(&self) -> Family {
        self.family
    }

    /// Compiles `src`; the error says what is wrong and where.
    pub fn parse(src: &str) -> Result<Expr, String> {
        let mut p = Parser {
            s: src.as_bytes(),
            i: 0,
            out: Expr {
                prog: [Op::Num(0); MAX_PROGRAM],
                len: 0,
                family: Family::V4,
            },
            family: None,
            depth: 0,
        };
        p.expr()?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(format!("`{src}`: unexpected `{}`", p.s[p.i] as char));
        }
        p.out.family = p
            .family
            .ok_or_else(|| format!("`{src}`: uses no variable (o1..o4 or h1..h8)"))?;
        Ok(p.out)
    }

    /// Evaluates on an address's operands; `None` on a family mismatch or a zero divisor.
    pub fn eval(&self, o: &Operands) -> Option<i64> {
        if o.family != self.family {
            return None;
        }
        let mut st = [0i64; MAX_PROGRAM];
        let mut sp = 0usize;
        for op in &self.prog[..self.len] {
            match *op {
                Op::Num(n) => {
                    *st.get_mut(sp)? = n;
                    sp += 1;
                }
                Op::Var(v) => {
                    *st.get_mut(sp)? = *o.v.get(v as usize)?;
                    sp += 1;
                }
                bin => {
                    if sp < 2 {
                        return None;
                    }
                    let (a, b) = (st[sp - 2], st[sp - 1]);
                    st[sp - 2] = match bin {
                        Op::Add => a.wrapping_add(b),
                        Op::Sub => a.wrapping_sub(b),
                        Op::Mul => a.wrapping_mul(b),
                        Op::Div => a.checked_div(b)?,
                        Op::Rem => a.checked_rem(b)?,
                        Op::Num(_) | Op::Var(_) => return None,
                    };
                    sp -= 1;
                }
            }
        }
        (sp == 1).then_some(st[0])
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    out: Expr,
    family: Option<Family>,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }
    fn emit(&mut self, op: Op) -> Result<(), String> {
        if self.out.len == MAX_PROGRAM {
            return Err(format!("longer than {MAX_PROGRAM} terms"));
        }
        self.out.prog[self.out.len] = op;
        self.out.len += 1;
        Ok(())
    }
    fn expr(&mut self) -> Result<(), String> {
        self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            self.term()?;
            self.emit(if c == b'+' { Op::Add } else { Op::Sub })?;
        }
        Ok(())
    }
    fn term(&mut self) -> Result<(), String> {
        self.factor()?;
        while let Some(c @ (b'*' | b'/' | b'%')) = self.peek() {
            self.i += 1;
            self.factor()?;
            self.emit(match c {
                b'*' => Op::Mul,
                b'/' => Op::Div,
                _ => Op::Rem,
            })?;
        }
        Ok(())
    }
    fn factor(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'(') => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("parentheses nested deeper than {MAX_DEPTH}"));
                }
                self.i += 1;
                self.expr()?;
                if self.peek() != Some(b')') {
                    return Err(format!("missing `)` at offset {}", self.i));
                }
                self.i += 1;
                self.depth -= 1;
                Ok(())
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: i64 = 0;
                while let Some(&d) = self.s.get(self.i).filter(|d| d.is_ascii_digit()) {
                    n = n * 10 + i64::from(d - b'0');
                    if n > u32::MAX as i64 {
                        return Err("number too large".into());
                    }
                    self.i += 1;
                }
                self.emit(Op::Num(n))
            }
            Some(c @ (b'o' | b'h')) => {
                self.i += 1;
                let d = self.s.get(self.i).copied().unwrap_or(0);
                let (fam, max) = if c == b'o' {
                    (Family::V4, b'4')
                } else {
                    (Family::V6, b'8')
                };
                if !(b'1'..=max).contains(&d)
                    || self
                        .s
                        .get(self.i + 1)
                        .is_some_and(|n| n.is_ascii_alphanumeric())
                {
                    return Err(format!(
                        "unknown variable at offset {} (o1..o4, h1..h8)",
                        self.i - 1
                    ));
                }
                self.i += 1;
                if self.family.is_some_and(|f| f != fam) {
                    return Err("mixes IPv4 (o) and IPv6 (h) variables".into());
                }
                self.family = Some(fam);
                self.emit(Op::Var(d - b'1'))
            }
            Some(c) => Err(format!("unexpected `{}` at offset {}", c as char, self.i)),
            None => Err("ends early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Operands {
        Operands::from_ip(std::net::IpAddr::from(a))
    }

    #[test]
    fn precedence_and_parentheses() {
        let o = v4([71, 63, 201, 9]);
        assert_eq!(
            Expr::parse("o1*o2+o3").unwrap().eval(&o),
            Some(71 * 63 + 201)
        );
        assert_eq!(Expr::parse("o1*(o2+o3)").unwrap().eval(&o), Some(71 * 264));
        assert_eq!(
            Expr::parse(" o1 * 256 + o2 ").unwrap().eval(&o),
            Some(18239)
        );
        assert_eq!(Expr::parse("o4-o3").unwrap().eval(&o), Some(9 - 201));
        assert_eq!(
            Expr::parse("(o3%16)*4096/2").unwrap().eval(&o),
            Some(9 * 4096 / 2)
        );
        assert_eq!(Expr::parse("o1/(o2-63)").unwrap().eval(&o), None);
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        for bad in [
            "",
            "o5",
            "h9",
            "o1+",
            "(o1",
            "o1)",
            "o1+h1",
            "42",
            "o1 o2",
            "x1",
            "o12",
            "o1**2",
            "((((((((((o1))))))))))",
            "99999999999*o1",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
        let long = vec!["o1"; 40].join("+");
        assert!(Expr::parse(&long).is_err());
    }

    #[test]
    fn family_mismatch_has_no_value() {
        let e = Expr::parse("h8").unwrap();
        assert_eq!(e.eval(&v4([1, 2, 3, 4])), None);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let alphabet = b"o1h8+-*/%() 0259";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let o = v4([1, 2, 3, 4]);
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
            }
            if let Ok(e) = Expr::parse(&s) {
                let _ = e.eval(&o);
            }
        }
    }
}
