//! The domain's vocabulary: the ids of things and the kinds they come in, shared by every
//! layer (doors, domain, jobs, providers, events). Below the domain and the store: how a
//! value is stored (`TEXT`) is `store::types`'s business, which adds the diesel mapping
//! (the two marker derives that say "bound as `TEXT`, loaded as itself" are here, on the
//! definitions, because derives can only be).

/// An enum of the vocabulary: its variants and their one spelling (stored and public).
/// `store::types` maps it to and from `TEXT`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = diesel::sql_types::Text)]
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
    };
}

/// An id: a UUID, and a type of its own per kind of thing, so a story's id cannot be
/// passed where a conversation's is wanted. Parsed once where it enters (a door), typed
/// from there on. `store::types` stores it as hyphenated lower-case text.
macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
            serde::Serialize, serde::Deserialize,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
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
    /// `voice_consents.id`.
    VoiceConsentId;
    /// `purge_runs.id`.
    PurgeRunId;
    /// `data_exports.id`.
    ExportId;
    /// `chapter_regenerations.id`.
    RegenerationId;
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

/// Parses a client-supplied id where it enters (a door); anything but a UUID is a
/// validation error naming `field`, the door's name for it.
pub fn parse_id<Id: std::str::FromStr>(field: &str, value: &str) -> crate::error::AppResult<Id> {
    value.parse().map_err(|_| {
        crate::error::AppError::validation(format!("`{field}`은(는) UUID여야 합니다."))
    })
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
