//! Media files on disk behind signed, expiring URLs (contract §4).
//!
//! `{base}/media/{path}?md5={sig}&expires={unix}` with
//! `sig = base64url_nopad(md5("{expires}{uri} {secret}"))`, `uri` the percent-decoded
//! path starting with `/media/` — exactly what Nginx's
//! `secure_link_md5 "$secure_link_expires$uri <secret>"` checks, so Nginx can serve the
//! bytes itself; `http::media` does the same checks when no Nginx is in front.

pub mod epub;
pub mod label;
pub mod tar;
pub mod zip;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// URL prefix of media.
pub(crate) const PREFIX: &str = "/media/";

/// A signed URL and the instant it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    pub expires: DateTime<Utc>,
}

/// Why a media request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// Missing or wrong signature, or a path that can never be valid.
    Forbidden,
    /// Correctly signed but past its expiry.
    Expired,
}

/// The media directory and the secret that signs its URLs.
#[derive(Clone, Debug)]
pub struct MediaStore {
    dir: PathBuf,
    secret: Secret,
    public_url: String,
    ttl: Duration,
}

impl MediaStore {
    pub(crate) fn new(
        dir: PathBuf,
        secret: Secret,
        public_url: String,
        ttl: Duration,
    ) -> MediaStore {
        MediaStore {
            dir,
            secret,
            public_url,
            ttl,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Absolute path of a stored relative path; `None` for anything that could escape
    /// the media directory.
    pub(crate) fn resolve(&self, relative: &str) -> Option<PathBuf> {
        let rel = Path::new(relative);
        let safe = !relative.is_empty()
            && !relative.contains('\\')
            && !relative.contains('\0')
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        safe.then(|| self.dir.join(rel))
    }

    /// Writes `bytes` at `relative` (creating its directories) under a temporary name
    /// first, then renames it into place: a reader never sees half a file. Returns the
    /// file's absolute path.
    pub(crate) async fn write(&self, relative: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.resolve(relative).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a media path: {relative:?}"),
            )
        })?;
        write_file_whole(path.clone(), bytes.to_vec()).await?;
        Ok(path)
    }

    /// Removes a directory below the media directory and everything in it (a story's or
    /// an account's files); one that is not there is already removed.
    pub(crate) async fn remove_dir(&self, relative: &str) {
        if let Some(path) = self.resolve(relative) {
            remove_tree(&path, "removing media").await;
        }
    }

    /// Removes one file below the media directory; one that is not there is already
    /// removed.
    pub(crate) async fn remove_file(&self, relative: &str) {
        let Some(path) = self.resolve(relative) else {
            return;
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %path.display(), error = %e, "removing media"),
        }
    }

    /// Signs `relative` (a path below the media directory) for now + TTL, rounded up to a
    /// whole minute so the same file read twice within a minute gets the same URL.
    /// The URL is written into one buffer (a page of 20 stories signs 200 files).
    pub fn sign(&self, relative: &str, now: DateTime<Utc>) -> SignedUrl {
        let deadline = now.timestamp() + self.ttl.as_secs() as i64;
        let expires = (deadline + 59).div_euclid(60) * 60;
        let expires_text = expires.to_string();
        let digest = self.digest(&expires_text, &[PREFIX, relative]);
        let mut url = String::with_capacity(
            self.public_url.len() + PREFIX.len() + relative.len() * 3 + 40 + expires_text.len(),
        );
        url.push_str(&self.public_url);
        // The prefix is all unreserved characters: only the stored path needs escaping.
        url.push_str(PREFIX);
        push_percent_encoded(&mut url, relative);
        url.push_str("?md5=");
        URL_SAFE_NO_PAD.encode_string(digest, &mut url);
        url.push_str("&expires=");
        url.push_str(&expires_text);
        SignedUrl {
            url,
            expires: Utc
                .timestamp_opt(expires, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    fn signature(&self, expires: i64, uri: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.digest(&expires.to_string(), &[uri]))
    }

    /// `md5("{expires}{uri} {secret}")`, the URI given in pieces.
    fn digest(&self, expires: &str, uri: &[&str]) -> [u8; 16] {
        let mut hasher = Md5::new();
        hasher.update(expires.as_bytes());
        for piece in uri {
            hasher.update(piece.as_bytes());
        }
        hasher.update(b" ");
        hasher.update(self.secret.expose());
        hasher.finalize().into()
    }

    /// Checks a request for `uri` (percent-decoded, starting with `/media/`).
    pub(crate) fn verify(
        &self,
        uri: &str,
        md5: Option<&str>,
        expires: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let (Some(sig), Some(expires_text)) = (md5, expires) else {
            return Err(LinkError::Forbidden);
        };
        let expires: i64 = expires_text.parse().map_err(|_| LinkError::Forbidden)?;
        let expected = self.signature(expires, uri);
        if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
            return Err(LinkError::Forbidden);
        }
        if expires < now.timestamp() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// Removes the directory `path` and everything in it; one that is not there is already
/// removed, and any other failure is logged as `what` (the caller goes on).
pub(crate) async fn remove_tree(path: &Path, what: &str) {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(path = %path.display(), error = %e, "{what}"),
    }
}

/// [`write_whole`] on the blocking pool (one trip for the directory, the file and its
/// rename): for any file a reader must never see half-written (media, voice samples).
pub(crate) async fn write_file_whole(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write_whole(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

/// Writes `bytes` to `path` whole or not at all: its directory made, the bytes written to
/// a `.part` file beside it and renamed over it (a full disk leaves nothing half-written).
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// What is not unreserved or `/` in a path (or a query value, where `/` may stand as
/// well) is percent-encoded.
const PATH_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `path` onto `out` ([`PATH_ESCAPED`]).
pub(crate) fn push_percent_encoded(out: &mut String, path: &str) {
    out.extend(utf8_percent_encode(path, PATH_ESCAPED));
}

/// Decodes `%XX` escapes; `None` when an escape is malformed (`%zz`, a trailing `%`) or
/// the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MediaStore {
        MediaStore::new(
            PathBuf::from("/srv/media"),
            Secret::new(b"media-secret".to_vec()),
            "https://example.org".into(),
            Duration::from_secs(3600),
        )
    }

    /// A write that fails (here the rename: a directory stands where the file goes; a
    /// full disk fails the same way earlier) leaves no `.part` file behind.
    #[tokio::test]
    async fn a_failed_write_leaves_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let media = MediaStore::new(
            dir.path().to_path_buf(),
            Secret::new(b"media-secret".to_vec()),
            "https://example.org".into(),
            Duration::from_secs(3600),
        );
        std::fs::create_dir_all(dir.path().join("a/b.png/inside")).unwrap();
        assert!(media.write("a/b.png", b"png").await.is_err());
        assert!(!dir.path().join("a/b.png.part").exists());
        assert_eq!(std::fs::read_dir(dir.path().join("a")).unwrap().count(), 1);
        // And a write that works leaves only the file.
        media.write("a/c.png", b"png").await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/c.png")).unwrap(), b"png");
        assert!(!dir.path().join("a/c.png.part").exists());
    }

    #[test]
    fn signature_matches_nginx_secure_link_md5() {
        // echo -n '1700000000/media/a/b.svg media-secret' | openssl md5 -binary | base64 | tr +/ -_ | tr -d =
        let sig = store().signature(1_700_000_000, "/media/a/b.svg");
        let mut h = Md5::new();
        h.update(b"1700000000/media/a/b.svg media-secret");
        assert_eq!(sig, URL_SAFE_NO_PAD.encode(h.finalize()));
        assert_eq!(sig.len(), 22);
    }

    #[test]
    fn expiry_rounds_up_to_the_minute_and_verifies() {
        let now = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        let a = store().sign("u/s/f.svg", now);
        let b = store().sign("u/s/f.svg", now + chrono::Duration::seconds(30));
        assert_eq!(a, b);
        assert_eq!(a.expires.timestamp() % 60, 0);
        assert!(a.expires.timestamp() >= 1_700_000_001 + 3600);
        let query = a.url.split_once('?').unwrap().1;
        let params: Vec<(&str, &str)> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .collect();
        let store = store();
        assert_eq!(
            store.verify(
                "/media/u/s/f.svg",
                Some(params[0].1),
                Some(params[1].1),
                now
            ),
            Ok(())
        );
        assert_eq!(
            store.verify(
                "/media/u/s/g.svg",
                Some(params[0].1),
                Some(params[1].1),
                now
            ),
            Err(LinkError::Forbidden)
        );
        let later = a.expires + chrono::Duration::seconds(1);
        assert_eq!(
            store.verify(
                "/media/u/s/f.svg",
                Some(params[0].1),
                Some(params[1].1),
                later
            ),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn urls_escape_the_stored_path_and_sign_it_unescaped() {
        let now = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        let signed = store().sign("u/동화 1.png", now);
        let sig = store().signature(1_700_003_640, "/media/u/동화 1.png");
        assert_eq!(
            signed.url,
            format!(
                "https://example.org/media/u/%EB%8F%99%ED%99%94%201.png?md5={sig}&expires=1700003640"
            )
        );
        assert_eq!(
            store().verify("/media/u/동화 1.png", Some(&sig), Some("1700003640"), now),
            Ok(())
        );
    }

    #[test]
    fn resolve_refuses_escapes() {
        let s = store();
        assert!(s.resolve("a/b.svg").is_some());
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "a\\b", "./a"] {
            assert!(s.resolve(bad).is_none(), "{bad}");
        }
    }
}
