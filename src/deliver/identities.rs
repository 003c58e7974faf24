//! Client certificates (mutual TLS) as a worker presents them: read from
//! `callback.client_certificates` the first time a claimed callback names one at a version
//! this worker has not read, parsed once (pg_callback_core::tls::client_certificate) and kept.
//!
//! In: the id and version the claim found for each callback (sql/certificates.sql). Out: the
//! `Identity` its request carries. SQL: sql/worker/client_certificate.sql.

use super::claim::Claimed;
use pg_callback_core::http::Identity;
use pg_callback_core::tls;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::cell::RefCell;
use std::collections::HashMap;

const READ: &str = include_str!("../../sql/worker/client_certificate.sql");

/// Certificates kept at most; past that the worker reads them again.
const KEPT_AT_MOST: usize = 1000;

thread_local! {
    /// By id: the version read, and the certificate (None when it could not be used).
    static KEPT: RefCell<HashMap<i64, (u64, Option<Identity>)>> = RefCell::new(HashMap::new());
}

/// Gives each claimed callback the certificate the claim found for it (`found`, in the same
/// order: its id and version), reading those not kept at that version.
pub fn attach(client: &mut SpiClient<'_>, claimed: &mut [Claimed], found: &[Option<Vec<i64>>]) -> SpiResult<()> {
    for (c, found) in claimed.iter_mut().zip(found) {
        let Some(&[id, version]) = found.as_deref() else {
            continue;
        };
        let version = version as u64;
        let kept = KEPT.with_borrow(|kept| kept.get(&id).filter(|(v, _)| *v == version).map(|(_, i)| i.clone()));
        c.identity = match kept {
            Some(identity) => identity,
            None => read(client, c.account_id, id, version)?,
        };
    }
    Ok(())
}

/// Reads and parses certificate `id` and keeps it at `version`. One that cannot be used (it
/// was checked when written, so only if changed behind the checks) is logged once and not
/// presented: the receiver then says what it misses.
fn read(client: &mut SpiClient<'_>, account_id: i64, id: i64, version: u64) -> SpiResult<Option<Identity>> {
    let args = [account_id.into(), id.into()];
    let table = client.select(READ, Some(1), &args)?.first();
    let pem: (Option<String>, Option<String>) = (table.get_by_name("certificate")?, table.get_by_name("private_key")?);
    let identity = match pem {
        (Some(certificate), Some(key)) => match tls::client_certificate(&certificate, &key) {
            Ok(certificate) => Some(Identity {
                id,
                version,
                certificate,
            }),
            Err(e) => {
                warning!("pg_callback worker: client certificate {id} of account {account_id} is not presented: {e}");
                None
            }
        },
        _ => None,
    };
    KEPT.with_borrow_mut(|kept| {
        if kept.len() >= KEPT_AT_MOST {
            kept.clear();
        }
        kept.insert(id, (version, identity.clone()));
    });
    Ok(identity)
}
