//! A synchronous resolution path for the library's hot types (`Story`, `Chapter`,
//! `File`).
//!
//! A page of 20 stories selects about 1,900 fields. async-graphql's generic object
//! resolution makes a boxed future per field and a `FuturesUnordered` per object, which
//! was 30 % of a page's CPU in the load benchmark's profile (docs/performance.md, *The
//! load benchmark*). These fields take no arguments and cannot fail, so when an object's
//! selection set is *plain* — fields only, none with a directive, no fragments, no
//! response key twice — the values are computed here, in selection order. Anything else
//! (fragments, `@skip`, `@include`, a repeated key whose selections async-graphql merges)
//! takes the derived resolver of the same type unchanged; the test
//! `graphql::*::plain_and_generic_paths_agree` compares the two.

use std::borrow::Cow;

use async_graphql::context::ContextSelectionSet;
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::{Context, OutputType, Positioned, ServerResult, Value};

/// An object type whose plain selections [`resolve_plain`] can answer.
pub(crate) trait Plain: OutputType {
    /// The value of field `name` (its context is `ctx`); `None` sends the whole object
    /// to the generic path (a nested selection that is not plain).
    fn field_value(&self, name: &str, ctx: &Context<'_>) -> Option<Value>;
}

/// The object's value for a plain selection set, `None` for any other.
pub(crate) fn resolve_plain<T: Plain>(value: &T, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
    let mut out = IndexMap::with_capacity(ctx.item.node.items.len());
    for selection in &ctx.item.node.items {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        if !field.node.directives.is_empty() {
            return None;
        }
        let name = field.node.name.node.as_str();
        let v = if name == "__typename" {
            Value::String(T::type_name().into_owned())
        } else {
            value.field_value(name, &ctx.with_field(field))?
        };
        if out
            .insert(field.node.response_key().node.clone(), v)
            .is_some()
        {
            return None;
        }
    }
    Some(Value::Object(out))
}

/// The plain selection set of an object-typed field.
pub(crate) fn nested<T: Plain>(value: &T, ctx: &Context<'_>) -> Option<Value> {
    resolve_plain(value, &ctx.with_selection_set(&ctx.item.node.selection_set))
}

/// `T` in the schema, resolved by [`resolve_plain`] when it can and by `T`'s own
/// resolver otherwise.
pub(crate) struct Fast<T>(pub T);

impl<T: Plain> OutputType for Fast<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match resolve_plain(&self.0, ctx) {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        }
    }
}
