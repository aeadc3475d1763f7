//! Typed values of the stored columns, mapped once at the diesel boundary: a query binds
//! and loads them as what they are, and an unknown stored value is a load error, not a
//! string to compare.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

/// An enum stored as `TEXT`: its variants, their stored spellings, and the diesel
/// mapping both ways (for every backend that stores text).
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored spellings, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The stored (and public) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

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
    };
}

/// A row id: a UUID, stored as its hyphenated lower-case text in both backends, and a
/// type of its own per table, so one table's id cannot be passed where another's is
/// wanted. Reading a stored id that is not a UUID is a load error.
macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow,
            serde::Serialize, serde::Deserialize,
        )]
        #[diesel(sql_type = Text)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn random() -> $name {
                $name(uuid::Uuid::new_v4())
            }

            pub fn uuid(self) -> uuid::Uuid {
                self.0
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> $name {
                $name(id)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<$name, uuid::Error> {
                uuid::Uuid::parse_str(s).map($name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl ToSql<Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
                let mut buffer = uuid::Uuid::encode_buffer();
                let text = self.0.hyphenated().encode_lower(&mut buffer);
                std::io::Write::write_all(out, text.as_bytes())?;
                Ok(serialize::IsNull::No)
            }
        }

        impl ToSql<Text, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> serialize::Result {
                out.set_value(self.0.hyphenated().to_string());
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
                    Ok(id) if canonical => Ok($name(id)),
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

uuid_id! {
    /// `users.id`.
    UserId;
    /// `refresh_tokens.id`.
    RefreshTokenId;
    /// `refresh_tokens.family_id`: every token descended from one login.
    TokenFamilyId;
    /// `stories.id`.
    StoryId;
    /// `story_requests.id`.
    StoryRequestId;
    /// `chapters.id`.
    ChapterId;
    /// `media_files.id`.
    MediaFileId;
    /// `conversations.id`.
    ConversationId;
    /// `conversation_messages.id`.
    MessageId;
    /// `voice_samples.id`.
    VoiceSampleId;
    /// `generation_steps.id`.
    StepId;
    /// `ops_audit.id`.
    AuditId;
    /// `voice_deletions.id`.
    VoiceDeletionId;
}

text_enum! {
    /// Where a story is in its life (`stories.status`).
    StoryStatus {
        Pending => "pending",
        InProgress => "in_progress",
        Completed => "completed",
        Failed => "failed",
    }
}

text_enum! {
    /// Where a cloned voice's deletion at the provider stands (`voice_deletions.status`).
    DeletionStatus {
        Pending => "pending",
        Deleted => "deleted",
        Forced => "forced",
    }
}

text_enum! {
    /// What an account may do (`users.role`).
    Role {
        Member => "member",
        Operator => "operator",
    }
}

text_enum! {
    /// Whether a conversation goes on (`conversations.status`).
    ConversationStatus {
        Active => "active",
        Ended => "ended",
    }
}

text_enum! {
    /// How long a story is asked to be (`stories.length`).
    StoryLength {
        Short => "short",
        Medium => "medium",
        Long => "long",
    }
}

text_enum! {
    /// Who said a conversation's message (`conversation_messages.role`).
    MessageRole {
        Child => "child",
        Assistant => "assistant",
    }
}

text_enum! {
    /// Where an account's cloned voice stands (`users.voice_status`).
    VoiceStatus {
        NotCloned => "none",
        Cloning => "cloning",
        Cloned => "cloned",
    }
}

text_enum! {
    /// How one recorded provider attempt ended (`generation_steps.outcome`).
    StepOutcome {
        Succeeded => "ok",
        Errored => "error",
        Flagged => "flagged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_back() {
        for s in StoryStatus::ALL {
            assert_eq!(StoryStatus::parse(s.as_str()), Some(*s));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        for c in ConversationStatus::ALL {
            assert_eq!(ConversationStatus::parse(c.as_str()), Some(*c));
        }
        for l in StoryLength::ALL {
            assert_eq!(StoryLength::parse(l.as_str()), Some(*l));
        }
        for m in MessageRole::ALL {
            assert_eq!(MessageRole::parse(m.as_str()), Some(*m));
        }
        for v in VoiceStatus::ALL {
            assert_eq!(VoiceStatus::parse(v.as_str()), Some(*v));
        }
        for o in StepOutcome::ALL {
            assert_eq!(StepOutcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(StoryStatus::parse("done"), None);
    }

    #[test]
    fn ids_read_and_print_as_hyphenated_lower_case() {
        let text = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let id: StoryId = text.to_uppercase().parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }
}
