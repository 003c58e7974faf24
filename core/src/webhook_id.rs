//! Webhook-ids made from what a callback is, not at random: the callback of a stored event for
//! one target has the same id however many times the event is rendered. A worker's commits
//! can then be asynchronous (they wait for no disk): if a crash undoes one after its requests
//! went out, its events are rendered again into callbacks with the ids already sent, and
//! receivers drop the second copies as they drop retries.
//!
//! In: the installation (cluster, database, extension), the stored event's id and type, the
//! target's kind and subscription. Out: a UUID (version 8, RFC 9562), as 16 bytes.

use sha2::{Digest, Sha256};

/// What makes one installation's ids differ from another's: its cluster's system identifier,
/// its database and its extension (a new one numbers its events from 1 again).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Installation {
    pub system_identifier: u64,
    pub database: u32,
    pub extension: u32,
}

/// The webhook-id of the callback of stored event `event_id` (whose type is `event`, one of
/// the several a status change may make) for the target of `kind` (and `subscription`).
pub fn derived(
    installation: &Installation,
    event_id: i64,
    event: &str,
    kind: &str,
    subscription: Option<i64>,
) -> [u8; 16] {
    let mut hash = Sha256::new();
    hash.update(b"pg_callback webhook-id\0");
    hash.update(installation.system_identifier.to_be_bytes());
    hash.update(installation.database.to_be_bytes());
    hash.update(installation.extension.to_be_bytes());
    hash.update(event_id.to_be_bytes());
    // Each text ends with a byte no name holds, so that no two lists of parts run together.
    for part in [event, kind] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    match subscription {
        Some(id) => hash.update([&[1u8][..], &id.to_be_bytes()].concat()),
        None => hash.update([0u8]),
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.finalize()[..16]);
    id[6] = (id[6] & 0x0f) | 0x80; // version 8: made by the application's own method
    id[8] = (id[8] & 0x3f) | 0x80; // RFC 9562 variant
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: Installation = Installation {
        system_identifier: 7_400_000_000_000_000_001,
        database: 16_384,
        extension: 16_400,
    };

    fn id(event_id: i64, kind: &str, subscription: Option<i64>) -> [u8; 16] {
        derived(&HERE, event_id, "message.delivered", kind, subscription)
    }

    #[test]
    fn the_same_callback_has_the_same_id() {
        assert_eq!(id(42, "list", None), id(42, "list", None));
        assert_eq!(id(42, "subscription", Some(3)), id(42, "subscription", Some(3)));
    }

    #[test]
    fn every_part_tells_callbacks_apart() {
        let one = id(42, "list", None);
        assert_ne!(one, id(43, "list", None));
        assert_ne!(one, id(42, "campaign", None));
        assert_ne!(one, derived(&HERE, 42, "message.final", "list", None));
        assert_ne!(id(42, "subscription", Some(3)), id(42, "subscription", Some(4)));
        assert_ne!(id(42, "subscription", Some(0)), id(42, "subscription", None));
        for other in [
            Installation {
                system_identifier: 1,
                ..HERE
            },
            Installation { database: 5, ..HERE },
            Installation {
                extension: 16_401,
                ..HERE
            },
        ] {
            assert_ne!(one, derived(&other, 42, "message.delivered", "list", None));
        }
    }

    #[test]
    fn texts_do_not_run_together() {
        let a = derived(&HERE, 1, "message.x", "list", None);
        let b = derived(&HERE, 1, "message.", "xlist", None);
        assert_ne!(a, b);
    }

    #[test]
    fn is_a_version_8_uuid() {
        for event_id in 0..100 {
            let id = id(event_id, "account", None);
            assert_eq!(id[6] >> 4, 8);
            assert_eq!(id[8] >> 6, 0b10);
        }
    }
}
