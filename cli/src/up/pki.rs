//! The development PKI `up` keeps in `<data>/pki`: the CA (made on the first run), and an mTLS
//! certificate for every service and for the operator, issued at every start and renewed
//! while `up` runs, before a third of their lifetime is left. Services read renewed files
//! without restarting (`mtls.reload_every`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chassis::client::Transport;
use chassis::mtls::{Identity, MtlsConfig, OPERATOR};
use chassis::tls::{DevCa, TlsError};
use tokio_util::sync::CancellationToken;

use crate::args::Service;

/// Shortest certificate lifetime `up` issues: renewals every few seconds are only noise.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(30);

/// The CA and the certificates it issued, with their expiries.
#[derive(Debug)]
pub(crate) struct Pki {
    ca: DevCa,
    lifetime: Duration,
    expiries: BTreeMap<String, SystemTime>,
}

impl Pki {
    /// Opens (or makes) the CA in `dir` and issues every certificate, each valid for
    /// `lifetime`.
    pub(crate) fn issue(dir: &Path, lifetime: Duration) -> Result<Self, TlsError> {
        let mut pki = Self {
            ca: DevCa::open(dir)?,
            lifetime,
            expiries: BTreeMap::new(),
        };
        let names = Service::ALL
            .iter()
            .map(|s| s.name())
            .chain([OPERATOR])
            .map(str::to_owned)
            .collect::<Vec<_>>();
        for name in names {
            pki.renew(&name)?;
        }
        Ok(pki)
    }

    /// The folder of the certificates.
    pub(crate) fn dir(&self) -> &Path {
        &self.ca.dir
    }

    /// The operator's way to call services: presenting `operator.pem`.
    pub(crate) fn operator(&self) -> Result<Transport, TlsError> {
        Ok(Transport::with_identity(Identity::load(&operator_config(
            self.dir(),
        ))?))
    }

    fn renew(&mut self, name: &str) -> Result<(), TlsError> {
        let (_, not_after) = self.ca.issue_workload(name, self.lifetime)?;
        self.expiries.insert(name.to_owned(), not_after);
        Ok(())
    }

    /// The certificates with less than a third of their lifetime left at `now`.
    fn due(&self, now: SystemTime) -> Vec<String> {
        let margin = self.lifetime / 3;
        self.expiries
            .iter()
            .filter(|(_, not_after)| {
                not_after
                    .duration_since(now)
                    .map_or(true, |left| left < margin)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// How often to look for certificates due: a tenth of the lifetime, at most a minute.
    fn check_every(&self) -> Duration {
        (self.lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Renews certificates as they fall due, until `stop`.
    pub(crate) async fn renew_until(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.check_every()) => {}
            }
            for name in self.due(SystemTime::now()) {
                match self.renew(&name) {
                    Ok(()) => tracing::debug!(name, "certificate renewed"),
                    // The current certificate still has a third of its life: try again soon.
                    Err(error) => eprintln!("! renewing the certificate of {name} failed: {error}"),
                }
            }
        }
    }
}

/// The operator's certificate in the PKI folder `dir`.
pub(crate) fn operator_config(dir: &Path) -> MtlsConfig {
    MtlsConfig {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{OPERATOR}.pem")),
        key: dir.join(format!("{OPERATOR}.key")),
        ..MtlsConfig::default()
    }
}

/// The PKI folder of the data directory `data_dir`.
pub(crate) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_issued_for_every_service_and_renewed_with_a_third_left() {
        let dir = tempfile::tempdir().expect("dir");
        let lifetime = Duration::from_secs(3600);
        let pki = Pki::issue(dir.path(), lifetime).expect("issued");
        assert_eq!(pki.expiries.len(), Service::ALL.len() + 1);
        for service in Service::ALL {
            let config = MtlsConfig {
                cert: dir.path().join(format!("{}.pem", service.name())),
                key: dir.path().join(format!("{}.key", service.name())),
                ..operator_config(dir.path())
            };
            let identity = Identity::load(&config)
                .expect("usable")
                .expect("configured");
            assert_eq!(identity.service(), service.name());
        }
        assert!(pki.operator().is_ok());

        let now = SystemTime::now();
        assert!(pki.due(now).is_empty());
        assert!(pki.due(now + lifetime / 2).is_empty());
        assert_eq!(pki.due(now + lifetime * 7 / 10).len(), pki.expiries.len());
        assert_eq!(pki.check_every(), Duration::from_secs(60));
    }
}
