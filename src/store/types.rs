//! How the vocabulary's values are stored (`crate::vocabulary`): ids as their
//! hyphenated lower-case text, enums as their spelling, in both backends. A query binds
//! and loads them as what they are, and an unknown stored value is a load error, not a
//! string to compare.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

pub use crate::vocabulary::*;

/// `TEXT` both ways for an enum of the vocabulary (every backend that stores text).
macro_rules! text_enum {
    ($($name:ident),+ $(,)?) => {$(
        impl<DB: Backend> ToSql<Text, DB> for $name
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<$name> {
                let stored = String::from_sql(bytes)?;
                $name::parse(&stored).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), stored).into()
                })
            }
        }
    )+};
}

/// An id of the vocabulary as `TEXT`: PostgreSQL and SQLite written without a `String`
/// on the way where they allow; reading a stored id that is not a UUID in the form the
/// service writes is a load error.
macro_rules! uuid_id {
    ($($name:ident),+ $(,)?) => {$(
        impl ToSql<Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
                let mut buffer = uuid::Uuid::encode_buffer();
                let text = self.uuid().hyphenated().encode_lower(&mut buffer);
                std::io::Write::write_all(out, text.as_bytes())?;
                Ok(serialize::IsNull::No)
            }
        }

        impl ToSql<Text, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> serialize::Result {
                out.set_value(self.uuid().hyphenated().to_string());
                Ok(serialize::IsNull::No)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<$name> {
                let stored = String::from_sql(bytes)?;
                // Only the form the service writes: lower-case, hyphenated (36 characters).
                // Another spelling of the same UUID would not match the stored text in a
                // lookup or a keyset comparison.
                let canonical = stored.len() == 36 && !stored.bytes().any(|b| b.is_ascii_uppercase());
                match uuid::Uuid::parse_str(&stored) {
                    Ok(id) if canonical => Ok($name::from(id)),
                    Ok(_) => Err(format!(
                        concat!("stored ", stringify!($name), " {:?} is not lower-case hyphenated"),
                        stored
                    )
                    .into()),
                    Err(e) => Err(format!(
                        concat!("stored ", stringify!($name), " {:?}: {}"),
                        stored, e
                    )
                    .into()),
                }
            }
        }
    )+};
}

text_enum!(
    StoryStatus,
    DeletionStatus,
    Role,
    ConversationStatus,
    StoryLength,
    MessageRole,
    VoiceStatus,
    StepOutcome
);
uuid_id!(
    UserId,
    RefreshTokenId,
    TokenFamilyId,
    StoryId,
    StoryRequestId,
    ChapterId,
    MediaFileId,
    ConversationId,
    MessageId,
    VoiceSampleId,
    StepId,
    AuditId,
    VoiceDeletionId,
    VoiceConsentId,
    PurgeRunId,
    ExportId,
    RegenerationId
);
