//! The chunk file format: comma-separated UTF-8 lines in MySQL's `LOAD DATA` escaping,
//! read with `FIELDS TERMINATED BY ',' ESCAPED BY '\\' LINES TERMINATED BY '\n'`.
//! Backslash, comma, newline, carriage return, tab and NUL are escaped with a backslash;
//! SQL NULL is `\N`. No quoting is used, so a field never needs look-ahead to read.
//! (The `csv` crate quotes instead of escaping, which `LOAD DATA` would read differently
//! for backslashes and NULL, hence this small encoder.)

/// The `LOAD DATA` clauses matching [`encode_row`].
pub const LOAD_DATA_FORMAT: &str =
    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'";

/// Appends one field, escaped. The characters to escape are all ASCII, so the text is
/// scanned as bytes and copied in runs between them.
pub fn encode_field(out: &mut String, value: Option<&str>) {
    let Some(v) = value else {
        out.push_str("\\N");
        return;
    };
    let mut run = 0;
    for (i, b) in v.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b',' => "\\,",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'\0' => "\\0",
            _ => continue,
        };
        // `i` is an ASCII byte, so both slices end on character boundaries.
        out.push_str(&v[run..i]);
        out.push_str(escaped);
        run = i + 1;
    }
    out.push_str(&v[run..]);
}

/// Appends one row and its line terminator.
pub fn encode_row<S: AsRef<str>>(out: &mut String, values: &[Option<S>]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_field(out, v.as_ref().map(|s| s.as_ref()));
    }
    out.push('\n');
}

/// Reads back one line (without its `\n`), as `LOAD DATA` does.
pub fn decode_row(line: &str) -> Vec<Option<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut null = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('N') => null = true,
                Some('n') => cur.push('\n'),
                Some('r') => cur.push('\r'),
                Some('t') => cur.push('\t'),
                Some('0') => cur.push('\0'),
                Some(other) => cur.push(other),
                None => cur.push('\\'),
            },
            ',' => {
                fields.push(if null {
                    None
                } else {
                    Some(std::mem::take(&mut cur))
                });
                cur.clear();
                null = false;
            }
            c => cur.push(c),
        }
    }
    fields.push(if null { None } else { Some(cur) });
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_specials_and_null() {
        let mut s = String::new();
        encode_row(
            &mut s,
            &[
                Some("a,b"),
                None,
                Some("c\\N"),
                Some("x\ny\tz\r\0"),
                Some(""),
            ],
        );
        assert_eq!(s, "a\\,b,\\N,c\\\\N,x\\ny\\tz\\r\\0,\n");
        assert_eq!(
            decode_row(s.trim_end_matches('\n')),
            vec![
                Some("a,b".to_string()),
                None,
                Some("c\\N".to_string()),
                Some("x\ny\tz\r\0".to_string()),
                Some(String::new())
            ]
        );
    }

    proptest! {
        #[test]
        fn round_trips(row in proptest::collection::vec(proptest::option::of("(?s).{0,12}|[\\\\,\\n\\r\\t\\x00N]{0,6}"), 1..8)) {
            let mut s = String::new();
            encode_row(&mut s, &row);
            prop_assert!(s.ends_with('\n'));
            let body = &s[..s.len() - 1];
            prop_assert!(!body.contains('\n'));
            prop_assert_eq!(decode_row(body), row);
        }
    }
}
