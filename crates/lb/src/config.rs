//! What a [`crate::Balancer`] is told: backends, the health check and its thresholds, the balancing policy and
//! what happens to connections of a backend that goes down.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// How a backend's health is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect succeeds (HAProxy's plain `check`, guide A's "TCP connect to port 6443").
    Tcp,
    /// `GET <path>` over TLS answers `200`, without verifying the certificate (HAProxy's
    /// `option httpchk GET /readyz` with `check-ssl verify none`): an API server that is up but not ready, for
    /// example one whose etcd is gone, gets no new connections.
    Https { path: String },
}

/// Which healthy backend a new connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each new connection to the next healthy backend in turn (HAProxy's `balance roundrobin`).
    #[default]
    RoundRobin,
    /// The healthy backend with the fewest open connections; ties in turn (HAProxy's `balance leastconn`).
    LeastConnections,
}

/// Everything a [`crate::Balancer`] needs. [`Config::default`] has HAProxy's thresholds (`inter 2s rise 2 fall 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The initial backend set; [`crate::Balancer::set_backends`] replaces it live.
    pub backends: Vec<SocketAddr>,
    pub check: Check,
    /// Time between two checks of one backend.
    pub interval: Duration,
    /// Limit for one whole check (connect, and for HTTPS the handshake and the status line).
    pub timeout: Duration,
    /// Passed checks in a row that bring a down backend up.
    pub rise: u32,
    /// Failed checks in a row that take an up backend down.
    pub fall: u32,
    /// Limit for connecting to a backend on behalf of a client; the next healthy backend is tried after it.
    pub connect_timeout: Duration,
    pub balance: Balance,
    /// When a backend goes down (or is removed), its open connections are closed after this grace, so clients
    /// notice at once and reconnect through the balancer to a healthy backend instead of waiting on a dead peer.
    /// `None` keeps them until either side closes.
    pub drain_grace: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            check: Check::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            connect_timeout: Duration::from_secs(3),
            balance: Balance::RoundRobin,
            drain_grace: Some(Duration::from_secs(2)),
        }
    }
}

impl Config {
    /// Rejects settings that cannot work (zero thresholds or periods, a check path that is not an absolute path).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.rise == 0 {
            return bad("rise must be at least 1");
        }
        if self.fall == 0 {
            return bad("fall must be at least 1");
        }
        if self.interval.is_zero() {
            return bad("the check interval must be positive");
        }
        if self.timeout.is_zero() {
            return bad("the check timeout must be positive");
        }
        if self.connect_timeout.is_zero() {
            return bad("the connect timeout must be positive");
        }
        if let Check::Https { path } = &self.check
            && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::Config(format!(
                "the check path {path:?} must start with '/' and contain no spaces"
            )));
        }
        Ok(())
    }
}

/// Parses a duration as Go and Kubernetes write them (`2s`, `500ms`, `1m30s`, `1.5s`); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let bad = || Error::Config(format!("invalid duration {text:?} (examples: 2s, 500ms, 1m30s)"));
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(value * seconds).map_err(|_| bad())?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("2s").ok(), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
        for bad in ["", "2", "s", "2x", "-1s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn zero_thresholds_and_relative_check_paths_are_rejected() {
        assert!(Config::default().validate().is_ok());
        for config in [
            Config {
                rise: 0,
                ..Config::default()
            },
            Config {
                fall: 0,
                ..Config::default()
            },
            Config {
                interval: Duration::ZERO,
                ..Config::default()
            },
            Config {
                check: Check::Https {
                    path: "readyz".into(),
                },
                ..Config::default()
            },
            Config {
                check: Check::Https {
                    path: "/readyz HTTP/1.0\r\n".into(),
                },
                ..Config::default()
            },
        ] {
            assert!(config.validate().is_err(), "{config:?} accepted");
        }
    }
}
