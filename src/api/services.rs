//! The settings of the services pg_callback talks to besides receivers: the SMTP relay alert
//! emails go through (sql/emails.sql) and the object storage campaign reports go to
//! (sql/reports.sql). Part of the settings (settings.rs defines the rest); all reloaded on SIGHUP.

use super::settings::{check_hook, text, text_setting, DEFAULT_TIMEOUT_MS};
use pg_callback_core::mail::{self, Relay, Security};
use pg_callback_core::report::{self, Storage};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::PostgresGucEnum;
use std::ffi::CString;

pub static REPORT_BUCKET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static REPORT_ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static REPORT_REGION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"us-east-1"));
pub static REPORT_PREFIX: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"pg_callback/"));
pub static REPORT_ACCESS_KEY_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static REPORT_SECRET_ACCESS_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static REPORT_LINK_TTL_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
pub static SMTP_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static SMTP_PORT: GucSetting<i32> = GucSetting::<i32>::new(587);
pub static SMTP_SECURITY: GucSetting<SmtpSecurity> = GucSetting::<SmtpSecurity>::new(SmtpSecurity::Starttls);
pub static SMTP_USER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static SMTP_PASSWORD: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static SMTP_FROM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// How the workers reach the SMTP relay (pg_callback_core::mail::Security).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SmtpSecurity {
    #[name = c"starttls"]
    Starttls,
    #[name = c"implicit"]
    Implicit,
    #[name = c"off"]
    Off,
}

/// Defines them; called by settings::define.
pub fn define() {
    define_mail_settings();
    define_report_settings();
}

/// The SMTP relay alert emails go through (sql/emails.sql); reloaded on SIGHUP.
fn define_mail_settings() {
    text_setting(
        c"pg_callback.smtp_host",
        c"The SMTP relay alert emails go through.",
        c"Empty (the default): no emails are sent; each alert says so in callback.alert_summary.",
        &SMTP_HOST,
        GucFlags::default(),
        None,
    );
    GucRegistry::define_int_guc(
        c"pg_callback.smtp_port",
        c"The SMTP relay's port.",
        c"587 for STARTTLS, 465 for implicit TLS, 25 for a relay without TLS.",
        &SMTP_PORT,
        1,
        65_535,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_callback.smtp_security",
        c"How the connection to the SMTP relay is protected: starttls, implicit or off.",
        c"starttls (the default) requires STARTTLS; implicit is TLS from the start (SMTPS); off sends in the clear, for a relay on loopback. The relay's certificate is checked like receivers' (the system's store and pg_callback.ca_bundle).",
        &SMTP_SECURITY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    text_setting(
        c"pg_callback.smtp_user",
        c"The user name the workers log in to the SMTP relay with.",
        c"Empty: no login.",
        &SMTP_USER,
        GucFlags::default(),
        None,
    );
    text_setting(
        c"pg_callback.smtp_password",
        c"The password the workers log in to the SMTP relay with.",
        c"Shown to superusers only.",
        &SMTP_PASSWORD,
        GucFlags::SUPERUSER_ONLY,
        None,
    );
    text_setting(
        c"pg_callback.smtp_from",
        c"The From address of alert emails.",
        c"For example 'Callbacks <callbacks@example.com>'. Required when pg_callback.smtp_host is set.",
        &SMTP_FROM,
        GucFlags::default(),
        Some(check_smtp_from),
    );
}

/// The object storage campaign reports go to (sql/reports.sql); reloaded on SIGHUP.
fn define_report_settings() {
    text_setting(
        c"pg_callback.report_bucket",
        c"The S3 bucket campaign reports are uploaded to.",
        c"Empty (the default): campaign.complete goes when a campaign ends, without report_url. Set: it waits for the report's upload and carries a link to it.",
        &REPORT_BUCKET,
        GucFlags::default(),
        Some(check_report_bucket),
    );
    text_setting(
        c"pg_callback.report_endpoint",
        c"The URL of an S3-compatible service for campaign reports.",
        c"Empty (the default): AWS S3 in pg_callback.report_region. Set (e.g. MinIO's URL): path-style requests to it.",
        &REPORT_ENDPOINT,
        GucFlags::default(),
        None,
    );
    text_setting(
        c"pg_callback.report_region",
        c"The region of the report bucket.",
        c"Signed into every request (SigV4).",
        &REPORT_REGION,
        GucFlags::default(),
        None,
    );
    text_setting(
        c"pg_callback.report_prefix",
        c"The prefix of report objects' keys.",
        c"A report is written to <prefix>account-<id>/campaign-<id>.csv.",
        &REPORT_PREFIX,
        GucFlags::default(),
        None,
    );
    text_setting(
        c"pg_callback.report_access_key_id",
        c"The access key id reports are uploaded with.",
        c"With pg_callback.report_secret_access_key.",
        &REPORT_ACCESS_KEY_ID,
        GucFlags::default(),
        Some(check_report_credentials),
    );
    text_setting(
        c"pg_callback.report_secret_access_key",
        c"The secret access key reports are uploaded with.",
        c"Shown to superusers only.",
        &REPORT_SECRET_ACCESS_KEY,
        GucFlags::SUPERUSER_ONLY,
        Some(check_report_credentials),
    );
    GucRegistry::define_int_guc(
        c"pg_callback.report_link_ttl",
        c"How long a report's download link stays valid.",
        c"At most 7 days, as S3 allows for presigned links.",
        &REPORT_LINK_TTL_S,
        1,
        7 * 24 * 3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

check_hook!(
    /// Refuses a pg_callback.smtp_from that is not an email address.
    check_smtp_from,
    mail::check_address
);

check_hook!(
    /// Refuses a pg_callback.report_bucket that S3 would refuse.
    check_report_bucket,
    report::check_bucket
);

check_hook!(
    /// Refuses report credentials set by ALTER SYSTEM while no pg_callback.report_bucket is
    /// set, loaded or waiting in postgresql.auto.conf for the next reload: they would never be
    /// used. Not when a configuration file is read (outside any transaction), where the
    /// settings come in the file's order.
    check_report_credentials,
    |_: &str| {
        // SAFETY: reads the state of this backend's transaction.
        let altering = unsafe { pgrx::pg_sys::IsTransactionState() };
        let loaded = !text(&REPORT_BUCKET).unwrap_or_default().trim().is_empty();
        match altering && !loaded && !bucket_altered() {
            true => Err("pg_callback.report_bucket is not set: set it first, or these are never used".to_string()),
            false => Ok(()),
        }
    }
);

/// Whether postgresql.auto.conf (what ALTER SYSTEM wrote, reloaded or not) sets a report bucket.
fn bucket_altered() -> bool {
    // SAFETY: the data directory's path, set at startup.
    let data = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) }
        .to_string_lossy()
        .into_owned();
    let Ok(file) = std::fs::read_to_string(format!("{data}/postgresql.auto.conf")) else {
        return false;
    };
    file.lines()
        .rev()
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == "pg_callback.report_bucket")
        .is_some_and(|(_, value)| !value.trim().trim_matches('\'').trim().is_empty())
}

/// Where campaign reports go; None when pg_callback.report_bucket is empty.
pub fn storage() -> Option<Storage> {
    let bucket = text(&REPORT_BUCKET).unwrap_or_default().trim().to_string();
    if bucket.is_empty() {
        return None;
    }
    let endpoint = text(&REPORT_ENDPOINT).unwrap_or_default().trim().to_string();
    Some(Storage {
        endpoint: (!endpoint.is_empty()).then_some(endpoint),
        region: text(&REPORT_REGION).unwrap_or_default().trim().to_string(),
        bucket,
        prefix: text(&REPORT_PREFIX).unwrap_or_default(),
        access_key_id: text(&REPORT_ACCESS_KEY_ID).unwrap_or_default(),
        secret_access_key: text(&REPORT_SECRET_ACCESS_KEY).unwrap_or_default(),
        link_ttl: std::time::Duration::from_secs(REPORT_LINK_TTL_S.get().max(1) as u64),
        timeout: std::time::Duration::from_millis(DEFAULT_TIMEOUT_MS.get().max(1) as u64),
    })
}

/// The SMTP relay the settings name; None when pg_callback.smtp_host is empty.
pub fn relay() -> Option<Relay> {
    let host = text(&SMTP_HOST).unwrap_or_default().trim().to_string();
    if host.is_empty() {
        return None;
    }
    let user = text(&SMTP_USER).unwrap_or_default();
    Some(Relay {
        host,
        port: SMTP_PORT.get().clamp(1, 65_535) as u16,
        security: match SMTP_SECURITY.get() {
            SmtpSecurity::Starttls => Security::StartTls,
            SmtpSecurity::Implicit => Security::Implicit,
            SmtpSecurity::Off => Security::Off,
        },
        login: (!user.is_empty()).then(|| (user, text(&SMTP_PASSWORD).unwrap_or_default())),
        from: text(&SMTP_FROM).unwrap_or_default().trim().to_string(),
        timeout: std::time::Duration::from_millis(DEFAULT_TIMEOUT_MS.get().max(1) as u64),
    })
}
