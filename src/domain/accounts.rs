//! Accounts and tokens (contract §3): sign-up with guardian consent, login, refresh-token
//! rotation with reuse detection, logout, the current user, account deletion.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::tokens::{hash_refresh_token, new_refresh_token};
use super::{Accounts, char_len};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::store::models::{RefreshTokenRow, UserRow};
use crate::store::{self, DbError, from_db, to_db};

/// The account's role; only the CLI grants `operator`.
pub use crate::vocabulary::Role;
use crate::vocabulary::{RefreshTokenId, TokenFamilyId, UserId, VoiceStatus};

/// A family account as the API shows it (spec §5.4: the child's name and age).
#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub login_id: String,
    pub name: String,
    pub age: i32,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The cloned voice at the voice provider, once samples were cloned.
    pub voice_id: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = AppError;
    fn try_from(row: UserRow) -> AppResult<User> {
        Ok(User {
            id: row.id,
            role: row.role,
            login_id: row.login_id,
            name: row.name,
            age: row.age,
            created_at: from_db(row.created_at),
            voice_id: row.voice_id,
        })
    }
}

/// An access/refresh token pair (spec §6.1).
#[derive(Clone, Debug)]
pub(crate) struct TokenPair {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
}

/// Sign-up input, unvalidated.
#[derive(Clone, Debug)]
pub struct SignUp {
    pub login_id: String,
    pub password: String,
    pub name: String,
    pub age: i32,
    pub guardian_consent: bool,
}

/// A validated login id: 3–64 characters of `[A-Za-z0-9._-]`.
pub(crate) struct LoginId(String);

impl LoginId {
    pub(crate) fn parse(s: &str) -> AppResult<LoginId> {
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !(3..=64).contains(&s.len()) || !ok_chars {
            return Err(AppError::validation(
                "user_id는 영문, 숫자, '.', '_', '-'로 된 3~64자여야 합니다.",
            ));
        }
        Ok(LoginId(s.to_string()))
    }
    /// Login ids are unique regardless of case.
    fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

fn validate_password(p: &str) -> AppResult<()> {
    if !(8..=128).contains(&char_len(p)) {
        return Err(AppError::validation("password는 8~128자여야 합니다."));
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> AppResult<()> {
    let len = char_len(name);
    if name.trim().is_empty() || len > 50 || name.chars().any(char::is_control) {
        return Err(AppError::validation(
            "name은 1~50자여야 하며 공백이나 제어 문자만으로 이루어질 수 없습니다.",
        ));
    }
    Ok(())
}

pub(crate) fn validate_age(age: i32) -> AppResult<()> {
    if !(1..=19).contains(&age) {
        return Err(AppError::validation("age는 1~19 사이의 정수여야 합니다."));
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // Argon2id, v19, the crate's OWASP-recommended defaults (19 MiB, t=2, p=1).
    Argon2::default()
}

/// Bounds password hashing (Argon2id holds 19 MiB while it runs): at most `running`
/// hashes at once, and at most `queue` more requests waiting for one; beyond that the
/// answer is `429` at once. Without it, 100 simultaneous wrong passwords took the
/// process from 57 to 759 MiB.
pub(crate) struct PasswordWork {
    /// Running plus waiting: taken without waiting, or refused.
    admitted: tokio::sync::Semaphore,
    running: tokio::sync::Semaphore,
}

impl PasswordWork {
    pub(crate) fn new(running: usize, queue: usize) -> PasswordWork {
        let running = running.max(1);
        PasswordWork {
            admitted: tokio::sync::Semaphore::new(running + queue),
            running: tokio::sync::Semaphore::new(running),
        }
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let _admitted = self.admitted.try_acquire().map_err(|_| AppError::Limited {
            message: "로그인 요청이 몰려 있습니다. 잠시 후 다시 시도하세요.".into(),
            retry_after: 1,
        })?;
        let _running = self
            .running
            .acquire()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Internal(e.into()))?
    }

    async fn hash(&self, password: String) -> AppResult<String> {
        self.run(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing password: {e}")))
        })
        .await
    }

    /// Verifies against `hash`, or against a decoy when there is none (an unknown login
    /// costs what a wrong password costs).
    async fn verify(&self, password: String, hash: Option<String>) -> AppResult<bool> {
        self.run(move || {
            let hash = hash.unwrap_or_else(decoy_hash);
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| AppError::Internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
            Ok(argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }
}

/// A hash to verify against when the login id is unknown, so both paths cost the same.
fn decoy_hash() -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            argon2()
                .hash_password(Uuid::new_v4().as_bytes())
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

impl Accounts<'_> {
    /// Self sign-up (contract §3). Refused when sign-up is switched off.
    pub(crate) async fn sign_up(&self, input: SignUp) -> AppResult<User> {
        if !self.config().allow_signup {
            return Err(AppError::new(
                ErrorCode::InsufficientPermission,
                "가입이 비활성화되어 있습니다. 운영자에게 계정 생성을 요청하세요.",
            ));
        }
        if !input.guardian_consent {
            return Err(AppError::validation(
                "보호자 동의(guardian_consent: true)가 필요합니다.",
            ));
        }
        self.create_user(input, Role::Member).await
    }

    /// Creates an account (sign-up and the CLI). Consent is recorded as now.
    pub async fn create_user(&self, input: SignUp, role: Role) -> AppResult<User> {
        let login = LoginId::parse(&input.login_id)?;
        validate_password(&input.password)?;
        validate_name(&input.name)?;
        validate_age(input.age)?;
        let password_hash = self.passwords().hash(input.password).await?;
        let now = to_db(store::now());
        let row = UserRow {
            id: UserId::random(),
            login_key: login.key(),
            login_id: login.0,
            password_hash,
            name: input.name,
            age: input.age,
            role,
            guardian_consent_at: now,
            created_at: now,
            updated_at: now,
            voice_id: None,
            voice_status: VoiceStatus::NotCloned,
        };
        let mut conn = self.pool().get().await?;
        match store::accounts::insert_user(&mut conn.db(), &row).await {
            Ok(_) => User::try_from(row),
            Err(e) if e.is_unique_violation() => Err(AppError::new(
                ErrorCode::Conflict,
                "이미 사용 중인 user_id입니다.",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks login credentials and issues a new token pair (a new refresh family).
    pub(crate) async fn issue_token(&self, login_id: &str, password: &str) -> AppResult<TokenPair> {
        if login_id.is_empty() || password.is_empty() {
            return Err(AppError::validation("user_id와 password가 필요합니다."));
        }
        let key = login_id.to_ascii_lowercase();
        let found =
            store::accounts::user_by_login(&mut self.pool().get().await?.db(), &key).await?;
        let hash = found.as_ref().map(|u| u.password_hash.clone());
        let ok = self.passwords().verify(password.to_string(), hash).await?;
        match found {
            Some(row) if ok => self.new_pair(row.id, TokenFamilyId::random()).await,
            _ => Err(AppError::code_only(ErrorCode::AuthenticationFailed)),
        }
    }

    /// Whether `password` is `owner`'s (the guardian confirming an act only the guardian
    /// may do, e.g. the voice-cloning consent: the child's app holds the same token).
    pub(crate) async fn confirm_password(&self, owner: UserId, password: &str) -> AppResult<bool> {
        if password.is_empty() {
            return Ok(false);
        }
        let found = store::accounts::user(&mut self.pool().get().await?.db(), owner).await?;
        let hash = found.map(|u| u.password_hash);
        self.passwords().verify(password.to_string(), hash).await
    }

    /// Stores a new refresh token in `family` and signs an access token.
    async fn new_pair(&self, user_id: UserId, family: TokenFamilyId) -> AppResult<TokenPair> {
        let refresh_token = new_refresh_token();
        let now = store::now();
        let ttl = chrono::Duration::from_std(self.config().refresh_token_ttl)
            .map_err(|e| AppError::Internal(e.into()))?;
        let row = RefreshTokenRow {
            id: RefreshTokenId::random(),
            user_id,
            family_id: family,
            token_hash: hash_refresh_token(&refresh_token),
            created_at: to_db(now),
            expires_at: to_db(now + ttl),
            used_at: None,
            revoked_at: None,
        };
        store::accounts::insert_refresh_token(&mut self.pool().get().await?.db(), &row).await?;
        self.sign_access(user_id, now)
            .map(|access_token| TokenPair {
                access_token,
                expires_in: self.config().access_token_ttl.as_secs() as i64,
                refresh_token,
            })
    }

    fn sign_access(&self, user_id: UserId, now: DateTime<Utc>) -> AppResult<String> {
        let ttl = self.config().access_token_ttl.as_secs() as i64;
        self.keys().issue(user_id, now, ttl)
    }

    /// Rotates a refresh token: single use. Presenting a used one revokes its whole
    /// family (reuse detection) and fails.
    ///
    /// Marking the token used and storing its successor is one transaction: whoever
    /// finds the token already used (a replay, even one racing the rotation) sees the
    /// successor too, so the family revocation reaches it. Done as two steps, the winner
    /// of a simultaneous pair could store its successor after the loser had revoked the
    /// family, and that successor lived on.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> AppResult<TokenPair> {
        let hash = hash_refresh_token(refresh_token);
        let issued = store::now();
        let now = to_db(issued);
        let ttl = chrono::Duration::from_std(self.config().refresh_token_ttl)
            .map_err(|e| AppError::Internal(e.into()))?;
        let successor = new_refresh_token();
        let successor_hash = hash_refresh_token(&successor);
        let mut conn = self.pool().get().await?;
        let outcome: Result<Option<(UserId, TokenFamilyId)>, DbError> =
            store::transaction!(&mut conn.db(), |tx| {
                let won = store::accounts::use_refresh_token(tx, &hash, now).await?;
                if let Some((user_id, family_id)) = &won {
                    let row = RefreshTokenRow {
                        id: RefreshTokenId::random(),
                        user_id: *user_id,
                        family_id: *family_id,
                        token_hash: successor_hash.clone(),
                        created_at: now,
                        expires_at: to_db(issued + ttl),
                        used_at: None,
                        revoked_at: None,
                    };
                    store::accounts::insert_refresh_token(tx, &row).await?;
                }
                Ok(won)
            });
        match outcome? {
            Some((user_id, _)) => {
                drop(conn);
                let access_token = self.sign_access(user_id, issued)?;
                Ok(TokenPair {
                    access_token,
                    expires_in: self.config().access_token_ttl.as_secs() as i64,
                    refresh_token: successor,
                })
            }
            None => {
                // Unknown, expired, revoked or already used. A used token coming back
                // means it leaked: revoke everything descended from that login.
                let mut db = conn.db();
                let existing = store::accounts::refresh_token(&mut db, &hash).await?;
                if let Some(row) = existing
                    && row.used_at.is_some()
                {
                    tracing::warn!(family = %row.family_id, "refresh token reuse detected; revoking its family");
                    store::accounts::revoke_family(&mut db, row.family_id, now).await?;
                }
                Err(AppError::invalid_token())
            }
        }
    }

    /// Revokes the family of a refresh token (logout). Idempotent for known tokens;
    /// an unknown token is `INVALID_TOKEN`.
    pub(crate) async fn logout(&self, refresh_token: &str) -> AppResult<()> {
        let hash = hash_refresh_token(refresh_token);
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        let token = store::accounts::refresh_token(&mut db, &hash)
            .await?
            .ok_or_else(AppError::invalid_token)?;
        store::accounts::revoke_family(&mut db, token.family_id, to_db(store::now())).await?;
        Ok(())
    }

    /// Resolves a bearer token to a live account: signature, claims, and that the
    /// account still exists (a deleted account's tokens stop working at once). The
    /// account comes from the account cache when it was read a moment ago and has not
    /// changed since ([`super::account_cache`]).
    pub async fn authenticate(&self, bearer: Option<&str>) -> AppResult<User> {
        let token = bearer.ok_or_else(AppError::invalid_token)?;
        let user_id = self.keys().verify(token)?;
        let cache = self.account_cache();
        if let Some(user) = cache.get(user_id) {
            return Ok(user);
        }
        let seen = cache.generation();
        let user = self
            .find_user(user_id)
            .await?
            .ok_or_else(AppError::invalid_token)?;
        cache.put(user.clone(), seen);
        Ok(user)
    }

    pub(crate) async fn find_user(&self, id: UserId) -> AppResult<Option<User>> {
        let row = store::read!(self.pool(), |db| store::accounts::user(db, id).await)?;
        row.map(User::try_from).transpose()
    }

    /// Deletes the account and everything it owns: the cloned voice at the provider and
    /// the voice samples first, then the rows (which cascade from `users`) and media.
    pub(crate) async fn delete_account(&self, user: &User) -> AppResult<()> {
        self.voices().delete_voice(user).await?;
        let deleted =
            store::accounts::delete_user(&mut self.pool().get().await?.db(), user.id).await?;
        if !deleted {
            // (Gone already: no copy of it is kept either.)
            self.account_cache().forget(user.id);
            return Err(AppError::invalid_token());
        }
        // Its sockets, here and on every other process, close now.
        self.announce(Event::AccountGone { user: user.id }).await;
        // Rows cascaded; the account's media directory goes with them.
        self.media().remove_dir(&user.id.to_string()).await;
        tracing::info!(user_id = %user.id, "account deleted");
        Ok(())
    }
}
