//! gzip for response bodies, chunk by chunk, when the client accepts it (Prometheus always
//! asks for it and decompresses only `Content-Encoding: gzip`). The page's body drives it,
//! so that its delivery still means the last compressed byte was handed over.

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` or `*` listed without `q=0`
/// (RFC 9110 §12.5.3; `x-gzip` is gzip's old name).
pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(v) = accept_encoding else {
        return false;
    };
    let mut gzip = None;
    let mut star = None;
    for item in v.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("q")).then(|| v.trim().parse::<f32>().ok())?
            })
            .next()
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// A gzip stream fed one chunk at a time.
pub(crate) struct Gzip {
    encoder: GzEncoder<Vec<u8>>,
}

impl Gzip {
    /// Level 1: on a page of repeated label names it compresses nearly as well as the
    /// default level for a fraction of the CPU (see the README's figures).
    pub(crate) fn new() -> Gzip {
        Gzip {
            encoder: GzEncoder::new(Vec::new(), Compression::fast()),
        }
    }

    /// Compress `chunk`: the compressed bytes ready so far (maybe none).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Bytes {
        // Writing to a Vec cannot fail.
        let _ = self.encoder.write_all(chunk);
        Bytes::from(std::mem::take(self.encoder.get_mut()))
    }

    /// The rest of the stream and its trailer.
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.encoder.finish().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding() {
        for yes in [
            "gzip",
            "deflate, gzip",
            "gzip;q=0.5",
            "*",
            "br, *;q=0.1",
            "x-gzip",
            "GZIP",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "gzip;q=0",
            "gzip; q=0.0, *",
            "deflate, br",
            "*;q=0",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn chunks_make_one_gzip_stream() {
        let text: String = (0..20_000)
            .map(|i| format!("reaction_match_count{{ip=\"192.0.2.{}\"}} 1.0\n", i % 256))
            .collect();
        let mut g = Gzip::new();
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(16 * 1024) {
            out.extend_from_slice(&g.push(chunk));
        }
        out.extend_from_slice(&g.finish());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
        assert!(
            out.len() * 10 < text.len(),
            "{} of {}",
            out.len(),
            text.len()
        );
    }
}
