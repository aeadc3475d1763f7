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
}
