//! `POST /api/fetch`: an HTTP request made on the caller's behalf, with
//! `$secret:` references resolved just before it is sent and every resolved
//! value masked in what comes back.
//!
//! References may appear in the url, header values, query values, the body
//! and the auth fields. They are resolved (as the calling token: a reference
//! resolves only for the token that made it) before anything is sent; one
//! that is unknown, expired or foreign fails the whole call with 400 and no
//! request leaves. In the URL, a reference in the host is refused (a value
//! in a host name reaches DNS resolvers before any masking), and in the
//! path, query or user info its value is percent-encoded (so `?`, `&`, `/`
//! or `#` in a value cannot rewrite the URL). A resolved header value with a
//! line break is a 400 naming the header. Where the request may go is
//! [`super::destinations`]' to say (public addresses only, by default). The
//! request asks for `Accept-Encoding: identity`, so that a compressed body
//! cannot carry a value past the masker. The response (status, headers,
//! body up to 10 MiB) comes back through a masker holding the resolved
//! values (`body`, or `body_base64` when the masked body is not UTF-8), and
//! error messages are built without the URL (which may now hold a value)
//! and masked as well.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::auth::Caller;
use super::awsv4;
use super::destinations;
use super::error::ApiError;
use super::json::ApiJson;
use super::ApiState;
use crate::mask::{MaskSet, MaskStyle};
use crate::secret::SecretValue;
use crate::store::REFERENCE_PREFIX;

/// Largest response body passed back.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// The methods a fetch may use.
pub const FETCH_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Characters of a reference token (256 bits, base64url without padding).
const TOKEN_CHARS: usize = 43;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum FetchAuth {
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
    /// AWS Signature Version 4 (see `awsv4`).
    Awsv4 {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        session_token: Option<String>,
        region: String,
        service: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchBody {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    auth: Option<FetchAuth>,
    #[serde(default, deserialize_with = "super::json::whole_number")]
    timeout_ms: Option<u64>,
}

/// Every `$secret:<token>` in `text`.
fn references_in(text: &str, found: &mut Vec<String>) {
    let mut rest = text;
    while let Some(at) = rest.find(REFERENCE_PREFIX) {
        let after = &rest[at + REFERENCE_PREFIX.len()..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        if len == TOKEN_CHARS {
            let reference = format!("{REFERENCE_PREFIX}{}", &after[..len]);
            if !found.contains(&reference) {
                found.push(reference);
            }
        }
        rest = &after[len..];
    }
}

/// A resolved reference: its text, the secret's name and value.
struct Resolved {
    reference: String,
    name: String,
    value: SecretValue,
}

fn substitute(text: &str, resolved: &[Resolved]) -> Result<String, ApiError> {
    substitute_as(text, resolved, |value| Ok(value.to_owned()))
}

/// [`substitute`] with each value percent-encoded (every byte but the
/// unreserved `A-Z a-z 0-9 - . _ ~`), for the parts of a URL.
fn substitute_encoded(text: &str, resolved: &[Resolved]) -> Result<String, ApiError> {
    substitute_as(text, resolved, |value| {
        let mut out = String::with_capacity(value.len() * 3);
        for &b in value.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        Ok(out)
    })
}

/// [`substitute`] for a header value (or an auth field, which becomes
/// one): a line break or NUL in the result is refused, naming `field`.
fn substitute_header(text: &str, resolved: &[Resolved], field: &str) -> Result<String, ApiError> {
    let out = substitute(text, resolved)?;
    if out.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{field}: the value contains a line break or a NUL byte, which cannot go into a header; nothing was sent"),
        ));
    }
    if !out
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(ApiError::bad_request(format!(
            "{field}: a header value is printable ASCII (and tabs); nothing was sent"
        )));
    }
    Ok(out)
}

fn substitute_as(
    text: &str,
    resolved: &[Resolved],
    form: impl Fn(&str) -> Result<String, ApiError>,
) -> Result<String, ApiError> {
    let mut out = text.to_owned();
    for r in resolved {
        if out.contains(&r.reference) {
            let value = std::str::from_utf8(r.value.expose()).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "secret `{}` is not text and cannot go into a request",
                        r.name
                    ),
                )
            })?;
            let value = zeroize::Zeroizing::new(form(value)?);
            out = out.replace(&r.reference, &value);
        }
    }
    Ok(out)
}

/// The request's URL: references refused in the host, percent-encoded
/// elsewhere.
fn build_url(template: &str, resolved: &[Resolved]) -> Result<reqwest::Url, ApiError> {
    let invalid = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid url: {why}"));
    let (scheme, rest) = template
        .split_once("://")
        .ok_or_else(|| invalid("it has no scheme (http:// or https://)"))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user_info, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let mut in_host = Vec::new();
    references_in(host, &mut in_host);
    if !in_host.is_empty() || host.contains(REFERENCE_PREFIX) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a $secret: reference in the url's host is refused: a host name reaches DNS resolvers before any masking; put the value in the path, the query, a header or the body",
        ));
    }
    let mut url = format!("{scheme}://");
    if let Some(user_info) = user_info {
        url.push_str(&substitute_encoded(user_info, resolved)?);
        url.push('@');
    }
    url.push_str(host);
    url.push_str(&substitute_encoded(tail, resolved)?);
    let url = reqwest::Url::parse(&url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the url must be http or https",
        ));
    }
    Ok(url)
}

/// A 403 for a refused destination.
fn refused(refusal: &destinations::Refused) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("destination refused: {refusal}"),
    )
}

fn bad_gateway(message: String, set: &Arc<MaskSet>) -> ApiError {
    let masked = String::from_utf8_lossy(&set.mask_all(message.as_bytes())).into_owned();
    ApiError::new(StatusCode::BAD_GATEWAY, masked)
}

/// `POST /api/fetch`.
pub async fn fetch(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<FetchBody>,
) -> Result<Response, ApiError> {
    let mut references = Vec::new();
    references_in(&body.url, &mut references);
    for value in body
        .headers
        .values()
        .chain(body.query.values())
        .chain(body.body.iter())
    {
        references_in(value, &mut references);
    }
    match &body.auth {
        Some(FetchAuth::Bearer { token }) => references_in(token, &mut references),
        Some(FetchAuth::Basic { username, password }) => {
            references_in(username, &mut references);
            references_in(password, &mut references);
        }
        Some(FetchAuth::Awsv4 {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            service,
        }) => {
            for field in [access_key_id, secret_access_key, region, service]
                .into_iter()
                .chain(session_token)
            {
                references_in(field, &mut references);
            }
        }
        None => {}
    }
    let wanted = references.clone();
    let resolved: Vec<Resolved> = state
        .with_store(caller.name(), move |store| {
            wanted
                .into_iter()
                .map(|reference| {
                    let r = store.resolve_reference(&reference)?;
                    Ok(Resolved { reference, name: r.name, value: r.secret.value })
                })
                .collect()
        })
        .await
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                ApiError::new(StatusCode::BAD_REQUEST, "a $secret: reference is unknown, expired, or not this token's; nothing was sent")
            } else {
                e
            }
        })?;
    let mut builder = MaskSet::builder(MaskStyle::Label);
    for r in &resolved {
        builder.add(&r.name, &r.value);
    }
    let mask = builder.build();

    let method = body.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    if !FETCH_METHODS.contains(&method.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid method: expected one of {}",
            FETCH_METHODS.join(", ")
        )));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid method"))?;
    let mut url = build_url(&body.url, &resolved)?;
    if !body.query.is_empty() {
        let mut pairs = Vec::with_capacity(body.query.len());
        for (name, value) in &body.query {
            pairs.push((name.clone(), Zeroizing::new(substitute(value, &resolved)?)));
        }
        url.query_pairs_mut()
            .extend_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    }
    if let Some(FetchAuth::Awsv4 { .. }) = &body.auth {
        // Sent exactly as it is signed.
        url = awsv4::canonical_url(&url);
    }
    let fetcher = state.fetcher();
    // A literal address is not resolved: check it here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal {
        fetcher.policy.check(ip).map_err(|kind| {
            refused(&destinations::Refused {
                what: "the url".to_owned(),
                address: ip,
                kind,
            })
        })?;
    }
    let timeout = match body.timeout_ms {
        None => DEFAULT_TIMEOUT,
        Some(ms) if (1..=MAX_TIMEOUT.as_millis() as u64).contains(&ms) => Duration::from_millis(ms),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "`timeout_ms` is 1 to {}",
                MAX_TIMEOUT.as_millis()
            )))
        }
    };
    let mut request = fetcher
        .client
        .request(method.clone(), url.clone())
        .timeout(timeout);
    // What the request carries, for a signature over it.
    let mut sent_headers: Vec<(String, String)> = Vec::new();
    for (name, value) in &body.headers {
        let header = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("header {name:?}: not a valid header name"),
            )
        })?;
        if header == reqwest::header::ACCEPT_ENCODING {
            continue; // identity, always (below)
        }
        let value = substitute_header(value, &resolved, &format!("header {name}"))?;
        sent_headers.push((name.clone(), value.clone()));
        let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("header {name}: the value is not a valid header value"),
            )
        })?;
        request = request.header(header, value);
    }
    request = request.header(reqwest::header::ACCEPT_ENCODING, "identity");
    sent_headers.push(("accept-encoding".to_owned(), "identity".to_owned()));
    let payload = match &body.body {
        Some(text) => substitute(text, &resolved)?.into_bytes(),
        None => Vec::new(),
    };
    request = match &body.auth {
        Some(FetchAuth::Bearer { token }) => {
            request.bearer_auth(substitute_header(token, &resolved, "auth.token")?)
        }
        Some(FetchAuth::Basic { username, password }) => request.basic_auth(
            substitute(username, &resolved)?,
            Some(substitute(password, &resolved)?),
        ),
        Some(FetchAuth::Awsv4 {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            service,
        }) => {
            let field = |text: &str, name: &str| {
                substitute_header(text, &resolved, &format!("auth.{name}")).map(Zeroizing::new)
            };
            if let Some((name, _)) = sent_headers.iter().find(|(name, _)| {
                awsv4::SIGNATURE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            }) {
                return Err(ApiError::bad_request(format!(
                    "header {name}: the awsv4 signature sets it; nothing was sent"
                )));
            }
            let access_key_id = field(access_key_id, "access_key_id")?;
            let secret_access_key = field(secret_access_key, "secret_access_key")?;
            // An empty token is no token.
            let session_token = session_token
                .as_deref()
                .filter(|token| !token.is_empty())
                .map(|token| field(token, "session_token"))
                .transpose()?;
            let region = field(region, "region")?;
            let service = field(service, "service")?;
            for (name, value) in [("region", &region), ("service", &service)] {
                if !awsv4::is_scope_part(value) {
                    return Err(ApiError::bad_request(format!(
                        "auth.{name}: letters, digits and `-` (such as `us-east-1`, `execute-api`); nothing was sent"
                    )));
                }
            }
            let credentials = awsv4::Credentials {
                access_key_id: &access_key_id,
                secret_access_key: &secret_access_key,
                session_token: session_token.as_deref().map(|t| t.as_str()),
                region: &region,
                service: &service,
            };
            let signed = awsv4::sign(
                method.as_str(),
                &url,
                &sent_headers,
                &payload,
                &credentials,
                &awsv4::amz_date(time::OffsetDateTime::now_utc()),
            );
            for (name, value) in signed {
                let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    ApiError::bad_request(format!(
                        "auth: the {name} header of the signature is not a valid header value"
                    ))
                })?;
                request = request.header(name, value);
            }
            request
        }
        None => request,
    };
    if body.body.is_some() {
        request = request.body(payload);
    }
    drop(resolved);

    let mut response = request.send().await.map_err(|e| {
        if let Some(refusal) = destinations::refusal_in(&e) {
            refused(refusal)
        } else if e.is_timeout() {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the request timed out")
        } else {
            bad_gateway(format!("the request failed: {}", e.without_url()), &mask)
        }
    })?;
    let status = response.status().as_u16();
    let mut headers = BTreeMap::new();
    for (name, value) in response.headers() {
        let masked = mask.mask_all(value.as_bytes());
        headers.insert(
            name.as_str().to_owned(),
            String::from_utf8_lossy(&masked).into_owned(),
        );
    }
    let mut masker = crate::mask::Masker::new(Arc::clone(&mask));
    let mut masked = Vec::new();
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        bad_gateway(
            format!("reading the response failed: {}", e.without_url()),
            &mask,
        )
    })? {
        received += chunk.len();
        if received > MAX_RESPONSE_BYTES {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
        masker.push(&chunk, &mut masked);
    }
    masker.finish(&mut masked);
    let body = match String::from_utf8(masked) {
        Ok(text) => serde_json::json!({ "status": status, "headers": headers, "body": text }),
        Err(bytes) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes());
            serde_json::json!({ "status": status, "headers": headers, "body_base64": encoded })
        }
    };
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::references_in;

    #[test]
    fn references_are_found_whole() {
        let token = "A".repeat(43);
        let text = format!("x $secret:{token} y $secret:short $secret:{token}z");
        let mut found = Vec::new();
        references_in(&text, &mut found);
        assert_eq!(found, vec![format!("$secret:{token}")]);
    }
}
