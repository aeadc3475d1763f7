//! The GraphQL core: where behaviour lives. Resolvers read the auth context and call the
//! domain; every error carries `extensions.code` from the contract's catalogue.

pub(crate) mod accounts;
pub(crate) mod conversations;
pub(crate) mod errors;
pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod ops;
mod plain;
pub(crate) mod scalars;
pub(crate) mod stories;
pub(crate) mod ws;

use async_graphql::{Context, MergedObject, MergedSubscription, Request, Response, Schema};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::OnceCell;

use crate::domain::Domain;
use crate::domain::accounts::User;
use crate::error::AppError;

#[derive(MergedObject, Default)]
pub(crate) struct QueryRoot(
    accounts::AccountQuery,
    stories::StoryQuery,
    conversations::ConversationQuery,
    ops::OpsRoot,
);

#[derive(MergedObject, Default)]
pub(crate) struct MutationRoot(
    accounts::AccountMutation,
    stories::StoryMutation,
    conversations::ConversationMutation,
);

#[derive(MergedSubscription, Default)]
pub(crate) struct SubscriptionRoot(
    stories::StorySubscription,
    conversations::ConversationSubscription,
    conversations::VoiceSubscription,
    ops::OpsSubscription,
);

pub(crate) type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

// The query root as everyone but operators sees it (no `ops`): only for the public SDL.
// (A plain comment: a doc comment would become the type's description there.)
#[derive(MergedObject, Default)]
#[graphql(name = "QueryRoot")]
struct PublicQueryRoot(
    accounts::AccountQuery,
    stories::StoryQuery,
    conversations::ConversationQuery,
);

// The subscription root without the operators' subscriptions: only for the public SDL.
#[derive(MergedSubscription, Default)]
#[graphql(name = "SubscriptionRoot")]
struct PublicSubscriptionRoot(
    stories::StorySubscription,
    conversations::ConversationSubscription,
    conversations::VoiceSubscription,
);

/// Per-request authentication: the bearer token as sent, resolved lazily (and once) to
/// the live account it names.
#[derive(Default)]
pub(crate) struct RequestAuth {
    bearer: Option<String>,
    user: OnceCell<User>,
}

impl RequestAuth {
    pub(crate) fn new(bearer: Option<String>) -> RequestAuth {
        RequestAuth {
            bearer,
            user: OnceCell::new(),
        }
    }

    /// For a connection that authenticated once (the GraphQL socket's `connection_init`).
    pub(crate) fn for_user(bearer: Option<String>, user: Option<User>) -> RequestAuth {
        let resolved = OnceCell::new();
        if let Some(user) = user {
            let _ = resolved.set(user);
        }
        RequestAuth {
            bearer,
            user: resolved,
        }
    }

    /// The bearer token this request carries, if any.
    pub(crate) fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// The account, if it was already resolved for this request.
    pub(crate) fn resolved(&self) -> Option<&User> {
        self.user.get()
    }

    /// Resolves the account now (failures are left for the resolvers to report), so
    /// schema visibility can depend on the viewer's role.
    pub(crate) async fn preload(&self, domain: &Domain) {
        if self.bearer.is_some() {
            let accounts = domain.accounts();
            let _ = self
                .user
                .get_or_try_init(|| accounts.authenticate(self.bearer.as_deref()))
                .await;
        }
    }
}

pub(crate) fn build_schema(domain: Domain) -> AppSchema {
    let limits = domain.config().graphql.clone();
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .data(domain)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_recursion)
    .limit_directives(limits.max_directives);
    // No "did you mean …?" in any mode: async-graphql suggests from every field of the
    // type, hidden ones included, so a typo near `ops` named the operator surface.
    builder = builder.disable_suggestions();
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The one way into the schema: a client's document passes `limits` first (`None` for the
/// server's own documents, the REST door's operations), and every error leaves with a
/// code.
pub(crate) async fn execute(
    schema: &AppSchema,
    limits: Option<&limits::DocumentLimits>,
    mut request: Request,
) -> Response {
    if let Some(limits) = limits
        && let Err(refused) = limits.admit(&mut request)
    {
        return refusal(refused);
    }
    let mut response = schema.execute(request).await;
    errors::ensure_codes(&mut response.errors);
    response
}

/// [`execute`] for subscriptions: the same admission, a code on every error of every
/// response.
pub(crate) fn execute_stream(
    schema: &AppSchema,
    limits: Option<&limits::DocumentLimits>,
    mut request: Request,
) -> BoxStream<'static, Response> {
    if let Some(limits) = limits
        && let Err(refused) = limits.admit(&mut request)
    {
        let response = refusal(refused);
        return futures_util::stream::once(async move { response }).boxed();
    }
    schema
        .execute_stream(request)
        .map(|mut response| {
            errors::ensure_codes(&mut response.errors);
            response
        })
        .boxed()
}

/// A request refused before execution, with its code.
pub(crate) fn refusal(error: async_graphql::ServerError) -> Response {
    let mut response = Response::from_errors(vec![error]);
    errors::ensure_codes(&mut response.errors);
    response
}

/// The SDL everyone but operators may see at `/graphql/schema.graphql`: the schema
/// without the operator surface (`ops`, `opsStoryUpdates`, `opsConversationEvents` and
/// the types only they reach), as introspection shows it to them.
pub(crate) fn public_sdl() -> String {
    let sdl = Schema::build(
        PublicQueryRoot::default(),
        MutationRoot::default(),
        PublicSubscriptionRoot::default(),
    )
    .finish()
    .sdl();
    tidy_sdl(&sdl)
}

/// async-graphql prints an argument list that has a described argument with the other
/// arguments run together on one line, separated by `,` and tabs
/// (`first: Int,\t\tafter: String,…`): one argument a line instead.
fn tidy_sdl(sdl: &str) -> String {
    let mut out = String::with_capacity(sdl.len());
    for line in sdl.lines() {
        if !line.contains(",\t\t") && !line.contains("(\t\t") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // `\tfield(\t\ta: A,\t\tb: B` or `\t\ta: A,\t\tb: B`: one argument a line.
        let (head, args) = match line.split_once("(\t\t") {
            Some((head, args)) => (Some(head), args),
            None => (None, line.trim_start_matches('\t')),
        };
        if let Some(head) = head {
            out.push_str(head);
            out.push_str("(\n");
        }
        for arg in args.split(",\t\t") {
            out.push_str("\t\t");
            out.push_str(arg.trim_end_matches(','));
            out.push('\n');
        }
    }
    out
}

/// The schema's SDL (what `jjongal print-schema` prints and `schema.graphql` holds).
pub fn sdl() -> String {
    let sdl = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl();
    tidy_sdl(&sdl)
}

pub(crate) fn domain<'a>(ctx: &Context<'a>) -> &'a Domain {
    ctx.data_unchecked::<Domain>()
}

/// The authenticated account, or `INVALID_TOKEN`.
pub(crate) async fn viewer(ctx: &Context<'_>) -> Result<User, AppError> {
    let auth = ctx
        .data_opt::<RequestAuth>()
        .ok_or_else(AppError::invalid_token)?;
    let accounts = domain(ctx).accounts();
    auth.user
        .get_or_try_init(|| accounts.authenticate(auth.bearer.as_deref()))
        .await
        .cloned()
}
