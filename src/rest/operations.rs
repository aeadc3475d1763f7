//! Every `/api/v1` route, one type each (spec §6 and the contract's extensions). Adding a
//! route is adding an [`Operation`] here and a line in [`each`]; adding a field to a REST
//! object is adding it to its type in [`super::types`] (the documents select what the
//! types declare: [`super::selection`]).

use async_graphql::Value as ConstValue;
use axum::http::{Method, StatusCode};

use super::door::{
    ChapterPath, Doc, IdPath, NoBody, NoContent, NoPath, Operation, Variables, Visit, optional,
};
use super::types::{
    ChapterRegeneration, Connection, Conversation, ConversationDetail, List, NoQuery, PageQuery,
    Story, StoryListQuery, TokenPair, User, VoiceConsent, connection_selection,
};
use crate::graphql::accounts::{
    IssueTokenInput, RefreshTokenInput, SignUpInput, VoiceConsentInput,
};
use crate::graphql::stories::{CreateStoryInput, RegenerateChapterInput, UpdateStoryInput};

/// Every operation, in the order the OpenAPI document lists them.
pub(crate) fn each(v: &mut impl Visit) {
    v.visit::<SignUp>();
    v.visit::<GetMe>();
    v.visit::<DeleteMe>();
    v.visit::<IssueToken>();
    v.visit::<RefreshToken>();
    v.visit::<Logout>();
    v.visit::<CreateStory>();
    v.visit::<ListStories>();
    v.visit::<GetStory>();
    v.visit::<UpdateStory>();
    v.visit::<DeleteStory>();
    v.visit::<RegenerateChapter>();
    v.visit::<ListConversations>();
    v.visit::<GetConversation>();
    v.visit::<DeleteConversation>();
    v.visit::<DeleteVoice>();
    v.visit::<GetVoiceConsent>();
    v.visit::<GiveVoiceConsent>();
    v.visit::<WithdrawVoiceConsent>();
}

/// The selection of a REST type (derived from its published schema).
fn select<T: utoipa::ToSchema>() -> String {
    super::selection::selection::<T>()
}

/// `GET /stories`' parameters: `$first`, `$after`, `$status`, `$sortBy`, `$order`.
impl Variables for StoryListQuery {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>) {
        optional(out, "first", self.page_size);
        optional(out, "after", self.start_cursor);
        optional(out, "status", self.status);
        optional(out, "sortBy", self.sort_by);
        optional(out, "order", self.order);
    }
}

/// `GET /conversations`' parameters: `$first`, `$after`.
impl Variables for PageQuery {
    fn variables(self, out: &mut Vec<(&'static str, ConstValue)>) {
        optional(out, "first", self.page_size);
        optional(out, "after", self.start_cursor);
    }
}

/// No parameters, no variables.
impl Variables for NoQuery {
    fn variables(self, _: &mut Vec<(&'static str, ConstValue)>) {}
}

pub(crate) struct SignUp;

impl Operation for SignUp {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/users";
    const STATUS: StatusCode = StatusCode::CREATED;
    const MESSAGE: &'static str = "회원가입이 완료되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "signUp",
        tag: "accounts",
        summary: "Sign up a family account (extension: contract §3)",
        auth: false,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = SignUpInput;
    type Data = User;
    type Out = User;
    fn document() -> String {
        format!(
            "mutation($input: SignUpInput!) {{ data: signUp(input: $input) {{ {} }} }}",
            select::<User>()
        )
    }
}

pub(crate) struct GetMe;

impl Operation for GetMe {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/users/me";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "사용자 정보를 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "getMe",
        tag: "accounts",
        summary: "The current account (spec §6.2)",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = User;
    type Out = User;
    fn document() -> String {
        format!("query {{ data: me {{ {} }} }}", select::<User>())
    }
}

pub(crate) struct DeleteMe;

impl Operation for DeleteMe {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/api/v1/users/me";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "계정이 삭제되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "deleteMe",
        tag: "accounts",
        summary: "Delete the account and everything it owns",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation { data: deleteAccount }".into()
    }
}

pub(crate) struct IssueToken;

impl Operation for IssueToken {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/auth/token";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "토큰이 발급되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "issueToken",
        tag: "auth",
        summary: "Log in: an access and a refresh token (spec §6.1)",
        auth: false,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = IssueTokenInput;
    type Data = TokenPair;
    type Out = TokenPair;
    fn document() -> String {
        format!(
            "mutation($input: IssueTokenInput!) {{ data: issueToken(input: $input) {{ {} }} }}",
            select::<TokenPair>()
        )
    }
}

pub(crate) struct RefreshToken;

impl Operation for RefreshToken {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/auth/refresh";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "토큰이 갱신되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "refreshToken",
        tag: "auth",
        summary: "Rotate a refresh token (single use; reuse revokes its family)",
        auth: false,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = RefreshTokenInput;
    type Data = TokenPair;
    type Out = TokenPair;
    fn document() -> String {
        format!(
            "mutation($input: RefreshTokenInput!) {{ data: refreshToken(input: $input) {{ {} }} }}",
            select::<TokenPair>()
        )
    }
}

pub(crate) struct Logout;

impl Operation for Logout {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/auth/logout";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "로그아웃되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "logout",
        tag: "auth",
        summary: "Revoke a refresh token's family",
        auth: false,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = RefreshTokenInput;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation($input: RefreshTokenInput!) { data: logout(input: $input) }".into()
    }
}

pub(crate) struct CreateStory;

impl Operation for CreateStory {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/stories";
    const STATUS: StatusCode = StatusCode::ACCEPTED;
    const MESSAGE: &'static str = "이야기 생성 요청이 접수되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "createStory",
        tag: "stories",
        summary: "Ask for a story, written in the background (spec §6.3)",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = CreateStoryInput;
    type Data = Story;
    type Out = Story;
    fn document() -> String {
        format!(
            "mutation($input: CreateStoryInput!) {{ data: createStory(input: $input) {{ {} }} }}",
            select::<Story>()
        )
    }
}

pub(crate) struct ListStories;

impl Operation for ListStories {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/stories";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "이야기 목록을 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "listStories",
        tag: "stories",
        summary: "The account's stories: filter, sort, cursor pages",
        auth: true,
    };
    type Path = NoPath;
    type Query = StoryListQuery;
    type Body = NoBody;
    type Data = Connection<Story>;
    type Out = List<Story>;
    fn document() -> String {
        format!(
            "query($first: Int, $after: String, $status: StoryStatus, \
               $sortBy: StorySort = created_at, $order: SortOrder = desc) {{ \
             data: stories(first: $first, after: $after, status: $status, sortBy: $sortBy, order: $order) {{ {} }} }}",
            connection_selection(&select::<Story>())
        )
    }
}

pub(crate) struct GetStory;

impl Operation for GetStory {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/stories/{id}";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "이야기를 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "getStory",
        tag: "stories",
        summary: "One story with its chapters",
        auth: true,
    };
    type Path = IdPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = Story;
    type Out = Story;
    fn document() -> String {
        format!(
            "query($id: ID!) {{ data: story(id: $id) {{ {} }} }}",
            select::<Story>()
        )
    }
}

pub(crate) struct UpdateStory;

impl Operation for UpdateStory {
    const METHOD: Method = Method::PATCH;
    const PATH: &'static str = "/api/v1/stories/{id}";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "이야기가 수정되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "updateStory",
        tag: "stories",
        summary: "Rename a story",
        auth: true,
    };
    type Path = IdPath;
    type Query = NoQuery;
    type Body = UpdateStoryInput;
    type Data = Story;
    type Out = Story;
    fn document() -> String {
        format!(
            "mutation($id: ID!, $input: UpdateStoryInput!) {{ data: updateStory(id: $id, input: $input) {{ {} }} }}",
            select::<Story>()
        )
    }
}

pub(crate) struct DeleteStory;

impl Operation for DeleteStory {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/api/v1/stories/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "이야기가 삭제되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "deleteStory",
        tag: "stories",
        summary: "Delete a story with its chapters and media",
        auth: true,
    };
    type Path = IdPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation($id: ID!) { data: deleteStory(id: $id) }".into()
    }
}

pub(crate) struct ListConversations;

impl Operation for ListConversations {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/conversations";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "대화 목록을 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "listConversations",
        tag: "conversations",
        summary: "The account's conversations, newest first",
        auth: true,
    };
    type Path = NoPath;
    type Query = PageQuery;
    type Body = NoBody;
    type Data = Connection<Conversation>;
    type Out = List<Conversation>;
    fn document() -> String {
        format!(
            "query($first: Int, $after: String) {{ data: conversations(first: $first, after: $after) {{ {} }} }}",
            connection_selection(&select::<Conversation>())
        )
    }
}

pub(crate) struct GetConversation;

impl Operation for GetConversation {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/conversations/{id}";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "대화를 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "getConversation",
        tag: "conversations",
        summary: "One conversation with its messages",
        auth: true,
    };
    type Path = IdPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = ConversationDetail;
    type Out = ConversationDetail;
    fn document() -> String {
        format!(
            "query($id: ID!) {{ data: conversation(id: $id) {{ {} }} }}",
            select::<ConversationDetail>()
        )
    }
}

pub(crate) struct DeleteConversation;

impl Operation for DeleteConversation {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/api/v1/conversations/{id}";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "대화가 삭제되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "deleteConversation",
        tag: "conversations",
        summary: "Delete a conversation with its messages",
        auth: true,
    };
    type Path = IdPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation($id: ID!) { data: deleteConversation(id: $id) }".into()
    }
}

pub(crate) struct DeleteVoice;

impl Operation for DeleteVoice {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/api/v1/users/me/voice";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "목소리가 삭제되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "deleteVoice",
        tag: "conversations",
        summary: "Delete the voice samples and the cloned voice",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation { data: deleteVoice }".into()
    }
}

pub(crate) struct GetVoiceConsent;

impl Operation for GetVoiceConsent {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/api/v1/users/me/voice-consent";
    const STATUS: StatusCode = StatusCode::OK;
    const MESSAGE: &'static str = "목소리 복제 동의를 조회했습니다.";
    const DOC: Doc = Doc {
        operation_id: "getVoiceConsent",
        tag: "accounts",
        summary: "The voice-cloning consent and the text to show (extension)",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = VoiceConsentData;
    type Out = VoiceConsent;
    fn document() -> String {
        format!(
            "query {{ data: me {{ voiceConsent {{ {} }} }} }}",
            select::<VoiceConsent>()
        )
    }
}

/// `me { voiceConsent }` read as its consent.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VoiceConsentData {
    voice_consent: VoiceConsent,
}

impl From<VoiceConsentData> for VoiceConsent {
    fn from(data: VoiceConsentData) -> VoiceConsent {
        data.voice_consent
    }
}

pub(crate) struct GiveVoiceConsent;

impl Operation for GiveVoiceConsent {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/users/me/voice-consent";
    const STATUS: StatusCode = StatusCode::CREATED;
    const MESSAGE: &'static str = "목소리 복제 동의가 기록되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "giveVoiceConsent",
        tag: "accounts",
        summary: "Give the voice-cloning consent for the text and provider shown (extension)",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = VoiceConsentInput;
    type Data = VoiceConsent;
    type Out = VoiceConsent;
    fn document() -> String {
        format!(
            "mutation($input: VoiceConsentInput!) {{ data: giveVoiceConsent(input: $input) {{ {} }} }}",
            select::<VoiceConsent>()
        )
    }
}

pub(crate) struct WithdrawVoiceConsent;

impl Operation for WithdrawVoiceConsent {
    const METHOD: Method = Method::DELETE;
    const PATH: &'static str = "/api/v1/users/me/voice-consent";
    const STATUS: StatusCode = StatusCode::NO_CONTENT;
    const MESSAGE: &'static str = "목소리 복제 동의가 철회되었습니다.";
    const DOC: Doc = Doc {
        operation_id: "withdrawVoiceConsent",
        tag: "accounts",
        summary: "Withdraw the voice-cloning consent; deletes the samples and the cloned voice (extension)",
        auth: true,
    };
    type Path = NoPath;
    type Query = NoQuery;
    type Body = NoBody;
    type Data = bool;
    type Out = NoContent;
    fn document() -> String {
        "mutation { data: withdrawVoiceConsent }".into()
    }
}

pub(crate) struct RegenerateChapter;

impl Operation for RegenerateChapter {
    const METHOD: Method = Method::POST;
    const PATH: &'static str = "/api/v1/stories/{id}/chapters/{chapter_number}/regenerate";
    const STATUS: StatusCode = StatusCode::ACCEPTED;
    const MESSAGE: &'static str = "장을 다시 만드는 중입니다.";
    const DOC: Doc = Doc {
        operation_id: "regenerateChapter",
        tag: "stories",
        summary: "Make a chapter's text, picture or narration again, keeping the rest (extension); done in the background",
        auth: true,
    };
    type Path = ChapterPath;
    type Query = NoQuery;
    type Body = RegenerateChapterInput;
    type Data = ChapterRegeneration;
    type Out = ChapterRegeneration;
    fn document() -> String {
        format!(
            "mutation($id: ID!, $chapterNumber: Int!, $input: RegenerateChapterInput!) {{ data: regenerateChapter(id: $id, chapterNumber: $chapterNumber, input: $input) {{ {} }} }}",
            select::<ChapterRegeneration>()
        )
    }
}
