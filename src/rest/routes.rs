//! The REST route table: each spec route is one row mapping onto a GraphQL operation.
//! Aliases in the documents produce the spec's `snake_case` keys; the result sits under
//! the alias `data`. Adding a route is adding a row.

use axum::http::{Method, StatusCode};

use crate::domain::stories::StoryStatus;

/// How the GraphQL variables are built (path parameters always become variables of the
/// same name).
#[derive(Clone, Copy, Debug)]
pub enum Body {
    /// No body is read.
    None,
    /// The JSON object body, keys turned to camelCase, becomes the variable `input`.
    Input,
}

/// How the GraphQL result becomes the REST `data`.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// `data` is the aliased field as is.
    Single,
    /// A Relay connection (`edges { node }`, `pageInfo { hasNextPage endCursor }`)
    /// becomes the spec's `{object: "list", results, has_more, next_cursor}`.
    List,
    /// No body (`204`).
    NoContent,
}

/// The type a query-string parameter is converted to.
#[derive(Clone, Copy, Debug)]
pub enum ParamKind {
    Int,
    String,
}

/// A query-string parameter and the GraphQL variable it feeds.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub variable: &'static str,
    pub kind: ParamKind,
    /// The values it takes, when it is one of a list (documented, and checked by the
    /// facade in REST's words).
    pub values: &'static [&'static str],
    /// What the OpenAPI document says of it.
    pub description: &'static str,
}

/// What the OpenAPI document says of a route (the rest it reads from the route itself).
#[derive(Clone, Copy, Debug)]
pub struct Doc {
    pub operation_id: &'static str,
    /// The group it is listed under.
    pub tag: &'static str,
    pub summary: &'static str,
    /// Whether it needs `Authorization: Bearer`.
    pub auth: bool,
    /// The request body's schema (a component in `rest::schemas`).
    pub request: Option<&'static str>,
    /// The schema of the envelope's `data`.
    pub response: Option<&'static str>,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub document: String,
    pub body: Body,
    /// Accepted query-string parameters; any other is a validation error.
    pub query: &'static [Param],
    pub shape: Shape,
    pub status: StatusCode,
    pub message: &'static str,
    pub doc: Doc,
}

/// `GET /stories`: cursor pagination (spec §3.5) plus filter and sort.
const STORY_LIST_PARAMS: [Param; 5] = [
    Param {
        name: "page_size",
        variable: "first",
        kind: ParamKind::Int,
        values: &[],
        description: "Page size, 1–100 (default 20).",
    },
    Param {
        name: "start_cursor",
        variable: "after",
        kind: ParamKind::String,
        values: &[],
        description: "The previous page's `next_cursor` (opaque; only with the same filters).",
    },
    Param {
        name: "status",
        variable: "status",
        kind: ParamKind::String,
        values: StoryStatus::NAMES,
        description: "Only stories in this status.",
    },
    Param {
        name: "sort_by",
        variable: "sortBy",
        kind: ParamKind::String,
        values: &["created_at", "updated_at", "title"],
        description: "Sort key (default `created_at`; titles by code point, untitled last).",
    },
    Param {
        name: "order",
        variable: "order",
        kind: ParamKind::String,
        values: &["asc", "desc"],
        description: "Sort order (default `desc`).",
    },
];

/// `GET /conversations`: cursor pagination.
const CONVERSATION_LIST_PARAMS: [Param; 2] = [
    Param {
        name: "page_size",
        variable: "first",
        kind: ParamKind::Int,
        values: &[],
        description: "Page size, 1–100 (default 20).",
    },
    Param {
        name: "start_cursor",
        variable: "after",
        kind: ParamKind::String,
        values: &[],
        description: "The previous page's `next_cursor` (opaque; only with the same filters).",
    },
];

const CONVERSATION_FIELDS: &str = "id object child_name: childName age interests status \
    created_at: createdAt updated_at: updatedAt ended_at: endedAt";

const FILE_FIELDS: &str = "object type url expiry_time: expiryTime";

fn story_fields() -> String {
    format!(
        "id object owner_id: ownerId title status \
         chapters {{ id object chapter_number: chapterNumber title content \
           image {{ {FILE_FIELDS} }} audio {{ {FILE_FIELDS} }} }} \
         created_at: createdAt updated_at: updatedAt"
    )
}

const USER_FIELDS: &str = "id object name age created_at: createdAt";
const TOKEN_FIELDS: &str = "token_type: tokenType access_token: accessToken \
    expires_in: expiresIn refresh_token: refreshToken";

/// Every REST route of the facade.
pub fn table() -> Vec<Route> {
    let mut routes = account_routes();
    routes.extend(token_routes());
    routes.extend(story_routes());
    routes.extend(one_story_routes());
    routes.extend(conversation_routes());
    routes.extend(voice_routes());
    routes
}

/// Sign-up and the account.
fn account_routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/api/v1/users",
            document: format!(
                "mutation($input: SignUpInput!) {{ data: signUp(input: $input) {{ {USER_FIELDS} }} }}"
            ),
            body: Body::Input,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::CREATED,
            message: "회원가입이 완료되었습니다.",
            doc: Doc {
                operation_id: "signUp",
                tag: "accounts",
                summary: "Sign up a family account (extension: contract §3)",
                auth: false,
                request: Some("SignUpRequest"),
                response: Some("User"),
            },
        },
        Route {
            method: Method::GET,
            path: "/api/v1/users/me",
            document: format!("query {{ data: me {{ {USER_FIELDS} }} }}"),
            body: Body::None,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "사용자 정보를 조회했습니다.",
            doc: Doc {
                operation_id: "getMe",
                tag: "accounts",
                summary: "The current account (spec §6.2)",
                auth: true,
                request: None,
                response: Some("User"),
            },
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/users/me",
            document: "mutation { data: deleteAccount }".into(),
            body: Body::None,
            query: &[],
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "계정이 삭제되었습니다.",
            doc: Doc {
                operation_id: "deleteMe",
                tag: "accounts",
                summary: "Delete the account and everything it owns",
                auth: true,
                request: None,
                response: None,
            },
        },
    ]
}

/// Logging in, token rotation, logging out.
fn token_routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/api/v1/auth/token",
            document: format!(
                "mutation($input: IssueTokenInput!) {{ data: issueToken(input: $input) {{ {TOKEN_FIELDS} }} }}"
            ),
            body: Body::Input,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "토큰이 발급되었습니다.",
            doc: Doc {
                operation_id: "issueToken",
                tag: "auth",
                summary: "Log in: an access and a refresh token (spec §6.1)",
                auth: false,
                request: Some("TokenRequest"),
                response: Some("TokenPair"),
            },
        },
        Route {
            method: Method::POST,
            path: "/api/v1/auth/refresh",
            document: format!(
                "mutation($input: RefreshTokenInput!) {{ data: refreshToken(input: $input) {{ {TOKEN_FIELDS} }} }}"
            ),
            body: Body::Input,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "토큰이 갱신되었습니다.",
            doc: Doc {
                operation_id: "refreshToken",
                tag: "auth",
                summary: "Rotate a refresh token (single use; reuse revokes its family)",
                auth: false,
                request: Some("RefreshRequest"),
                response: Some("TokenPair"),
            },
        },
        Route {
            method: Method::POST,
            path: "/api/v1/auth/logout",
            document: "mutation($input: RefreshTokenInput!) { data: logout(input: $input) }".into(),
            body: Body::Input,
            query: &[],
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "로그아웃되었습니다.",
            doc: Doc {
                operation_id: "logout",
                tag: "auth",
                summary: "Revoke a refresh token's family",
                auth: false,
                request: Some("RefreshRequest"),
                response: None,
            },
        },
    ]
}

/// The account's stories: creating one, listing them.
fn story_routes() -> Vec<Route> {
    let story = story_fields();
    vec![
        Route {
            method: Method::POST,
            path: "/api/v1/stories",
            document: format!(
                "mutation($input: CreateStoryInput!) {{ data: createStory(input: $input) {{ {story} }} }}"
            ),
            body: Body::Input,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::ACCEPTED,
            message: "이야기 생성 요청이 접수되었습니다.",
            doc: Doc {
                operation_id: "createStory",
                tag: "stories",
                summary: "Ask for a story, written in the background (spec §6.3)",
                auth: true,
                request: Some("CreateStoryRequest"),
                response: Some("Story"),
            },
        },
        Route {
            method: Method::GET,
            path: "/api/v1/stories",
            document: format!(
                "query($first: Int, $after: String, $status: StoryStatus, \
                   $sortBy: StorySort = created_at, $order: SortOrder = desc) {{ \
                 data: stories(first: $first, after: $after, status: $status, sortBy: $sortBy, order: $order) {{ \
                   edges {{ node {{ {story} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
            ),
            body: Body::None,
            query: &STORY_LIST_PARAMS,
            shape: Shape::List,
            status: StatusCode::OK,
            message: "이야기 목록을 조회했습니다.",
            doc: Doc {
                operation_id: "listStories",
                tag: "stories",
                summary: "The account's stories: filter, sort, cursor pages",
                auth: true,
                request: None,
                response: Some("StoryList"),
            },
        },
    ]
}

/// One of the account's stories.
fn one_story_routes() -> Vec<Route> {
    let story = story_fields();
    vec![
        Route {
            method: Method::GET,
            path: "/api/v1/stories/{id}",
            document: format!("query($id: ID!) {{ data: story(id: $id) {{ {story} }} }}"),
            body: Body::None,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "이야기를 조회했습니다.",
            doc: Doc {
                operation_id: "getStory",
                tag: "stories",
                summary: "One story with its chapters",
                auth: true,
                request: None,
                response: Some("Story"),
            },
        },
        Route {
            method: Method::PATCH,
            path: "/api/v1/stories/{id}",
            document: format!(
                "mutation($id: ID!, $input: UpdateStoryInput!) {{ data: updateStory(id: $id, input: $input) {{ {story} }} }}"
            ),
            body: Body::Input,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "이야기가 수정되었습니다.",
            doc: Doc {
                operation_id: "updateStory",
                tag: "stories",
                summary: "Rename a story",
                auth: true,
                request: Some("UpdateStoryRequest"),
                response: Some("Story"),
            },
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/stories/{id}",
            document: "mutation($id: ID!) { data: deleteStory(id: $id) }".into(),
            body: Body::None,
            query: &[],
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "이야기가 삭제되었습니다.",
            doc: Doc {
                operation_id: "deleteStory",
                tag: "stories",
                summary: "Delete a story with its chapters and media",
                auth: true,
                request: None,
                response: None,
            },
        },
    ]
}

/// The account's conversations.
fn conversation_routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "/api/v1/conversations",
            document: format!(
                "query($first: Int, $after: String) {{ data: conversations(first: $first, after: $after) {{ \
                   edges {{ node {{ {CONVERSATION_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
            ),
            body: Body::None,
            query: &CONVERSATION_LIST_PARAMS,
            shape: Shape::List,
            status: StatusCode::OK,
            message: "대화 목록을 조회했습니다.",
            doc: Doc {
                operation_id: "listConversations",
                tag: "conversations",
                summary: "The account's conversations, newest first",
                auth: true,
                request: None,
                response: Some("ConversationList"),
            },
        },
        Route {
            method: Method::GET,
            path: "/api/v1/conversations/{id}",
            document: format!(
                "query($id: ID!) {{ data: conversation(id: $id) {{ {CONVERSATION_FIELDS} \
                   messages {{ seq role text audio_url: audioUrl created_at: createdAt }} }} }}"
            ),
            body: Body::None,
            query: &[],
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "대화를 조회했습니다.",
            doc: Doc {
                operation_id: "getConversation",
                tag: "conversations",
                summary: "One conversation with its messages",
                auth: true,
                request: None,
                response: Some("ConversationDetail"),
            },
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/conversations/{id}",
            document: "mutation($id: ID!) { data: deleteConversation(id: $id) }".into(),
            body: Body::None,
            query: &[],
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "대화가 삭제되었습니다.",
            doc: Doc {
                operation_id: "deleteConversation",
                tag: "conversations",
                summary: "Delete a conversation with its messages",
                auth: true,
                request: None,
                response: None,
            },
        },
    ]
}

/// The account's cloned voice.
fn voice_routes() -> Vec<Route> {
    vec![Route {
        method: Method::DELETE,
        path: "/api/v1/users/me/voice",
        document: "mutation { data: deleteVoice }".into(),
        body: Body::None,
        query: &[],
        shape: Shape::NoContent,
        status: StatusCode::NO_CONTENT,
        message: "목소리가 삭제되었습니다.",
        doc: Doc {
            operation_id: "deleteVoice",
            tag: "conversations",
            summary: "Delete the voice samples and the cloned voice",
            auth: true,
            request: None,
            response: None,
        },
    }]
}
