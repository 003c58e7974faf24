//! Every setting of pg_callback, defined in one place; the README's settings table mirrors it.

use pg_callback_core::destinations::Destinations;
use pg_callback_core::tls::{self, Trust};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::ffi::{CStr, CString};

pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(200);
pub static MAX_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(64);
pub static MAX_IN_FLIGHT_PER_HOST: GucSetting<i32> = GucSetting::<i32>::new(16);
pub static DEFAULT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static IDLE_EXIT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);
pub static RESPONSE_EXCERPT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static TIME_SCALE: GucSetting<f64> = GucSetting::<f64>::new(1.0);
pub static RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
pub static ALLOWED_DESTINATIONS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static SECRET_OVERLAP_S: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);
pub static CA_BUNDLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static ENDPOINT_DOWN_AFTER: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static ENDPOINT_PROBE_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static ENDPOINT_PROBE_MAX_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static RECORDING: GucSetting<Recording> = GucSetting::<Recording>::new(Recording::Deferred);

use super::services;
pub use super::services::{relay, storage};

/// What a transaction writes for an event (sql/events.sql).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Recording {
    /// The event, in callback.events; a worker renders its callbacks once it commits.
    #[name = c"deferred"]
    Deferred,
    /// The callbacks, rendered in the transaction.
    #[name = c"immediate"]
    Immediate,
}

/// Registers the settings; called from `_PG_init`. Postgres refuses postmaster-level
/// settings after startup, so those two are defined only while preloading (they matter only
/// to the launcher and workers, which exist only then).
pub fn define(preloading: bool) {
    if preloading {
        define_postmaster_settings();
    }
    define_delivery_settings();
    define_housekeeping_settings();
    define_health_settings();
    services::define();
    GucRegistry::define_enum_guc(
        c"pg_callback.recording",
        c"What a transaction writes for the events it causes: deferred or immediate.",
        c"deferred (the default): the event, and a worker renders its callbacks as soon as the transaction commits (cheaper for the application's UPDATE, dearer for the workers); immediate: the callbacks themselves, rendered in the transaction (visible to it, and a URL that cannot be filled refuses the change).",
        &RECORDING,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: a static C string; makes a misspelt pg_callback.* setting an error.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_callback".as_ptr()) };
}

fn define_postmaster_settings() {
    GucRegistry::define_string_guc(
        c"pg_callback.database",
        c"The database whose callbacks the workers deliver.",
        c"pg_callback must be installed (CREATE EXTENSION) in this database.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.workers",
        c"How many delivery workers run at once.",
        c"Each claims its own batches; together they need as many max_worker_processes slots, plus one for the launcher.",
        &WORKERS,
        1,
        32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// How the workers claim and send; reloaded on SIGHUP.
fn define_delivery_settings() {
    GucRegistry::define_int_guc(
        c"pg_callback.batch_size",
        c"How many callbacks a worker claims at a time.",
        c"A batch is claimed in one transaction and its results are written in one transaction.",
        &BATCH_SIZE,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.max_in_flight",
        c"How many HTTP requests each worker has in flight at once.",
        c"One thread each, sharing kept-alive connections.",
        &MAX_IN_FLIGHT,
        1,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.max_in_flight_per_host",
        c"How many HTTP requests each worker has in flight at once to one endpoint.",
        c"A slow or unreachable endpoint then holds this many threads at most; the others keep delivering. An endpoint is a URL's scheme, host and port.",
        &MAX_IN_FLIGHT_PER_HOST,
        1,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.default_timeout",
        c"The HTTP timeout of a retry policy that sets none.",
        c"Covers the whole request: connecting, sending and receiving the answer.",
        &DEFAULT_TIMEOUT_MS,
        1,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_callback.idle_exit",
        c"How long a worker with nothing to send waits before it exits.",
        c"The launcher, which holds no database connection, starts workers again when a callback is recorded or a retry comes due. Keep it under 5 s so DROP DATABASE does not wait for an idle worker.",
        &IDLE_EXIT_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}

/// When an endpoint is down and how it is probed (sql/health.sql); reloaded on SIGHUP.
fn define_health_settings() {
    GucRegistry::define_int_guc(
        c"pg_callback.endpoint_down_after",
        c"How many failures in a row take an endpoint down.",
        c"A failure is no answer (refused, timed out, reset, TLS) or a 5xx. A down endpoint's callbacks wait for a probe instead of spending their attempts. 0: endpoints are never down.",
        &ENDPOINT_DOWN_AFTER,
        0,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.endpoint_probe_interval",
        c"How long after an endpoint goes down its first probe is sent.",
        c"Each failed probe doubles the wait, up to pg_callback.endpoint_probe_max; times pg_callback.time_scale.",
        &ENDPOINT_PROBE_INTERVAL_S,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_callback.endpoint_probe_max",
        c"The longest wait between probes of a down endpoint.",
        c"Times pg_callback.time_scale.",
        &ENDPOINT_PROBE_MAX_S,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// What the workers keep, for how long, how fast retries come, where requests may go;
/// reloaded on SIGHUP.
fn define_housekeeping_settings() {
    GucRegistry::define_int_guc(
        c"pg_callback.response_excerpt",
        c"How many bytes of each answer's body the history keeps.",
        c"The rest of the body is read and dropped.",
        &RESPONSE_EXCERPT_BYTES,
        0,
        65_536,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_callback.retention",
        c"How long delivered callbacks and their history are kept.",
        c"Workers delete delivered callbacks finished longer ago, with their history, a batch at a time; failed callbacks are kept for replay. 0 keeps everything.",
        &RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_float_guc(
        c"pg_callback.time_scale",
        c"Multiplies every retry policy's waits, and the waits between probes of a down endpoint.",
        c"1 in production; tests compress schedules with a small value (0.001 makes 5 minutes 0.3 s). Retry-After is not scaled.",
        &TIME_SCALE,
        0.0,
        1000.0,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.secret_overlap",
        c"How long both signatures are sent after a signing secret is rotated.",
        c"callback.rotate_signing_secret() uses it unless given an overlap: requests signed with the old or the new secret carry both until it ends.",
        &SECRET_OVERLAP_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    text_setting(
        c"pg_callback.allowed_destinations",
        c"Host names and address ranges callbacks may be sent to although they are loopback, private, link-local or metadata addresses.",
        c"Separated by commas, e.g. 'localhost, 10.1.0.0/16, hooks.internal'. Empty (the default) refuses every such address; '0.0.0.0/0, ::/0' allows all.",
        &ALLOWED_DESTINATIONS,
        GucFlags::default(),
        Some(check_allowed_destinations),
    );
    text_setting(
        c"pg_callback.ca_bundle",
        c"A PEM file of certificate authorities trusted for HTTPS besides the system's.",
        c"For receivers whose certificates a private CA issued. Read by the workers when they start and on reload (a changed file is read again); the system's store (ca-certificates) is always trusted, and hostname and expiry are always checked. Empty (the default): the system's store only.",
        &CA_BUNDLE,
        GucFlags::default(),
        Some(check_ca_bundle),
    );
}

/// A text setting reloaded on SIGHUP; `check`, a hook made by `check_hook!`, refuses the new
/// values it finds wrong (None: every value is taken).
pub(super) fn text_setting(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
    flags: GucFlags,
    check: pg_sys::GucStringCheckHook,
) {
    // SAFETY: the hooks check_hook! makes only read (the new value, other settings, a file)
    // and set the error's detail.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            name,
            short,
            long,
            setting,
            GucContext::Sighup,
            flags,
            check,
            None,
            None,
        )
    }
}

/// Defines a string setting's check hook `$name`: `$valid` says what is wrong with the new
/// value (trimmed), if anything; an empty value (the setting's "none") is always accepted.
macro_rules! check_hook {
    ($(#[$doc:meta])* $name:ident, $valid:expr) => {
        $(#[$doc])*
        #[pgrx::pg_guard]
        unsafe extern "C-unwind" fn $name(
            newval: *mut *mut std::ffi::c_char,
            _extra: *mut *mut std::ffi::c_void,
            _source: pgrx::pg_sys::GucSource::Type,
        ) -> bool {
            let valid = |value: &str| match value.trim() {
                "" => Ok(()),
                value => ($valid)(value),
            };
            // SAFETY: as Postgres calls it.
            unsafe { $crate::api::settings::check(newval, valid) }
        }
    };
}
pub(super) use check_hook;

/// Runs a setting's check hook: `valid` says what is wrong with the new value, if anything,
/// and Postgres reports it as the error's detail.
///
/// # Safety
/// `newval` is what Postgres passes a string setting's check hook.
pub(super) unsafe fn check(newval: *mut *mut std::ffi::c_char, valid: impl FnOnce(&str) -> Result<(), String>) -> bool {
    // SAFETY: Postgres passes the new value, a C string or NULL.
    let value = unsafe {
        (*newval)
            .as_ref()
            .map(|v| std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    };
    match valid(value.as_deref().unwrap_or("")) {
        Ok(()) => true,
        Err(why) => {
            let why = CString::new(why).unwrap_or_default();
            // SAFETY: Postgres reports (and then frees) the detail set here.
            unsafe { pgrx::pg_sys::GUC_check_errdetail_string = pgrx::pg_sys::pstrdup(why.as_ptr()) };
            false
        }
    }
}

check_hook!(
    /// Refuses a value of pg_callback.allowed_destinations that does not parse.
    check_allowed_destinations,
    |value| Destinations::parse(value).map(|_| ())
);

check_hook!(
    /// Refuses a pg_callback.ca_bundle that cannot be read or holds no certificate.
    check_ca_bundle,
    |path| tls::bundle_certificates(std::path::Path::new(path)).map(|_| ())
);

/// A text setting's value (None when unset or not UTF-8).
pub(super) fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|c| c.into_string().ok())
}

/// What HTTPS trusts: the system's store and pg_callback.ca_bundle.
pub fn trust() -> Trust {
    Trust::with_bundle(&text(&CA_BUNDLE).unwrap_or_default())
}

/// What pg_callback.allowed_destinations allows (the check hook made sure it parses).
pub fn allowed_destinations() -> Destinations {
    Destinations::parse(&text(&ALLOWED_DESTINATIONS).unwrap_or_default()).unwrap_or_default()
}

pub fn database() -> String {
    text(&DATABASE).unwrap_or_else(|| "postgres".to_string())
}
