//! The conversation socket's GraphQL documents, parsed once at start-up, with the types
//! their variables are written from and their answers read into.

use async_graphql::parser::types::ExecutableDocument;
use serde::{Deserialize, Serialize};

use super::protocol::{StartPayload, StoryRequest};

/// One document: its text (for logs) and its parsed form.
pub(crate) struct Document {
    pub source: &'static str,
    pub parsed: ExecutableDocument,
}

impl Document {
    fn parse(source: &'static str) -> Document {
        let parsed = async_graphql::parser::parse_query(source)
            .unwrap_or_else(|e| panic!("the conversation socket's document does not parse: {e}"));
        Document { source, parsed }
    }
}

pub(crate) struct Documents {
    pub start: Document,
    pub send: Document,
    pub end: Document,
    pub story: Document,
    pub events: Document,
    pub voice_events: Document,
}

const START: &str = "mutation($input: StartConversationInput) { startConversation(input: $input) { \
    conversation { id } greeting { seq text audioUrl } resumed notices { code message } } }";
const SEND: &str = "mutation($id: ID!, $text: String!) { sendMessage(conversationId: $id, text: $text) { \
    text audioUrl userText audioStatus } }";
const END: &str = "mutation($id: ID!) { endConversation(conversationId: $id) { id } }";
const STORY: &str = "mutation($id: ID!, $input: ConversationStoryInput) { \
    createStoryFromConversation(conversationId: $id, input: $input) { id } }";
const EVENTS: &str = "subscription($id: ID!, $after: Int) { conversationEvents(conversationId: $id, afterSeq: $after) { \
    __typename \
    ... on AiResponse { text audioUrl userText audioStatus } } }";
const VOICE_EVENTS: &str = "subscription { voiceEvents { __typename \
    ... on VoiceCloneProgress { sampleCount readyForCloning } \
    ... on VoiceCloneSuccess { voiceId message } \
    ... on VoiceCloneFailure { code message retryable } } }";

impl Documents {
    /// Parses every document (one that does not parse stops the start-up; the schema
    /// validates them on each execution, and every one is run by the socket's tests).
    pub(crate) fn parse() -> Documents {
        Documents {
            start: Document::parse(START),
            send: Document::parse(SEND),
            end: Document::parse(END),
            story: Document::parse(STORY),
            events: Document::parse(EVENTS),
            voice_events: Document::parse(VOICE_EVENTS),
        }
    }
}

// ---- variables ----

#[derive(Serialize)]
pub(crate) struct NoVars {}

#[derive(Serialize)]
pub(crate) struct IdVars<'a> {
    pub id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct SendVars<'a> {
    pub id: &'a str,
    pub text: &'a str,
}

#[derive(Serialize)]
pub(crate) struct EventsVars<'a> {
    pub id: &'a str,
    pub after: i32,
}

#[derive(Serialize)]
pub(crate) struct InputVars {
    pub input: StartInput,
}

/// `StartConversationInput`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    child_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interests: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
    speaks: bool,
}

impl StartInput {
    /// `payload` over the query string's `defaults` (a resumed conversation keeps its
    /// own child: the defaults do not apply to it).
    pub(crate) fn new(defaults: &StartPayload, payload: StartPayload) -> StartInput {
        let resuming = payload.conversation_id.is_some();
        fn or_default<T: Clone>(resuming: bool, mine: Option<T>, default: &Option<T>) -> Option<T> {
            if resuming {
                mine
            } else {
                mine.or_else(|| default.clone())
            }
        }
        StartInput {
            child_name: or_default(resuming, payload.child_name, &defaults.child_name),
            age: or_default(resuming, payload.age, &defaults.age),
            interests: or_default(resuming, payload.interests, &defaults.interests),
            conversation_id: payload.conversation_id,
            speaks: payload.audio.is_some(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct StoryVars<'a> {
    id: &'a str,
    input: StoryInput,
}

/// `ConversationStoryInput`.
#[derive(Serialize)]
struct StoryInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    theme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    characters: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<String>,
}

impl<'a> StoryVars<'a> {
    pub(crate) fn new(id: &'a str, story: StoryRequest) -> StoryVars<'a> {
        StoryVars {
            id,
            input: StoryInput {
                theme: story.theme,
                characters: story.characters,
                length: story.length,
            },
        }
    }
}

// ---- answers ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartAnswer {
    pub start_conversation: Started,
}

#[derive(Deserialize)]
pub(crate) struct Started {
    pub conversation: Identified,
    pub greeting: Greeting,
    pub resumed: bool,
    pub notices: Vec<Notice>,
}

#[derive(Deserialize)]
pub(crate) struct Identified {
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Greeting {
    pub seq: i32,
    pub text: String,
    pub audio_url: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Notice {
    pub code: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendAnswer {
    pub send_message: Reply,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reply {
    pub text: String,
    pub audio_url: Option<String>,
    pub user_text: Option<String>,
    pub audio_status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndAnswer {
    #[allow(dead_code)] // read to check the answer's shape
    pub end_conversation: Identified,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoryAnswer {
    pub create_story_from_conversation: Identified,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventsAnswer {
    pub conversation_events: ConversationEvent,
}

/// A `conversationEvents` member, by its GraphQL type name.
#[derive(Deserialize)]
#[serde(tag = "__typename")]
pub(crate) enum ConversationEvent {
    #[serde(rename_all = "camelCase")]
    AiResponse {
        text: String,
        audio_url: Option<String>,
        user_text: Option<String>,
        audio_status: String,
    },
    ConversationEnded,
    ConversationError,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VoiceAnswer {
    pub voice_events: VoiceEvent,
}

/// A `voiceEvents` member, by its GraphQL type name.
#[derive(Deserialize)]
#[allow(clippy::enum_variant_names)] // the schema's names
#[serde(tag = "__typename")]
pub(crate) enum VoiceEvent {
    #[serde(rename_all = "camelCase")]
    VoiceCloneProgress {
        sample_count: i64,
        ready_for_cloning: bool,
    },
    #[serde(rename_all = "camelCase")]
    VoiceCloneSuccess { voice_id: String, message: String },
    VoiceCloneFailure {
        code: String,
        message: String,
        retryable: bool,
    },
}

#[cfg(test)]
mod tests {
    use async_graphql::OutputType;

    use super::*;
    use crate::graphql::conversations::{
        AiResponse, ConversationEnded, ConversationError, VoiceCloneFailure, VoiceCloneProgress,
        VoiceCloneSuccess,
    };

    /// The answers' variants are read by the members' GraphQL names, which come from
    /// the Rust types: a rename on either side fails here.
    #[test]
    fn member_names_are_the_schemas() {
        for (name, event) in [
            (
                AiResponse::type_name(),
                serde_json::json!({"__typename": AiResponse::type_name(), "text": "", "audioUrl": null, "userText": null, "audioStatus": "ready"}),
            ),
            (
                ConversationEnded::type_name(),
                serde_json::json!({"__typename": ConversationEnded::type_name()}),
            ),
            (
                ConversationError::type_name(),
                serde_json::json!({"__typename": ConversationError::type_name()}),
            ),
        ] {
            assert!(
                serde_json::from_value::<ConversationEvent>(event.clone()).is_ok(),
                "{name}: {event}"
            );
        }
        for event in [
            serde_json::json!({"__typename": VoiceCloneProgress::type_name(), "sampleCount": 1, "readyForCloning": false}),
            serde_json::json!({"__typename": VoiceCloneSuccess::type_name(), "voiceId": "v", "message": "m"}),
            serde_json::json!({"__typename": VoiceCloneFailure::type_name(), "code": "c", "message": "m", "retryable": true}),
        ] {
            assert!(
                serde_json::from_value::<VoiceEvent>(event.clone()).is_ok(),
                "{event}"
            );
        }
    }
}
