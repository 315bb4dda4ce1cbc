//! CSV for spreadsheets (RFC 4180): CRLF line ends, fields with a comma, quote or line break
//! quoted and their quotes doubled, UTF-8 with a byte-order mark so Excel in Korea opens Hangul
//! correctly.

/// UTF-8 byte-order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Builds one CSV document row by row.
#[derive(Debug, Clone)]
pub struct CsvWriter {
    buf: Vec<u8>,
}

impl Default for CsvWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvWriter {
    pub fn new() -> Self {
        Self { buf: BOM.to_vec() }
    }

    pub fn row<S: AsRef<str>>(&mut self, fields: &[S]) -> &mut Self {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            let f = f.as_ref();
            if f.contains([',', '"', '\r', '\n']) {
                self.buf.push(b'"');
                self.buf
                    .extend_from_slice(f.replace('"', "\"\"").as_bytes());
                self.buf.push(b'"');
            } else {
                self.buf.extend_from_slice(f.as_bytes());
            }
        }
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_quoting() {
        let mut w = CsvWriter::new();
        w.row(&["id", "description", "amount_krw"]);
        w.row(&["1", "SMS 발송 (SMS), 3/1~3/15", "20000"]);
        w.row(&["2", "say \"hi\"", "0"]);
        w.row(&["3", "two\nlines", "-5"]);
        let out = w.finish();
        assert!(out.starts_with(BOM));
        let text = std::str::from_utf8(&out[3..]).expect("utf-8");
        assert_eq!(
            text,
            "id,description,amount_krw\r\n\
             1,\"SMS 발송 (SMS), 3/1~3/15\",20000\r\n\
             2,\"say \"\"hi\"\"\",0\r\n\
             3,\"two\nlines\",-5\r\n"
        );
    }
}
