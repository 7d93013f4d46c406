//! AWS Signature Version 4 for `POST /api/fetch` (`auth.type = "awsv4"`).
//!
//! [`sign`] takes a request as it will be sent (method, URL, headers, body)
//! and returns the headers that sign it: `x-amz-date`,
//! `x-amz-content-sha256`, `x-amz-security-token` with a session token,
//! and `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
//! Signature=...`. [`canonical_url`] first rewrites the URL's path and
//! query into AWS's own percent-encoding (unreserved `A-Z a-z 0-9 - _ . ~`
//! kept, everything else `%XX`; the query sorted), so that what is sent is
//! byte for byte what was signed.
//!
//! Every service but S3 signs each path segment encoded twice, as AWS's
//! specification and botocore do; S3 signs the path as it is sent. The
//! keys and the signature are derived with HMAC-SHA256 over borrowed bytes;
//! the secret key's derived copies are zeroized when dropped.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// What signs a request (each field already resolved from its references).
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

/// Headers the signature sets, which a caller's headers may not hold.
pub const SIGNATURE_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

/// A region or a service: letters, digits and `-` (`us-east-1`, `execute-api`).
pub fn is_scope_part(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Headers a proxy or the client may change in transit: never signed.
const UNSIGNED_HEADERS: [&str; 6] = [
    "authorization",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
    "connection",
    "content-length",
];

/// Percent-encodes `text` as AWS does: unreserved characters as they are,
/// every other byte as `%XX` (upper-case hex).
pub fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL with its path and query in AWS's encoding, the query's pairs
/// sorted by name, then value (the form that is both sent and signed).
pub fn canonical_url(url: &url::Url) -> url::Url {
    let mut out = url.clone();
    let path: Vec<String> = url
        .path()
        .split('/')
        .map(|segment| uri_encode(&percent_decode(segment.as_bytes()), false))
        .collect();
    out.set_path(&path.join("/"));
    let query = canonical_query(url);
    out.set_query(if query.is_empty() { None } else { Some(&query) });
    out
}

/// The `x-amz-date` of `now`: `YYYYMMDDTHHMMSSZ`, in UTC.
pub fn amz_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// `%XX` sequences decoded (a bad one kept as it is).
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' && i + 2 < text.len() {
            let hex = std::str::from_utf8(&text[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The canonical query string: each name and value decoded, then encoded
/// the AWS way, sorted, joined with `&`.
fn canonical_query(url: &url::Url) -> String {
    let Some(query) = url.query() else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // A `+` in a query is a space to the forms that wrote it.
            let decode = |part: &str| percent_decode(part.replace('+', " ").as_bytes());
            (
                uri_encode(&decode(name), false),
                uri_encode(&decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Host` header a client sends for `url` (the port only when it is
/// not the scheme's default).
pub fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value as AWS canonicalizes it: trimmed, runs of spaces made one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The signing headers for a request to `url` (already [`canonical_url`])
/// with `headers` (name, value; the `Host` is added from the URL) and
/// `body`, at `amz_date` (`YYYYMMDDTHHMMSSZ`). Returns the headers to add,
/// `Authorization` last.
pub fn sign(
    method: &str,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
    credentials: &Credentials<'_>,
    amz_date: &str,
) -> Vec<(String, String)> {
    let payload_hash = hex(&Sha256::digest(body));
    let mut added = vec![
        ("x-amz-date".to_owned(), amz_date.to_owned()),
        ("x-amz-content-sha256".to_owned(), payload_hash.clone()),
    ];
    if let Some(token) = credentials.session_token {
        added.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    // The Host that is sent: the caller's own, or the URL's.
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or_else(|| host_header(url), |(_, value)| canonical_value(value));
    let mut signed: Vec<(String, String)> = vec![("host".to_owned(), host)];
    for (name, value) in headers.iter().chain(&added) {
        let name = name.to_ascii_lowercase();
        if UNSIGNED_HEADERS.contains(&name.as_str()) || name == "host" {
            continue;
        }
        signed.push((name, canonical_value(value)));
    }
    let authorization = authorization(
        method,
        url,
        &mut signed,
        &payload_hash,
        credentials,
        amz_date,
    );
    added.push(("authorization".to_owned(), authorization));
    added
}

/// The `Authorization` value over `signed` (lower-case names, canonical
/// values; sorted here, repeated names joined with `,`).
pub fn authorization(
    method: &str,
    url: &url::Url,
    signed: &mut [(String, String)],
    payload_hash: &str,
    credentials: &Credentials<'_>,
    amz_date: &str,
) -> String {
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in signed.iter() {
        if names.last() == Some(&name.as_str()) {
            canonical_headers.pop(); // the newline: the value continues
            canonical_headers.push(',');
        } else {
            names.push(name);
            canonical_headers.push_str(name);
            canonical_headers.push(':');
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed_headers = names.join(";");
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    let canonical_path = if credentials.service == "s3" {
        path.to_owned()
    } else {
        uri_encode(path.as_bytes(), true)
    };
    let canonical_request = format!(
        "{}\n{canonical_path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        method.to_ascii_uppercase(),
        url.query().unwrap_or(""),
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!(
        "{date}/{}/{}/aws4_request",
        credentials.region, credentials.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = Zeroizing::new(format!("AWS4{}", credentials.secret_access_key));
    let key = hmac(secret.as_bytes(), date.as_bytes());
    let key = hmac(&key, credentials.region.as_bytes());
    let key = hmac(&key, credentials.service.as_bytes());
    let key = hmac(&key, b"aws4_request");
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "us-east-1",
        service: "service",
    };

    fn signature_of(authorization: &str) -> &str {
        authorization.rsplit("Signature=").next().unwrap()
    }

    /// `get-vanilla` of AWS's Signature Version 4 test suite.
    #[test]
    fn the_get_vanilla_vector() {
        let url = url::Url::parse("https://example.amazonaws.com/").unwrap();
        let mut signed = vec![
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let empty = hex(&Sha256::digest(b""));
        let auth = authorization(
            "GET",
            &url,
            &mut signed,
            &empty,
            &EXAMPLE,
            "20150830T123600Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The IAM `ListUsers` example of AWS's documentation.
    #[test]
    fn the_iam_list_users_example() {
        let url = canonical_url(
            &url::Url::parse("https://iam.amazonaws.com/?Version=2010-05-08&Action=ListUsers")
                .unwrap(),
        );
        assert_eq!(url.query(), Some("Action=ListUsers&Version=2010-05-08"));
        let mut signed = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("host".to_owned(), "iam.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let empty = hex(&Sha256::digest(b""));
        let iam = Credentials {
            service: "iam",
            ..EXAMPLE
        };
        let auth = authorization("GET", &url, &mut signed, &empty, &iam, "20150830T123600Z");
        assert_eq!(
            signature_of(&auth),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn paths_and_queries_take_aws_encoding() {
        let url = canonical_url(
            &url::Url::parse("https://h.example/a b/%7Euser!/?b=2&a=x y&a=+1&c").unwrap(),
        );
        assert_eq!(url.path(), "/a%20b/~user%21/");
        assert_eq!(url.query(), Some("a=%201&a=x%20y&b=2&c="));
    }

    #[test]
    fn sign_adds_the_date_hash_token_and_authorization() {
        let url = canonical_url(&url::Url::parse("http://127.0.0.1:9000/bucket/key").unwrap());
        let creds = Credentials {
            session_token: Some("TOKEN"),
            service: "s3",
            ..EXAMPLE
        };
        let added = sign(
            "PUT",
            &url,
            &[("Content-Type".to_owned(), "text/plain".to_owned())],
            b"hello",
            &creds,
            "20260101T000000Z",
        );
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
                "authorization"
            ]
        );
        assert_eq!(
            added[1].1,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(added[3].1.contains(
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
        ));
    }
}
