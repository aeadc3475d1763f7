//! `column IN (SELECT value FROM json_each(?))`: SQLite's membership test for a list of
//! any length with one statement text and one bind.
//!
//! diesel's `eq_any` writes `IN (?, ?, …)` on SQLite, and its `sql` literal marks the
//! statement unsafe to cache: either way the statement is parsed and planned afresh on
//! every call (a story page's chapter join was prepared once per page). This expression
//! has a static query id, so diesel keeps the statement prepared.

use diesel::expression::{AppearsOnTable, Expression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Bool, Text};
use diesel::sqlite::Sqlite;

/// See the module documentation; made by [`in_json_array`].
#[derive(Debug, Clone)]
pub(crate) struct InJsonArray<C> {
    column: C,
    json: String,
}

/// `column IN values`, the values bound as one JSON array of strings.
pub(crate) fn in_json_array<C, T: serde::Serialize>(
    column: C,
    values: &[T],
) -> QueryResult<InJsonArray<C>> {
    let json = serde_json::to_string(values)
        .map_err(|e| diesel::result::Error::SerializationError(e.into()))?;
    Ok(InJsonArray { column, json })
}

impl<C> Expression for InJsonArray<C> {
    type SqlType = Bool;
}

impl<C: Expression + AppearsOnTable<QS>, QS> AppearsOnTable<QS> for InJsonArray<C> {}

impl<C: ValidGrouping<GB>, GB> ValidGrouping<GB> for InJsonArray<C> {
    type IsAggregate = C::IsAggregate;
}

impl<C: QueryId> QueryId for InJsonArray<C> {
    type QueryId = InJsonArray<C::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID;
}

impl<C: QueryFragment<Sqlite>> QueryFragment<Sqlite> for InJsonArray<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, _>(&self.json)?;
        out.push_sql("))");
        Ok(())
    }
}
