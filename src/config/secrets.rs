//! The signing secrets: required, strong and distinct in production; in development,
//! generated once into the data dir.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigArgs, Environment, MIN_SECRET_BYTES};

/// A secret value: never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The signing secrets: required (and distinct) in production; in development, generated
/// once into the data dir when not set.
pub(super) fn secrets(args: &ConfigArgs) -> anyhow::Result<(Secret, Secret)> {
    match args.environment {
        Environment::Production => {
            let jwt = required_secret("JJONGAL_JWT_SECRET", exposed(&args.jwt_secret))?;
            let media = required_secret("JJONGAL_MEDIA_SECRET", exposed(&args.media_secret))?;
            if jwt.expose() == media.expose() {
                bail!("JJONGAL_MEDIA_SECRET must differ from JJONGAL_JWT_SECRET");
            }
            Ok((jwt, media))
        }
        Environment::Development => {
            let mut generated = Vec::new();
            let jwt = match exposed(&args.jwt_secret) {
                Some(s) if !s.is_empty() => Secret::new(s.as_bytes().to_vec()),
                _ => {
                    generated.push("jwt.secret");
                    dev_secret(&args.data_dir, "jwt.secret")?
                }
            };
            let media = match exposed(&args.media_secret) {
                Some(s) if !s.is_empty() => Secret::new(s.as_bytes().to_vec()),
                _ => {
                    generated.push("media.secret");
                    dev_secret(&args.data_dir, "media.secret")?
                }
            };
            if !generated.is_empty() {
                tracing::warn!(
                    files = ?generated,
                    dir = %args.data_dir.join("secrets").display(),
                    "development mode: using generated secrets kept in the data dir; \
                     set JJONGAL_JWT_SECRET and JJONGAL_MEDIA_SECRET (and JJONGAL_ENV=production) in production"
                );
            }
            Ok((jwt, media))
        }
    }
}

/// A secret setting's text, where it is needed.
pub(super) fn exposed(secret: &Option<SecretString>) -> Option<&str> {
    secret.as_ref().map(|s| s.expose_secret())
}

/// Estimated entropy of a secret, in bits: its length times the Shannon entropy of its
/// own byte distribution. Generous to real random secrets (48 random base64url bytes:
/// about 250), damning for repeats and patterns (32 spaces: 0; `aaaa…`: 0).
pub(crate) fn estimated_entropy_bits(secret: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    for &b in secret {
        counts[b as usize] += 1;
    }
    let n = secret.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

/// The least estimated entropy a production secret must have (32 random hex characters
/// estimate about 115 bits, hardly ever below 100; 32 spaces 0, `abab…` 1 bit a byte).
pub(crate) const MIN_SECRET_ENTROPY_BITS: f64 = 80.0;

/// Whether `secret` is a shorter piece repeated (`passwordpassword…`), whatever its
/// byte distribution suggests.
fn is_repetition(secret: &[u8]) -> bool {
    (1..=secret.len() / 2).any(|period| {
        secret.len().is_multiple_of(period) && secret.chunks(period).all(|c| c == &secret[..period])
    })
}

fn required_secret(name: &str, value: Option<&str>) -> anyhow::Result<Secret> {
    match value {
        None | Some("") => bail!("{name} is required in production mode"),
        Some(v) if v.len() < MIN_SECRET_BYTES => {
            bail!("{name} must be at least {MIN_SECRET_BYTES} bytes in production mode")
        }
        Some(v)
            if estimated_entropy_bits(v.as_bytes()) < MIN_SECRET_ENTROPY_BITS
                || is_repetition(v.as_bytes()) =>
        {
            bail!(
                "{name} is too predictable for production mode (repeated or patterned \
                 characters); generate one, e.g. `openssl rand -base64 48`"
            )
        }
        Some(v) => Ok(Secret::new(v.as_bytes().to_vec())),
    }
}

/// Reads `<data dir>/secrets/<name>`, creating it with fresh random bytes if missing.
/// Creation is atomic (write a private temp file, then hard-link it into place, which
/// fails if another process won the race), so concurrent starters agree on one secret.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let dir = data_dir.join("secrets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    restrict_permissions(&dir, 0o700);
    let path = dir.join(name);
    if !path.exists() {
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, URL_SAFE_NO_PAD.encode(bytes))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        restrict_permissions(&tmp, 0o600);
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(e).with_context(|| format!("cannot create {}", path.display()));
        }
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim();
    if text.len() < MIN_SECRET_BYTES {
        bail!(
            "{} holds fewer than {MIN_SECRET_BYTES} bytes",
            path.display()
        );
    }
    Ok(Secret::new(text.as_bytes().to_vec()))
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_entropy_tells_random_from_repeated() {
        assert_eq!(estimated_entropy_bits(&[b' '; 32]), 0.0);
        assert!(estimated_entropy_bits("abab".repeat(10).as_bytes()) < MIN_SECRET_ENTROPY_BITS);
        assert!(is_repetition("password".repeat(4).as_bytes()));
        assert!(!is_repetition(b"0123456789abcdef0123456789abcdef-a"));
        // What development mode generates (48 random bytes, base64url) always passes.
        for _ in 0..200 {
            let mut bytes = [0u8; 48];
            rand::rng().fill_bytes(&mut bytes);
            let secret = URL_SAFE_NO_PAD.encode(bytes);
            assert!(
                estimated_entropy_bits(secret.as_bytes()) > 200.0,
                "{secret}"
            );
        }
        // 32 random hex characters (openssl rand -hex 16) pass too.
        for _ in 0..200 {
            let mut bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                estimated_entropy_bits(hex.as_bytes()) >= MIN_SECRET_ENTROPY_BITS,
                "{hex}"
            );
        }
    }
}
