//! Reading a scrape response body as Prometheus's `targetScraper.readResponse`
//! does: inflate it when `Content-Encoding` is exactly `gzip`, and fail when the
//! (inflated) body reaches `body_size_limit` bytes.

use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be read; the scrape fails with it.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Prometheus's `errBodySizeLimit` ("body size limit exceeded"); the limit
    /// applies to the body after gzip inflation.
    #[error("body size limit exceeded: the body reached {limit} bytes")]
    SizeLimit { limit: u64 },
    #[error("invalid gzip body: {0}")]
    Gzip(std::io::Error),
}

/// Returns the body to parse. `limit` 0 means no limit. As upstream, a body of
/// exactly `limit` bytes already fails (`n >= bodySizeLimit`), and a gzip body is
/// inflated at most to `limit` bytes, so a gzip bomb costs no more memory than an
/// over-limit plain body. Concatenated gzip members are read as one stream, as Go's
/// `gzip.Reader` does. The caller should also stop receiving the raw body once it
/// reaches `limit` bytes.
pub fn decode_body<'a>(
    raw: &'a [u8],
    content_encoding: Option<&str>,
    limit: u64,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let limit = if limit == 0 { u64::MAX } else { limit };
    if content_encoding != Some("gzip") {
        if raw.len() as u64 >= limit {
            return Err(BodyError::SizeLimit { limit });
        }
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(64 << 20));
    let n = flate2::read::MultiGzDecoder::new(raw)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(BodyError::Gzip)?;
    if n as u64 >= limit {
        return Err(BodyError::SizeLimit { limit });
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_bodies_are_borrowed_and_limited() {
        let body = b"up 1\n";
        assert!(matches!(decode_body(body, None, 0), Ok(Cow::Borrowed(_))));
        assert!(decode_body(body, Some("identity"), 6).is_ok());
        // Exactly the limit already fails, as upstream.
        assert!(matches!(
            decode_body(body, None, 5),
            Err(BodyError::SizeLimit { limit: 5 })
        ));
    }

    #[test]
    fn gzip_bodies_are_inflated_and_limited_after_inflation() {
        let body = b"node_load1 0.5\n".repeat(1000);
        let z = gzip(&body);
        assert_eq!(
            decode_body(&z, Some("gzip"), 0).unwrap().as_ref(),
            &body[..]
        );
        assert!(decode_body(&z, Some("gzip"), body.len() as u64 + 1).is_ok());
        let err = decode_body(&z, Some("gzip"), body.len() as u64).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "body size limit exceeded: the body reached {} bytes",
                body.len()
            )
        );
        // A small bomb stops at the limit.
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert!(matches!(
            decode_body(&bomb, Some("gzip"), 1 << 20),
            Err(BodyError::SizeLimit { .. })
        ));
        // Concatenated members read as one stream.
        let mut two = gzip(b"a 1\n");
        two.extend(gzip(b"b 2\n"));
        assert_eq!(
            decode_body(&two, Some("gzip"), 0).unwrap().as_ref(),
            b"a 1\nb 2\n"
        );
        // Content-Encoding must be exactly "gzip"; garbage fails cleanly.
        assert!(matches!(
            decode_body(b"\x1f\x8bnot gzip", Some("gzip"), 0),
            Err(BodyError::Gzip(_))
        ));
        assert!(matches!(
            decode_body(&z, Some("GZIP"), 0),
            Ok(Cow::Borrowed(_))
        ));
        let truncated = &z[..z.len() / 2];
        assert!(decode_body(truncated, Some("gzip"), 0).is_err());
    }
}
