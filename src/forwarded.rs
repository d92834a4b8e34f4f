//! The headers that tell Hermes who asked and how, built in one place for both upstreams: the
//! API server (`hermes`, for chat and `/v1`) and the dashboard (`dashboard`). Whatever
//! the client sent under these names is dropped before; the edge is the only one that sets them.

use std::net::IpAddr;

use http::header::HeaderName;
use http::HeaderValue;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Hands each forwarded header to `add`: the client's address (`ip`, from `ip_header`) as
/// `X-Forwarded-For` and `X-Real-IP`, `X-Forwarded-Proto: https` (the edge only serves TLS), and
/// `X-Forwarded-Prefix` when the upstream is served under a path of this site.
pub(crate) fn headers(
    ip: HeaderValue,
    prefix: Option<&'static str>,
    mut add: impl FnMut(HeaderName, HeaderValue),
) {
    add(X_FORWARDED_FOR, ip.clone());
    add(X_REAL_IP, ip);
    add(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if let Some(p) = prefix {
        add(X_FORWARDED_PREFIX, HeaderValue::from_static(p));
    }
}

/// `ip` as a header value, formatted without a heap string (an address is at most 45 bytes).
pub(crate) fn ip_header(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 64];
    let mut w = &mut buf[..];
    let len = match write!(w, "{ip}") {
        Ok(()) => 64 - w.len(),
        Err(_) => return HeaderValue::from_static("unknown"),
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(ip: IpAddr, prefix: Option<&'static str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        headers(ip_header(ip), prefix, |n, v| {
            out.push((n.to_string(), v.to_str().unwrap_or("?").to_string()))
        });
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn api_server_gets_address_and_scheme() {
        assert_eq!(
            built("203.0.113.7".parse().unwrap(), None),
            pairs(&[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-real-ip", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
            ])
        );
    }

    #[test]
    fn dashboard_gets_its_prefix_too() {
        assert_eq!(
            built("2001:db8::1".parse().unwrap(), Some("/dashboard")),
            pairs(&[
                ("x-forwarded-for", "2001:db8::1"),
                ("x-real-ip", "2001:db8::1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-prefix", "/dashboard"),
            ])
        );
    }

    #[test]
    fn longest_ipv6_fits() {
        let ip: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(ip_header(ip).to_str().ok(), Some(ip.to_string().as_str()));
    }
}
