//! Which push endpoints the server will request. An endpoint is a URL a browser hands over and the
//! server later POSTs to, so a user could name a host inside the network (SSRF): it must be
//! `https://` on a public address. The address is checked twice: an IP literal when the
//! subscription is stored, and every name when it is resolved for a send (`PublicResolver`, the
//! client's only resolver), so a name that later points inside is refused too.
//! `[push] allow_private_endpoints` (tests only) accepts loopback, private addresses and `http://`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// The longest endpoint stored (FCM's are about 190 characters, Mozilla's about 300).
pub(crate) const MAX_ENDPOINT_CHARS: usize = 1024;

/// Checks a subscription's endpoint; `Ok` is the URL and its origin (the VAPID `aud`).
pub(crate) fn check(text: &str, allow_private: bool) -> Result<(http::Uri, String), String> {
    if text.len() > MAX_ENDPOINT_CHARS {
        return Err(format!(
            "the endpoint is longer than {MAX_ENDPOINT_CHARS} characters"
        ));
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "the endpoint is not a URL".to_string())?;
    let scheme = uri.scheme_str().unwrap_or("");
    if !(scheme == "https" || (allow_private && scheme == "http")) {
        return Err("the endpoint must be an https:// URL".into());
    }
    let Some(authority) = uri.authority() else {
        return Err("the endpoint has no host".into());
    };
    if authority.as_str().contains('@') {
        return Err("the endpoint must not carry a user name".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if !allow_private {
        let inside = match host.parse::<IpAddr>() {
            Ok(ip) => !is_public(ip),
            Err(_) => {
                let h = host.trim_end_matches('.').to_ascii_lowercase();
                h == "localhost" || h.ends_with(".localhost") || !h.contains('.')
            }
        };
        if inside {
            return Err(
                "the endpoint must be on a public host (push services are on the internet)".into(),
            );
        }
    }
    let origin = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase());
    Ok((uri, origin))
}

/// True for an address on the internet: not loopback, private, link-local, shared (CGNAT),
/// multicast, documentation or unspecified.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// The push client's resolver: the system's, keeping only public addresses (all of them when
/// `allow_private`). A name with none left fails to connect, and the push is dropped.
#[derive(Clone)]
pub(crate) struct PublicResolver {
    pub allow_private: bool,
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{name} has no public address; push endpoints must be on the internet"
                )));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_on_public_hosts_unless_allowed() {
        let (_, origin) = check("https://fcm.googleapis.com/fcm/send/abc", false).unwrap();
        assert_eq!(origin, "https://fcm.googleapis.com");
        let (_, origin) = check("https://Push.Example.com:8443/x", false).unwrap();
        assert_eq!(origin, "https://push.example.com:8443");
        for bad in [
            "http://push.example.com/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://10.1.2.3/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://intranet/x",
            "https://u:p@push.example.com/x",
            "ftp://push.example.com/x",
            "not a url",
        ] {
            assert!(check(bad, false).is_err(), "{bad} was accepted");
        }
        assert!(check("http://127.0.0.1:9/x", true).is_ok());
        assert!(check(
            &format!("https://a.example/{}", "x".repeat(MAX_ENDPOINT_CHARS)),
            true
        )
        .is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_inside_addresses() {
        use tower_service::Service as _;
        let name: Name = "localhost".parse().unwrap();
        assert!(PublicResolver {
            allow_private: false
        }
        .call(name.clone())
        .await
        .is_err());
        let got: Vec<_> = PublicResolver {
            allow_private: true,
        }
        .call(name)
        .await
        .unwrap()
        .collect();
        assert!(got.iter().all(|a| a.ip().is_loopback()) && !got.is_empty());
    }
}
