//! Bodies as `callback.requests` stores them: compressed with zstd against a dictionary of
//! pg_callback's own envelopes, so that a body of about 400 bytes of JSON is stored (and
//! written to the WAL) in about 50, byte for byte the body that is sent.
//!
//! A body alone compresses poorly: most of it is field names and punctuation, each written
//! once. The dictionary holds bodies of every event in every format (`body_dictionary_v1.txt`,
//! made by `cargo run -p pg_callback_core --example body_dictionary`), so a body is stored as
//! little more than what differs from them: its ids, times, statuses and destination.
//!
//! Stored: one byte naming the dictionary (1), then a zstd frame (its content size in its
//! header, no checksum: Postgres checks its pages). A dictionary is never changed once released,
//! since stored bodies are read with it: a better one is added as version 2, and version 1 kept
//! for reading.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// Version 1 of the dictionary: never to be changed (see above).
const DICTIONARY_V1: &[u8] = include_bytes!("body_dictionary_v1.txt");
const V1: u8 = 1;
/// zstd's level: 6 stores a message's body in 51 bytes where 3 takes 62, in 2 µs against 1; higher
/// levels took longer for no less.
const LEVEL: i32 = 6;
/// The largest body a stored one may claim to hold (a batch's is bounded far below).
const MAX_BODY: u64 = 256 << 20;

/// Why a stored body could not be read: not one `pack` made, or damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stored body could not be read: {}", self.0)
    }
}

fn encoder() -> &'static EncoderDictionary<'static> {
    static DICTIONARY: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL))
}

fn decoder() -> &'static DecoderDictionary<'static> {
    static DICTIONARY: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| DecoderDictionary::copy(DICTIONARY_V1))
}

thread_local! {
    // A context per thread, made once: making one costs more than compressing a body.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `body` as it is stored.
pub fn pack(body: &str) -> Vec<u8> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = cell.get_or_insert_with(|| {
            let mut c = Compressor::with_prepared_dictionary(encoder()).expect("a zstd context");
            c.include_checksum(false).expect("a zstd parameter");
            c.include_dictid(false).expect("a zstd parameter");
            c.include_contentsize(true).expect("a zstd parameter");
            c
        });
        let frame = compressor
            .compress(body.as_bytes())
            .expect("zstd compresses any input into a buffer it sizes itself");
        let mut stored = Vec::with_capacity(frame.len() + 1);
        stored.push(V1);
        stored.extend_from_slice(&frame);
        stored
    })
}

/// The body `pack` stored as `stored`.
pub fn unpack(stored: &[u8]) -> Result<String, Unreadable> {
    let Some((&version, frame)) = stored.split_first() else {
        return Err(Unreadable("it is empty".into()));
    };
    if version != V1 {
        return Err(Unreadable(format!("unknown dictionary version {version}")));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_BODY => size as usize,
        Ok(Some(size)) => return Err(Unreadable(format!("it claims {size} bytes"))),
        _ => return Err(Unreadable("no zstd frame with its size".into())),
    };
    let bytes = DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(d) => d,
            None => {
                cell.insert(Decompressor::with_prepared_dictionary(decoder()).map_err(|e| Unreadable(e.to_string()))?)
            }
        };
        decompressor
            .decompress(frame, size)
            .map_err(|e| Unreadable(e.to_string()))
    })?;
    String::from_utf8(bytes).map_err(|_| Unreadable("it is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = r#"{"data":{"account_id":1,"batch_id":null,"callback_data":"ref-7","campaign_id":1,"channel":"sms","created_at":"2026-12-05T03:14:00.249238Z","destination":"+306961110621","error":null,"final":true,"list_id":1,"member_id":100007,"message_id":100007,"previous_status":"sent","status":"delivered","status_at":"2026-12-05T03:14:01.795745Z"},"timestamp":"2026-12-05T03:14:07.667354Z","type":"message.status"}"#;

    #[test]
    fn bodies_come_back_byte_for_byte() {
        let xml =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><callback><data><message_id>3</message_id></data></callback>";
        let big = format!("{{\"results\":[{}]}}", vec![STATUS; 300].join(","));
        for body in [
            STATUS,
            xml,
            "type=message.status&data%5Bstatus%5D=read",
            "",
            "é ✓ \u{1F600}",
            big.as_str(),
        ] {
            assert_eq!(unpack(&pack(body)).unwrap(), body);
        }
    }

    #[test]
    fn an_event_body_is_stored_in_a_fraction_of_its_size() {
        let stored = pack(STATUS);
        assert!(
            stored.len() * 4 < STATUS.len(),
            "{} bytes stored for {}",
            stored.len(),
            STATUS.len()
        );
    }

    /// A body stored by version 1 (what `pack` made when it was released) reads back: the
    /// dictionary it needs has not changed.
    #[test]
    fn bodies_stored_by_version_1_stay_readable() {
        let stored = include_bytes!("../tests/body_v1.bin");
        assert_eq!(unpack(stored).unwrap(), STATUS);
    }

    #[test]
    fn what_pack_did_not_make_is_refused() {
        assert!(unpack(b"").is_err());
        assert!(unpack(b"{\"type\":1}")
            .unwrap_err()
            .to_string()
            .contains("unknown dictionary version 123"));
        assert!(unpack(&[1, 0x28, 0xb5, 0x2f]).is_err());
        let mut damaged = pack(STATUS);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        damaged.truncate(last);
        assert!(unpack(&damaged).is_err());
    }
}
