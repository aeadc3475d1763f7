//! Opaque, tamper-evident pagination cursors, bound to the listing they were issued for.
//!
//! A cursor is `base64url(json payload) "." base64url(hmac-sha256(payload)[..16])`. The
//! payload names the listing (`scope`: e.g. sort key, order and filter); a cursor altered,
//! forged, or presented with other parameters is a validation error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::error::{AppError, AppResult};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub(crate) struct CursorCodec {
    key: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// The listing this cursor belongs to.
    s: String,
    /// Where the previous page ended.
    p: T,
}

impl CursorCodec {
    /// Derives its own key from `secret`, separated from the secret's other uses.
    pub(crate) fn new(secret: &Secret) -> CursorCodec {
        let mut h = Sha256::new();
        h.update(b"jjongal cursor key v1\0");
        h.update(secret.expose());
        CursorCodec {
            key: h.finalize().into(),
        }
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    pub(crate) fn encode<T: Serialize>(&self, scope: &str, position: &T) -> String {
        let payload = serde_json::to_vec(&Envelope {
            s: scope.to_string(),
            p: position,
        })
        .expect("cursor payload serialises");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(&payload))
        )
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, scope: &str, cursor: &str) -> AppResult<T> {
        let invalid = || AppError::validation("start_cursor가 올바르지 않습니다.");
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        if tag.len() != 16 {
            return Err(invalid());
        }
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&payload);
        mac.verify_truncated_left(&tag).map_err(|_| invalid())?;
        let envelope: Envelope<T> = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if envelope.s != scope {
            return Err(AppError::validation(
                "start_cursor는 발급될 때와 같은 status/sort_by/order로만 사용할 수 있습니다.",
            ));
        }
        Ok(envelope.p)
    }
}

/// Where a newest-first listing ordered by (created_at, id) stopped.
#[derive(Serialize, Deserialize)]
pub(crate) struct TimePosition {
    /// Microseconds since the epoch (both backends keep microseconds).
    pub t: i64,
    pub id: String,
}

impl TimePosition {
    pub(crate) fn of(t: chrono::NaiveDateTime, id: impl std::fmt::Display) -> TimePosition {
        TimePosition {
            t: t.and_utc().timestamp_micros(),
            id: id.to_string(),
        }
    }

    /// Where a newest-first listing of `scope` resumes after the cursor `after`: the
    /// store's (creation time, id).
    pub(crate) fn resume<Id: std::str::FromStr>(
        codec: &CursorCodec,
        scope: &str,
        after: Option<&str>,
    ) -> AppResult<Option<(chrono::NaiveDateTime, Id)>> {
        let Some(cursor) = after else {
            return Ok(None);
        };
        let position: TimePosition = codec.decode(scope, cursor)?;
        let id = position.id.parse().map_err(|_| invalid_cursor())?;
        Ok(Some((position.time()?, id)))
    }

    /// The stored timestamp; a cursor that does not give one is invalid.
    pub(crate) fn time(&self) -> AppResult<chrono::NaiveDateTime> {
        micros_to_db(self.t)
    }
}

impl CursorCodec {
    /// The rows of a newest-first page of `scope`, each made an item with the cursor that
    /// resumes after it (`key`: the row's creation time and id).
    pub(crate) fn newest_first_items<R, T, Id: std::fmt::Display>(
        &self,
        scope: &str,
        rows: Vec<R>,
        key: impl Fn(&R) -> (chrono::NaiveDateTime, Id),
        mut item: impl FnMut(R) -> AppResult<T>,
    ) -> AppResult<Vec<(String, T)>> {
        rows.into_iter()
            .map(|row| {
                let (t, id) = key(&row);
                let cursor = self.encode(scope, &TimePosition::of(t, id));
                Ok((cursor, item(row)?))
            })
            .collect()
    }
}

/// Microseconds from a cursor back to a stored timestamp.
pub(crate) fn micros_to_db(us: i64) -> AppResult<chrono::NaiveDateTime> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.naive_utc())
        .ok_or_else(invalid_cursor)
}

/// A cursor we did not make (or one for something else).
pub(crate) fn invalid_cursor() -> AppError {
    AppError::validation("start_cursor가 올바르지 않습니다.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new(&Secret::new(b"k".to_vec()))
    }

    #[test]
    fn round_trips_and_rejects_tampering_and_other_scopes() {
        let c = codec();
        let cursor = c.encode("created_at:desc:-", &(42i64, "id"));
        let back: (i64, String) = c.decode("created_at:desc:-", &cursor).unwrap();
        assert_eq!(back, (42, "id".to_string()));
        assert!(
            c.decode::<(i64, String)>("created_at:asc:-", &cursor)
                .is_err()
        );
        let (p, t) = cursor.split_once('.').unwrap();
        let mut forged = URL_SAFE_NO_PAD.decode(p).unwrap();
        let n = forged.len();
        forged[n - 3] ^= 1;
        let forged = format!("{}.{t}", URL_SAFE_NO_PAD.encode(forged));
        assert!(
            c.decode::<(i64, String)>("created_at:desc:-", &forged)
                .is_err()
        );
        for junk in ["", ".", "abc", "abc.def", &format!("{p}.")] {
            assert!(
                c.decode::<(i64, String)>("created_at:desc:-", junk)
                    .is_err()
            );
        }
        let other = CursorCodec::new(&Secret::new(b"other".to_vec()));
        assert!(
            other
                .decode::<(i64, String)>("created_at:desc:-", &cursor)
                .is_err()
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn codec() -> CursorCodec {
            CursorCodec::new(&Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()))
        }

        proptest! {
            /// Whatever a client sends as a cursor, decoding answers (never panics), and
            /// only cursors this codec issued are accepted.
            #[test]
            fn arbitrary_cursors_are_refused_without_panicking(cursor in any::<String>()) {
                prop_assert!(codec().decode::<TimePosition>("stories", &cursor).is_err());
            }

            #[test]
            fn base64_shaped_garbage_is_refused(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,40}") {
                let cursor = format!("{a}.{b}");
                prop_assert!(codec().decode::<TimePosition>("stories", &cursor).is_err());
            }

            /// Issued cursors round-trip; any one-character change, or another scope,
            /// is refused.
            #[test]
            fn issued_cursors_round_trip_and_resist_tampering(
                t in any::<i64>(),
                id in any::<String>(),
                scope in "[a-z_|]{1,30}",
                at in any::<prop::sample::Index>(),
                with in prop::char::range('!', '~'),
            ) {
                let codec = codec();
                let cursor = codec.encode(&scope, &TimePosition { t, id: id.clone() });
                let back: TimePosition = codec.decode(&scope, &cursor).unwrap();
                prop_assert_eq!(back.t, t);
                prop_assert_eq!(back.id, id);
                let other_scope = format!("{scope}x");
                prop_assert!(codec.decode::<TimePosition>(&other_scope, &cursor).is_err());
                let mut chars: Vec<char> = cursor.chars().collect();
                let i = at.index(chars.len());
                if chars[i] != with {
                    chars[i] = with;
                    let tampered: String = chars.into_iter().collect();
                    prop_assert!(codec.decode::<TimePosition>(&scope, &tampered).is_err());
                }
            }
        }
    }
}
