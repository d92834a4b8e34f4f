//! What a certificate says about itself (names, issuer, dates), read from its DER: for the ACME
//! resolver and logs, and for `hermes-edge cert status` whatever issued the certificate.

/// The moment renewal starts: when two thirds of the lifetime have passed (30 days before expiry for a
/// 90-day Let's Encrypt certificate). This mirrors rustls-acme's own schedule, which is what actually
/// triggers the renewal order.
pub(crate) fn renewal_time(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_after - lifetime / 3
}

/// What a certificate says about itself, for logs and `hermes-edge cert status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses, in certificate order.
    pub sans: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// Hex, colon-separated.
    pub serial: String,
}

impl CertInfo {
    /// Reads the first certificate of a DER chain.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        sans.push((*dns).to_string())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            sans.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            sans.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.raw_serial_as_string(),
        })
    }

    /// When rustls-acme starts renewing this certificate (see [`renewal_time`]).
    pub(crate) fn renewal_due(&self) -> i64 {
        renewal_time(self.not_before, self.not_after)
    }

    /// Whether `name` (a TLS server name) is one of this certificate's DNS names.
    pub(crate) fn covers(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.sans.iter().any(|san| san.eq_ignore_ascii_case(name))
    }
}
