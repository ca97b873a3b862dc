//! Byte classes kept as 256-entry tables (`tchar` here, shared by the
//! request line and response header names; the others beside their one
//! user), and the scan that checks a run of bytes against one. Every
//! request's `Host` and every response's header names go through it, so it
//! takes four bytes a step.

/// How many bytes at the start of `bytes` are in `table`: four looked up
/// per step while all are in it, as they mostly are, then one at a time.
pub(crate) fn run_of(bytes: &[u8], table: &[bool; 256]) -> usize {
    let is_in = |b: u8| table[usize::from(b)];
    let mut steps = bytes.chunks_exact(4);
    let mut at = 0;
    for step in steps.by_ref() {
        if !(is_in(step[0]) & is_in(step[1]) & is_in(step[2]) & is_in(step[3])) {
            break;
        }
        at += 4;
    }
    at + bytes[at..].iter().take_while(|&&b| is_in(b)).count()
}

/// [`run_of`] one byte at a time: for runs of a few bytes (a method, the
/// start of a target), shorter than the steps of four are made for.
#[inline]
pub(crate) fn short_run_of(bytes: &[u8], table: &[bool; 256]) -> usize {
    bytes
        .iter()
        .position(|&b| !table[usize::from(b)])
        .unwrap_or(bytes.len())
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token, so of a method and of a
/// field name.
pub(crate) const TCHAR: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// A table of the ASCII letters and digits and the bytes of `extra`.
pub(crate) const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_is_every_visible_byte_but_the_delimiters() {
        for b in 0..=255u8 {
            let delimiter = b"\"(),/:;<=>?@[\\]{}".contains(&b);
            assert_eq!(
                TCHAR[usize::from(b)],
                b.is_ascii_graphic() && !delimiter,
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn the_run_ends_at_the_first_byte_outside_the_table_wherever_it_is() {
        let mut digits = [false; 256];
        for b in b'0'..=b'9' {
            digits[usize::from(b)] = true;
        }
        let all = b"0123456789012";
        assert_eq!(run_of(all, &digits), all.len());
        assert_eq!(run_of(b"", &digits), 0);
        for at in 0..all.len() {
            let mut bytes = *all;
            bytes[at] = b'x';
            assert_eq!(run_of(&bytes, &digits), at);
        }
    }
}
