//! Who may talk to the server: the `Host` check (DNS rebinding), the
//! JSON-only bodies (no CORS-free `text/plain` POSTs), CORS for configured
//! origins only, and where the API key is read from a request.
//!
//! A server on 127.0.0.1 is reachable from every web page the user opens:
//! a page can POST a "simple" request (`text/plain`, a form) without a CORS
//! preflight, and a DNS-rebinding page reaches it under its own domain name.
//! The checks here refuse both while leaving `curl`, the `openai` clients
//! and frontends the user configured alone.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

/// Whether `host` (a `Host` header: a name or IP literal, maybe with a port)
/// may reach this server: IP literals (a rebinding page cannot make the
/// browser send one), `localhost` and its subdomains, and the names the
/// user allowed (`--allow-host`, `*` for any).
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host).to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// `host` without its `:port`; an IPv6 literal loses its brackets.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // One colon: `name:port`. More: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Whether a body's `Content-Type` is JSON (`application/json`, any
/// `+json` type, parameters ignored). A request without one is accepted
/// (`curl --data-binary` sends one, browsers always do).
pub(crate) fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(v) = v.to_str() else { return false };
    let mime = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Whether a request with this `Origin` may be served: only origins the
/// user configured (`--cors-origin`, `*` for any).
pub(crate) fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The answer to a CORS preflight from an allowed origin.
pub(crate) fn preflight(origin: &HeaderValue, req_headers: Option<&HeaderValue>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    add_cors_headers(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        req_headers.cloned().unwrap_or_else(|| {
            HeaderValue::from_static("authorization, content-type, x-api-key, anthropic-version")
        }),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// The headers that let a browser page of `origin` read a response.
pub(crate) fn add_cors_headers(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The key a request presents: `Authorization: Bearer KEY` (the scheme in
/// any case, RFC 7235 section 2.1) or `x-api-key: KEY`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some((scheme, key)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(key.trim());
            }
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(crate) fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "invalid_request_error", message).with_code("forbidden")
}

/// Whether the method carries a JSON body on our routes.
pub(crate) fn has_json_body(method: &Method) -> bool {
    method == Method::POST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_may_reach_a_local_server() {
        for h in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:9",
            "[::1]:8080",
            "::1",
            "192.168.1.5:8080",
        ] {
            assert!(host_allowed(h, &[]), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(h, &[]), "{h}");
        }
        assert!(host_allowed("box.lan:8080", &["box.lan".into()]));
        assert!(host_allowed("anything", &["*".into()]));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_x_api_key_counts() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bEaReR k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k2"));
        assert_eq!(presented_key(&h), Some("k2"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k3"));
        assert_eq!(presented_key(&h), None);
    }
}
