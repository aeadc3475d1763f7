//! Public error codes (spec §4.2 + contract §2) and the domain error type.
//!
//! Every layer has one error type; this is the domain's. It maps once to an
//! [`ErrorCode`], which decides the GraphQL `extensions.code` and, from that, the REST
//! status. An internal cause travels with the error as an [`InternalCause`] (never shown
//! to clients) to the one place that logs it, inside the request's span and so with its
//! request id: `http::errors`. Converting an error has no side effect.

use std::sync::Arc;

use axum::http::StatusCode;

use crate::store::DbError;

/// The public error catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidToken,
    AuthenticationFailed,
    InsufficientPermission,
    ValidationError,
    ResourceNotFound,
    RateLimitExceeded,
    ServerError,
    PayloadTooLarge,
    MethodNotAllowed,
    Conflict,
    UrlExpired,
    ServiceUnavailable,
    /// Conversation WebSocket/GraphQL only (contract §6).
    ConversationNotStarted,
    InvalidAudio,
    VoiceCloneFailed,
    AiUnavailable,
    /// A voice sample without the guardian's voice-cloning consent (issue 33).
    VoiceConsentRequired,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::InvalidToken,
        ErrorCode::AuthenticationFailed,
        ErrorCode::InsufficientPermission,
        ErrorCode::ValidationError,
        ErrorCode::ResourceNotFound,
        ErrorCode::RateLimitExceeded,
        ErrorCode::ServerError,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::UrlExpired,
        ErrorCode::ServiceUnavailable,
        ErrorCode::ConversationNotStarted,
        ErrorCode::InvalidAudio,
        ErrorCode::VoiceCloneFailed,
        ErrorCode::AiUnavailable,
        ErrorCode::VoiceConsentRequired,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::AuthenticationFailed => "AUTHENTICATION_FAILED",
            ErrorCode::InsufficientPermission => "INSUFFICIENT_PERMISSION",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::UrlExpired => "URL_EXPIRED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::ConversationNotStarted => "CONVERSATION_NOT_STARTED",
            ErrorCode::InvalidAudio => "INVALID_AUDIO",
            ErrorCode::VoiceCloneFailed => "VOICE_CLONE_FAILED",
            ErrorCode::AiUnavailable => "AI_UNAVAILABLE",
            ErrorCode::VoiceConsentRequired => "VOICE_CONSENT_REQUIRED",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidToken | ErrorCode::AuthenticationFailed => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientPermission | ErrorCode::VoiceConsentRequired => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
            ErrorCode::ResourceNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::UrlExpired => StatusCode::GONE,
            ErrorCode::ServiceUnavailable | ErrorCode::AiUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::ConversationNotStarted => StatusCode::CONFLICT,
            ErrorCode::InvalidAudio => StatusCode::BAD_REQUEST,
            ErrorCode::VoiceCloneFailed => StatusCode::BAD_GATEWAY,
        }
    }

    /// The default, human-readable (Korean) message for the code.
    pub(crate) fn default_message(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "토큰이 유효하지 않거나 만료되었습니다.",
            ErrorCode::AuthenticationFailed => "아이디 또는 비밀번호가 올바르지 않습니다.",
            ErrorCode::InsufficientPermission => "이 리소스나 작업에 대한 권한이 없습니다.",
            ErrorCode::ValidationError => {
                "요청 데이터 형식이 잘못되었거나 필수값이 누락되었습니다."
            }
            ErrorCode::ResourceNotFound => "요청한 리소스를 찾을 수 없습니다.",
            ErrorCode::RateLimitExceeded => "요청 한도를 초과했습니다. 잠시 후 다시 시도해 주세요.",
            ErrorCode::ServerError => "서버 내부 오류가 발생했습니다.",
            ErrorCode::PayloadTooLarge => "요청 본문이 너무 큽니다 (최대 1MB).",
            ErrorCode::MethodNotAllowed => "허용되지 않는 HTTP 메서드입니다.",
            ErrorCode::Conflict => "요청이 현재 리소스 상태와 충돌합니다.",
            ErrorCode::UrlExpired => "URL이 만료되었습니다.",
            ErrorCode::ServiceUnavailable => "서비스를 일시적으로 사용할 수 없습니다.",
            ErrorCode::ConversationNotStarted => "먼저 대화를 시작해 주세요 (start_conversation).",
            ErrorCode::InvalidAudio => {
                "지원하지 않는 오디오 형식입니다 (WAV, MP3, OGG, WebM, M4A)."
            }
            ErrorCode::VoiceCloneFailed => "목소리 복제에 실패했습니다.",
            ErrorCode::AiUnavailable => "쫑이가 지금 대답할 수 없어요. 잠시 후 다시 말해 줘!",
            ErrorCode::VoiceConsentRequired => {
                "목소리 복제 동의가 없어 음성 샘플을 저장하지 않았어요. 보호자가 먼저 목소리 복제에 동의해 주세요 (POST /api/v1/users/me/voice-consent)."
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The domain error: a public code with a client-safe message, or an internal failure
/// whose cause is only logged.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error
/// without a code (and with its text shown to clients). Without it, `?` in a resolver
/// goes through our own conversion in `graphql::errors`, which sets `extensions.code`.
#[derive(Debug)]
pub enum AppError {
    Public {
        code: ErrorCode,
        message: String,
    },
    /// `RATE_LIMIT_EXCEEDED`, with the seconds after which trying again can work.
    Limited {
        message: String,
        retry_after: u64,
    },
    Internal(anyhow::Error),
    /// `SERVICE_UNAVAILABLE`: a dependency (the database) could not be reached, or could
    /// not write; `retry_after` when a wait is known to help (a full disk being freed).
    Unavailable {
        cause: anyhow::Error,
        retry_after: Option<u64>,
    },
}

/// The cause of an internal failure, on its way to the one place that logs it; never
/// shown to a client.
#[derive(Clone)]
pub struct InternalCause {
    /// What the client was told (`SERVER_ERROR` or `SERVICE_UNAVAILABLE`).
    pub code: ErrorCode,
    error: Arc<anyhow::Error>,
}

impl InternalCause {
    pub(crate) fn new(code: ErrorCode, error: anyhow::Error) -> InternalCause {
        InternalCause {
            code,
            error: Arc::new(error),
        }
    }
}

/// The whole chain of causes, as the log shows it.
impl std::fmt::Display for InternalCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::fmt::Debug for InternalCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InternalCause({}: {:#})", self.code, self.error)
    }
}

/// What a client may see of an error, and what only the log may (its cause).
#[derive(Debug)]
pub struct PublicError {
    pub code: ErrorCode,
    pub message: String,
    /// For `RATE_LIMIT_EXCEEDED`: seconds until trying again can work.
    pub retry_after: Option<u64>,
    pub cause: Option<InternalCause>,
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> AppError {
        AppError::Internal(e)
    }
}

impl AppError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError::Public {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn code_only(code: ErrorCode) -> AppError {
        AppError::new(code, code.default_message())
    }

    pub(crate) fn validation(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::ValidationError, message)
    }

    pub(crate) fn invalid_token() -> AppError {
        AppError::code_only(ErrorCode::InvalidToken)
    }

    pub(crate) fn not_found() -> AppError {
        AppError::code_only(ErrorCode::ResourceNotFound)
    }

    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            AppError::Public { code, .. } => *code,
            AppError::Limited { .. } => ErrorCode::RateLimitExceeded,
            AppError::Internal(_) => ErrorCode::ServerError,
            AppError::Unavailable { .. } => ErrorCode::ServiceUnavailable,
        }
    }

    /// Seconds to wait before retrying, for rate-limit errors.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::Limited { retry_after, .. } => Some(*retry_after),
            AppError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The message a client may see (an internal failure's is the code's default).
    pub(crate) fn public_message(&self) -> String {
        match self {
            AppError::Public { message, .. } | AppError::Limited { message, .. } => message.clone(),
            AppError::Internal(_) | AppError::Unavailable { .. } => {
                self.code().default_message().to_string()
            }
        }
    }

    /// Splits the error into what the client sees and the cause only the log sees.
    pub fn into_public(self) -> PublicError {
        let code = self.code();
        let message = self.public_message();
        let retry_after = self.retry_after();
        let cause = match self {
            AppError::Internal(e) | AppError::Unavailable { cause: e, .. } => {
                Some(InternalCause::new(code, e))
            }
            AppError::Public { .. } | AppError::Limited { .. } => None,
        };
        PublicError {
            code,
            message,
            retry_after,
            cause,
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        match e {
            DbError::Pool(_) | DbError::Connect(_) => AppError::Unavailable {
                cause: anyhow::Error::from(e).context("database unavailable"),
                retry_after: None,
            },
            // A full disk is answered 503 with a time to come back, never 500.
            full if full.is_storage_full() => AppError::Unavailable {
                cause: anyhow::Error::from(full).context("database storage full or failing"),
                retry_after: Some(30),
            },
            other => AppError::Internal(other.into()),
        }
    }
}

pub(crate) type AppResult<T> = Result<T, AppError>;
