//! The REST route table: each spec route is one row mapping onto a GraphQL operation.
//! Aliases in the documents produce the spec's `snake_case` keys; the result sits under
//! the alias `data`. Adding a route is adding a row.

use axum::http::{Method, StatusCode};

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
    /// No body (`204`).
    NoContent,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub document: String,
    pub body: Body,
    pub shape: Shape,
    pub status: StatusCode,
    pub message: &'static str,
}

const USER_FIELDS: &str = "id object name age created_at: createdAt";
const TOKEN_FIELDS: &str = "token_type: tokenType access_token: accessToken \
    expires_in: expiresIn refresh_token: refreshToken";

/// Every REST route of the facade.
pub fn table() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/api/v1/users",
            document: format!(
                "mutation($input: SignUpInput!) {{ data: signUp(input: $input) {{ {USER_FIELDS} }} }}"
            ),
            body: Body::Input,
            shape: Shape::Single,
            status: StatusCode::CREATED,
            message: "회원가입이 완료되었습니다.",
        },
        Route {
            method: Method::GET,
            path: "/api/v1/users/me",
            document: format!("query {{ data: me {{ {USER_FIELDS} }} }}"),
            body: Body::None,
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "사용자 정보를 조회했습니다.",
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/users/me",
            document: "mutation { data: deleteAccount }".into(),
            body: Body::None,
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "계정이 삭제되었습니다.",
        },
        Route {
            method: Method::POST,
            path: "/api/v1/auth/token",
            document: format!(
                "mutation($input: IssueTokenInput!) {{ data: issueToken(input: $input) {{ {TOKEN_FIELDS} }} }}"
            ),
            body: Body::Input,
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "토큰이 발급되었습니다.",
        },
        Route {
            method: Method::POST,
            path: "/api/v1/auth/refresh",
            document: format!(
                "mutation($input: RefreshTokenInput!) {{ data: refreshToken(input: $input) {{ {TOKEN_FIELDS} }} }}"
            ),
            body: Body::Input,
            shape: Shape::Single,
            status: StatusCode::OK,
            message: "토큰이 갱신되었습니다.",
        },
        Route {
            method: Method::POST,
            path: "/api/v1/auth/logout",
            document: "mutation($input: RefreshTokenInput!) { data: logout(input: $input) }".into(),
            body: Body::Input,
            shape: Shape::NoContent,
            status: StatusCode::NO_CONTENT,
            message: "로그아웃되었습니다.",
        },
    ]
}
