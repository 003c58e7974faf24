//! What rendering reads for every event and rarely changes: the statuses, and what targets
//! are chosen from per campaign (or list) and account, kept per backend.
//!
//! Valid while the shared settings version is the one it was read at (src/pg/shared.rs): a
//! commit that changes a list, campaign, subscription, webhook or status bumps it (the
//! statement triggers at the end of sql/events.sql), and the changing transaction itself
//! reads afresh until then.

use super::plans::Plans;
use super::targets::{self, SourcesKey};
use crate::pg::shared;
use crate::pg::spi::installed_extension;
use pg_callback_core::event::{Status, Statuses};
use pg_callback_core::target::Sources;
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiResult};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub struct Cache {
    version: u64,
    extension: pg_sys::Oid,
    pub statuses: Statuses,
    sources: HashMap<SourcesKey, Rc<Sources>>,
}

/// Entries kept at most; past that the cache starts again.
const CACHE_ENTRIES: usize = 10_000;

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

fn read_statuses(client: &mut SpiClient<'_>, plans: &Plans) -> SpiResult<Statuses> {
    let mut statuses = HashMap::new();
    for row in client.select(&plans.statuses, None, &[])? {
        let status: String = row.get_by_name("status")?.unwrap_or_default();
        let is_final = row.get_by_name("final")?.unwrap_or(false);
        statuses.insert(
            status,
            Status {
                is_final,
                fires: row.get_by_name("fires")?,
            },
        );
    }
    Ok(statuses)
}

/// The settings version a cache must have been read at to be used now; None when nothing may
/// be cached (not preloaded, or this transaction changed what rendering caches).
fn cacheable_version() -> Option<u64> {
    shared::settings_version().filter(|_| !shared::settings_changed_here())
}

/// Runs `f` with the cache, made valid first (or, when nothing may be cached, a fresh one
/// used once).
pub fn with<R>(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    f: impl FnOnce(&mut SpiClient<'_>, &mut Cache) -> SpiResult<R>,
) -> SpiResult<R> {
    let extension = installed_extension();
    let version = cacheable_version();
    let fresh = |client: &mut SpiClient<'_>| -> SpiResult<Cache> {
        Ok(Cache {
            version: version.unwrap_or(0),
            extension,
            statuses: read_statuses(client, plans)?,
            sources: HashMap::new(),
        })
    };
    let Some(version) = version else {
        let mut once = fresh(client)?;
        return f(client, &mut once);
    };
    let mut cache = match CACHE.take() {
        Some(c) if c.holds_for(version, extension) && c.sources.len() < CACHE_ENTRIES => c,
        _ => fresh(client)?,
    };
    let result = f(client, &mut cache);
    CACHE.set(Some(cache));
    result
}

/// Runs `f` with the cache when it is valid for this transaction (None otherwise: reading it
/// takes statements).
pub fn cached<R>(f: impl FnOnce(&Cache) -> R) -> Option<R> {
    let version = cacheable_version()?;
    let extension = installed_extension();
    // Taken out while `f` runs, which may raise an error (one not valid is dropped).
    let cache = CACHE.take().filter(|c| c.holds_for(version, extension))?;
    let result = f(&cache);
    CACHE.set(Some(cache));
    Some(result)
}

impl Cache {
    /// Whether it was read at settings `version` for installation `extension`.
    fn holds_for(&self, version: u64, extension: pg_sys::Oid) -> bool {
        self.version == version && self.extension == extension
    }

    /// What the targets of events at `key` are chosen from.
    pub fn sources(&mut self, client: &mut SpiClient<'_>, plans: &Plans, key: SourcesKey) -> SpiResult<Rc<Sources>> {
        if let Some(found) = self.sources.get(&key) {
            return Ok(Rc::clone(found));
        }
        let sources = Rc::new(targets::sources(client, plans, key)?);
        self.sources.insert(key, Rc::clone(&sources));
        Ok(sources)
    }
}
