//! Who may call and from where: rate limits, trusted proxies, CORS origins.

use std::net::IpAddr;

use anyhow::{Context, bail};
use ipnet::IpNet;

use super::{ConfigArgs, GatewayConfig, RateConfig};

/// A trusted network: `10.0.0.0/8`, `::1/128`, or one address (`127.0.0.1`: a /32).
pub(crate) fn parse_network(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Rate limits, trusted proxies and load shedding.
pub(super) fn gateway_config(args: &ConfigArgs) -> anyhow::Result<GatewayConfig> {
    Ok(GatewayConfig {
        ip_rate: (args.rate_limit_ip_per_minute > 0).then_some(RateConfig {
            per_minute: args.rate_limit_ip_per_minute,
            burst: args.rate_limit_ip_burst,
        }),
        account_rate: (args.rate_limit_account_per_minute > 0).then_some(RateConfig {
            per_minute: args.rate_limit_account_per_minute,
            burst: args.rate_limit_account_burst,
        }),
        trusted_proxies: parse_proxies(&args.trusted_proxies)?,
        max_concurrent_requests: args.max_concurrent_requests as usize,
        max_sockets_per_account: args.max_sockets_per_account as usize,
    })
}

/// `https://a.example, http://localhost:3000` → exact origins; `*` is refused (the API
/// takes credentials in headers, and a wildcard would let any site use them).
pub(super) fn parse_origins(list: &str) -> anyhow::Result<Vec<String>> {
    let mut origins = Vec::new();
    for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if origin == "*" {
            bail!("JJONGAL_CORS_ORIGINS cannot be `*`: list the allowed origins");
        }
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.trim_end_matches('/').contains(['?', '#'])
            && origin.matches('/').count() == 2;
        if !valid {
            bail!("JJONGAL_CORS_ORIGINS: `{origin}` is not an origin like https://app.example.com");
        }
        origins.push(origin.to_string());
    }
    Ok(origins)
}

/// `10.0.0.1, 192.168.0.0/16, ::1` → networks; anything unparsable stops start-up.
fn parse_proxies(list: &str) -> anyhow::Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            parse_network(p).with_context(|| {
                format!("JJONGAL_TRUSTED_PROXIES: `{p}` is not an IP address or CIDR range")
            })
        })
        .collect()
}
