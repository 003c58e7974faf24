//! Campaign reports in object storage (seed 003's `report_url`): a report's CSV uploaded to an
//! S3-compatible bucket as it is read, a part at a time (never the whole file in memory), and a
//! presigned link to download it. Requests are signed (SigV4) by rusty-s3 and sent with ureq.
//!
//! In: the storage settings, the report's bytes as they come. Out: the object written, or why
//! not and whether trying again could help; the download link.

use rusty_s3::actions::CompleteMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Parts are this big (S3 wants at least 5 MiB but for the last); a report smaller than one
/// part is written with a single PUT.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// How long each signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// Where reports go.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// The service's URL; None: AWS's for the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// How long a download link stays valid.
    pub link_ttl: Duration,
    pub timeout: Duration,
}

/// Whether `name` is a bucket name S3 accepts: 3 to 63 lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit, no two dots together, not an IP address.
pub fn check_bucket(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("\"{name}\" is not a bucket name S3 accepts: {why}"));
    if !(3..=63).contains(&name.len()) {
        return bad("it must have 3 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("it must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("two dots together");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("it looks like an IP address");
    }
    Ok(())
}

/// The object a campaign's report is written to.
pub fn object_key(prefix: &str, account_id: i64, campaign_id: i64) -> String {
    format!("{prefix}account-{account_id}/campaign-{campaign_id}.csv")
}

/// Why an upload failed, and whether trying again could help (no answer, a 5xx, 408, 429).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub permanent: bool,
}

impl Storage {
    fn bucket(&self) -> Result<Bucket, Failure> {
        let (endpoint, style) = match &self.endpoint {
            Some(url) => (url.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", self.region),
                UrlStyle::VirtualHost,
            ),
        };
        let permanent = |error: String| Failure { error, permanent: true };
        let url = endpoint
            .parse()
            .map_err(|e| permanent(format!("the storage endpoint \"{endpoint}\" is not a URL: {e}")))?;
        Bucket::new(url, style, self.bucket.clone(), self.region.clone())
            .map_err(|e| permanent(format!("the bucket's URL cannot be made: {e:?}")))
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(self.access_key_id.clone(), self.secret_access_key.clone())
    }

    /// A link that downloads `key` for `link_ttl` (at most 7 days, as S3 allows).
    pub fn link(&self, key: &str) -> Result<String, Failure> {
        let bucket = self.bucket()?;
        let credentials = self.credentials();
        let ttl = self
            .link_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));
        Ok(bucket.get_object(Some(&credentials), key).sign(ttl).to_string())
    }
}

/// An upload under way: bytes are buffered up to a part, then sent.
pub struct Upload {
    storage: Storage,
    bucket: Bucket,
    agent: ureq::Agent,
    key: String,
    buffer: Vec<u8>,
    /// The multipart upload's id and the parts' ETags, once the report outgrew one part.
    multipart: Option<(String, Vec<String>)>,
    pub bytes: u64,
}

impl Upload {
    /// Starts writing object `key`, trusting `roots` for HTTPS.
    pub fn new(storage: &Storage, key: &str, roots: &[Certificate<'static>]) -> Result<Upload, Failure> {
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(roots))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(storage.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        Ok(Upload {
            bucket: storage.bucket()?,
            storage: storage.clone(),
            agent: ureq::Agent::new_with_config(config),
            key: key.to_string(),
            buffer: Vec::with_capacity(PART_BYTES),
            multipart: None,
            bytes: 0,
        })
    }

    /// Adds bytes, sending a part when one is full.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.buffer.extend_from_slice(bytes);
        self.bytes += bytes.len() as u64;
        if self.buffer.len() >= PART_BYTES {
            self.send_part()?;
        }
        Ok(())
    }

    fn send_part(&mut self) -> Result<(), Failure> {
        let credentials = self.storage.credentials();
        if self.multipart.is_none() {
            let url = self
                .bucket
                .create_multipart_upload(Some(&credentials), &self.key)
                .sign(SIGNED_FOR);
            let body = self.post(url.as_str(), &[])?;
            // The one element wanted, read as it is: S3-compatible servers differ in the XML
            // namespace around it, which rusty-s3's parser insists on.
            let id = between(&body, "<UploadId>", "</UploadId>")
                .ok_or_else(|| temporary("the storage's answer to starting an upload has no UploadId".into()))?;
            self.multipart = Some((id.to_string(), Vec::new()));
        }
        let (id, etags) = self
            .multipart
            .as_ref()
            .map(|(id, etags)| (id.clone(), etags.len()))
            .unwrap_or_default();
        let part = u16::try_from(etags + 1).map_err(|_| permanent("the report has more than 65,535 parts".into()))?;
        let url = self
            .bucket
            .upload_part(Some(&credentials), &self.key, part, &id)
            .sign(SIGNED_FOR);
        let body = std::mem::take(&mut self.buffer);
        let etag = self.put(url.as_str(), &body)?;
        if let Some((_, etags)) = &mut self.multipart {
            etags.push(etag);
        }
        Ok(())
    }

    /// Sends what is left and completes the object; its size in bytes.
    pub fn finish(mut self) -> Result<u64, Failure> {
        let credentials = self.storage.credentials();
        let Some((id, _)) = &self.multipart else {
            let url = self.bucket.put_object(Some(&credentials), &self.key).sign(SIGNED_FOR);
            let body = std::mem::take(&mut self.buffer);
            self.put(url.as_str(), &body)?;
            return Ok(self.bytes);
        };
        let id = id.clone();
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        let etags = self.multipart.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        let complete =
            self.bucket
                .complete_multipart_upload(Some(&credentials), &self.key, &id, etags.iter().map(String::as_str));
        let url = complete.sign(SIGNED_FOR);
        let body = CompleteMultipartUpload::body(complete);
        self.post(url.as_str(), body.as_bytes())?;
        Ok(self.bytes)
    }

    /// Gives up a multipart upload, so the storage keeps no parts of it.
    pub fn abort(self) {
        if let Some((id, _)) = &self.multipart {
            let credentials = self.storage.credentials();
            let url = self
                .bucket
                .abort_multipart_upload(Some(&credentials), &self.key, id)
                .sign(SIGNED_FOR);
            let _ = self.agent.delete(url.as_str()).call();
        }
    }

    /// PUTs `body`; the ETag the storage answers.
    fn put(&self, url: &str, body: &[u8]) -> Result<String, Failure> {
        let response = self
            .agent
            .put(url)
            .send(body)
            .map_err(|e| temporary(format!("storage: {e}")))?;
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        answered(response).map(|_| etag)
    }

    /// POSTs `body`; the body of the storage's answer.
    fn post(&self, url: &str, body: &[u8]) -> Result<String, Failure> {
        let sent = self.agent.post(url).send(body);
        answered(sent.map_err(|e| temporary(format!("storage: {e}")))?)
    }
}

fn temporary(error: String) -> Failure {
    Failure {
        error,
        permanent: false,
    }
}

fn permanent(error: String) -> Failure {
    Failure { error, permanent: true }
}

/// The body of a 2xx answer; a failure saying what the storage said otherwise.
fn answered(mut response: ureq::http::Response<ureq::Body>) -> Result<String, Failure> {
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let code = between(&body, "<Code>", "</Code>").unwrap_or("no error code");
    let error = format!("storage answered HTTP {status} ({code})");
    Err(Failure {
        permanent: !(status >= 500 || status == 408 || status == 429),
        error,
    })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_s3_would_refuse_are_refused() {
        for good in ["reports", "acme.reports-2026", "a1b"] {
            assert!(check_bucket(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("Reports", "lowercase"),
            ("-reports", "start and end"),
            ("acme..reports", "two dots"),
            ("192.168.1.10", "IP address"),
            ("under_score", "lowercase"),
        ] {
            let error = check_bucket(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn links_are_presigned_for_the_ttl_with_path_style_on_a_custom_endpoint() {
        let storage = Storage {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "eu-west-1".into(),
            bucket: "reports".into(),
            prefix: "pg/".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            link_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        };
        let key = object_key(&storage.prefix, 1, 7);
        assert_eq!(key, "pg/account-1/campaign-7.csv");
        let link = storage.link(&key).unwrap();
        assert!(
            link.starts_with("http://127.0.0.1:9000/reports/pg/account-1/campaign-7.csv?"),
            "{link}"
        );
        assert!(
            link.contains("X-Amz-Expires=3600") && link.contains("X-Amz-Signature="),
            "{link}"
        );
        assert!(link.contains("eu-west-1"), "{link}");
    }

    #[test]
    fn storage_errors_say_the_code_and_whether_to_retry() {
        let answer = |status: u16, body: &str| {
            ureq::http::Response::builder()
                .status(status)
                .body(ureq::Body::builder().data(body.to_string()))
                .unwrap()
        };
        let missing = answered(answer(404, "<Error><Code>NoSuchBucket</Code></Error>")).unwrap_err();
        assert_eq!(missing, permanent("storage answered HTTP 404 (NoSuchBucket)".into()));
        assert!(!answered(answer(503, "")).unwrap_err().permanent);
        assert_eq!(answered(answer(200, "ok")).unwrap(), "ok");
    }
}
