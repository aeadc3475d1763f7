//! Accounts and tokens in GraphQL: `me`, `signUp`, `issueToken`, `refreshToken`,
//! `logout`, `deleteAccount`.

use async_graphql::{Context, ID, InputObject, Object};
use serde::Deserialize;
use utoipa::ToSchema;

use super::scalars::Timestamp;
use super::{domain, viewer};
use crate::domain::accounts::{SignUp, TokenPair, User};
use crate::domain::voices::{GiveConsent, VoiceConsent};

/// A family account: `name` and `age` describe the child the stories are for.
pub(crate) struct UserObject(pub User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Always `"user"`.
    async fn object(&self) -> &'static str {
        "user"
    }
    /// The login id chosen at sign-up.
    async fn login_id(&self) -> &str {
        &self.0.login_id
    }
    /// The child's name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The child's age (1–19).
    async fn age(&self) -> i32 {
        self.0.age
    }
    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }
    /// The guardian's voice-cloning consent: the standing one and the terms in force.
    async fn voice_consent(&self, ctx: &Context<'_>) -> async_graphql::Result<VoiceConsentObject> {
        Ok(VoiceConsentObject(
            domain(ctx).voices().voice_consent(self.0.id).await?,
        ))
    }
}

/// The guardian's voice-cloning consent (issue 33): separate from sign-up's, for the
/// guardian's own voice and one named voice provider. Until it is given, voice samples
/// are refused with `VOICE_CONSENT_REQUIRED`.
pub(crate) struct VoiceConsentObject(pub VoiceConsent);

#[Object(name = "VoiceConsent")]
impl VoiceConsentObject {
    /// Always `"voice_consent"`.
    async fn object(&self) -> &'static str {
        "voice_consent"
    }
    /// Whether a consent for the configured voice provider stands.
    async fn given(&self) -> bool {
        self.0.standing.is_some()
    }
    /// Whose voice the samples are (`"guardian"`), once given.
    async fn voice_of(&self) -> Option<&str> {
        self.0.standing.as_ref().map(|c| c.voice_of.as_str())
    }
    /// The voice provider's address the samples go to (`"none"`: kept on this server):
    /// the one agreed to, else the one in force.
    async fn provider(&self) -> &str {
        match &self.0.standing {
            Some(c) => &c.provider,
            None => &self.0.terms.provider,
        }
    }
    /// The version of the text agreed to, else of the text in force (what
    /// `giveVoiceConsent` must name).
    async fn text_version(&self) -> &str {
        match &self.0.standing {
            Some(c) => &c.text_version,
            None => self.0.terms.text_version,
        }
    }
    /// The text agreed to, else the text to show the guardian (Korean).
    async fn text(&self) -> &str {
        match &self.0.standing {
            Some(c) => &c.text,
            None => &self.0.terms.text,
        }
    }
    /// When it was given.
    async fn given_at(&self) -> Option<Timestamp> {
        self.0.standing.as_ref().map(|c| Timestamp(c.given_at))
    }
}

/// Where to download the family's export (`prepareExport`).
#[derive(async_graphql::SimpleObject)]
pub(crate) struct PreparedExport {
    /// `GET` it for the archive; it works until `expiresAt`.
    pub url: String,
    pub expires_at: Timestamp,
}

/// The guardian's voice-cloning consent, as shown to them; also the REST body of
/// `POST /api/v1/users/me/voice-consent`.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VoiceConsentRequest, example = json!({"voice_of": "guardian", "text_version": "2026-12-05", "provider": "https://api.elevenlabs.io", "password": "correct horse battery"}))]
pub(crate) struct VoiceConsentInput {
    /// Whose voice the samples are: must be `"guardian"` (a child's voice is never
    /// cloned).
    #[schema(schema_with = crate::rest::types::guardian_only)]
    pub voice_of: String,
    /// The `text_version` of the text shown (`GET …/voice-consent`).
    #[schema(min_length = 1, max_length = 100, pattern = r"^[^\x00]*$")]
    pub text_version: String,
    /// The `provider` named in the text shown.
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*$")]
    pub provider: String,
    /// The guardian's password: only the guardian may consent (the child's app holds
    /// the same token). Wrong: `403 INSUFFICIENT_PERMISSION`.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
    pub password: String,
}
pub(crate) struct TokenPairObject(pub TokenPair);

#[Object(name = "TokenPair")]
impl TokenPairObject {
    /// Always `"Bearer"`.
    async fn token_type(&self) -> &'static str {
        "Bearer"
    }
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    /// Seconds until the access token expires.
    async fn expires_in(&self) -> i64 {
        self.0.expires_in
    }
    /// Single-use; exchange it with `refreshToken` for a new pair.
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
}

/// Sign-up (extension, contract §3): the guardian's login and the child's details. Also
/// the REST body of `POST /api/v1/users` (its fields in `snake_case`).
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignUpRequest, example = json!({"user_id": "minjun-family", "password": "correct horse battery", "name": "민준", "age": 7, "guardian_consent": true}))]
pub(crate) struct SignUpInput {
    /// Login id: 3–64 characters of `A–Z a–z 0–9 . _ -`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    pub user_id: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128, pattern = r"^[^\x00]*$")]
    pub password: String,
    /// The child's name: 1–50 characters with a visible one, no control characters.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// The child's age, 1–19.
    #[schema(minimum = 1, maximum = 19)]
    pub age: i32,
    /// Must be `true`: the guardian agrees to the processing of the child's
    /// conversations and voice samples by the configured AI providers.
    #[schema(schema_with = crate::rest::types::always_true)]
    pub guardian_consent: bool,
}

/// Log-in (spec §6.1); also the REST body of `POST /api/v1/auth/token`.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenRequest, example = json!({"user_id": "minjun-family", "password": "correct horse battery"}))]
pub(crate) struct IssueTokenInput {
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub user_id: String,
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub password: String,
}

/// A refresh token to rotate or revoke; also the REST body of `POST /api/v1/auth/refresh`
/// and `/logout`.
#[derive(InputObject, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RefreshRequest)]
pub(crate) struct RefreshTokenInput {
    #[schema(min_length = 1, max_length = 10000, pattern = r"^[^\x00]*$")]
    pub refresh_token: String,
}

#[derive(Default)]
pub(crate) struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The authenticated account.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<UserObject> {
        Ok(UserObject(viewer(ctx).await?))
    }
}

#[derive(Default)]
pub(crate) struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account (needs guardian consent; may be switched off by the operator).
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        input: SignUpInput,
    ) -> async_graphql::Result<UserObject> {
        let user = domain(ctx)
            .accounts()
            .sign_up(SignUp {
                login_id: input.user_id,
                password: input.password,
                name: input.name,
                age: input.age,
                guardian_consent: input.guardian_consent,
            })
            .await?;
        Ok(UserObject(user))
    }

    /// Exchanges login credentials for a token pair.
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        input: IssueTokenInput,
    ) -> async_graphql::Result<TokenPairObject> {
        let pair = domain(ctx)
            .accounts()
            .issue_token(&input.user_id, &input.password)
            .await?;
        Ok(TokenPairObject(pair))
    }

    /// Rotates a refresh token. Reusing one revokes its whole family.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        input: RefreshTokenInput,
    ) -> async_graphql::Result<TokenPairObject> {
        let pair = domain(ctx).accounts().refresh(&input.refresh_token).await?;
        Ok(TokenPairObject(pair))
    }

    /// Revokes the refresh token's family.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        input: RefreshTokenInput,
    ) -> async_graphql::Result<bool> {
        domain(ctx).accounts().logout(&input.refresh_token).await?;
        Ok(true)
    }

    /// Records the guardian's voice-cloning consent for the text and provider they were
    /// shown (`me.voiceConsent`); a standing one is answered as it is.
    async fn give_voice_consent(
        &self,
        ctx: &Context<'_>,
        input: VoiceConsentInput,
    ) -> async_graphql::Result<VoiceConsentObject> {
        let user = viewer(ctx).await?;
        let consent = domain(ctx)
            .voices()
            .give_voice_consent(
                user.id,
                GiveConsent {
                    voice_of: input.voice_of,
                    text_version: input.text_version,
                    provider: input.provider,
                    password: input.password,
                },
            )
            .await?;
        Ok(VoiceConsentObject(consent))
    }

    /// Withdraws the voice-cloning consent: later samples are refused, and the samples
    /// and the cloned voice (at the provider too) are deleted.
    async fn withdraw_voice_consent(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let user = viewer(ctx).await?;
        domain(ctx).voices().withdraw_voice_consent(&user).await?;
        Ok(true)
    }

    /// Prepares the export of everything the service holds about the family: a URL that
    /// downloads the archive (`application/x-tar`) without the bearer header, for ten
    /// minutes. The download is `GET /api/v1/users/me/export` (rate-limited per account).
    async fn prepare_export(&self, ctx: &Context<'_>) -> async_graphql::Result<PreparedExport> {
        let user = viewer(ctx).await?;
        let prepared = domain(ctx).exports().prepare(&user);
        Ok(PreparedExport {
            url: prepared.url,
            expires_at: Timestamp(prepared.expires_at),
        })
    }

    /// Deletes the account's voice: samples, the stored voice id, the provider's voice.
    async fn delete_voice(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let user = viewer(ctx).await?;
        domain(ctx).voices().delete_voice(&user).await?;
        Ok(true)
    }

    /// Deletes the authenticated account and everything it owns.
    async fn delete_account(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let user = viewer(ctx).await?;
        domain(ctx).accounts().delete_account(&user).await?;
        Ok(true)
    }
}
