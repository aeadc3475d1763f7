//! Access tokens (HS256 JWTs) and opaque refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::vocabulary::UserId;

use crate::config::Secret;
use crate::error::{AppError, AppResult};

pub(crate) const ISSUER: &str = "jjongal";
pub(crate) const AUDIENCE: &str = "jjongal-api";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

/// Signs and verifies access tokens with one secret.
#[derive(Clone)]
pub(crate) struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub(crate) fn new(secret: &Secret) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = 5;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
        }
    }

    pub(crate) fn issue(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
        ttl_secs: i64,
    ) -> AppResult<String> {
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl_secs,
            jti: Uuid::new_v4().to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("signing access token: {e}")))
    }

    /// Verifies signature, algorithm, expiry, issuer and audience; returns the user id.
    pub(crate) fn verify(&self, token: &str) -> AppResult<UserId> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(reason = %e, "access token rejected");
                AppError::invalid_token()
            })?;
        data.claims
            .sub
            .parse()
            .map_err(|_| AppError::invalid_token())
    }
}

impl TokenKeys {
    /// When a valid token expires (its `exp`, Unix seconds); `None` for an invalid one.
    pub(crate) fn expires_at(&self, token: &str) -> Option<i64> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims.exp)
    }
}

/// A fresh opaque refresh token: 256 random bits, base64url.
pub(crate) fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a refresh token: its SHA-256, hex.
pub(crate) fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
