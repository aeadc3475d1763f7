//! The guardian's exports: the record of each, and its rate limit.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::data_exports;
use super::types::{ExportId, UserId};
use super::{Db, DbError, locked_transaction, on_db};

/// Records an export of `owner` starting `now` unless one started after `since`; the
/// start of that one otherwise (nothing recorded). Under a per-account lock, so two
/// processes cannot both start one.
pub(crate) async fn start(
    db: &mut Db<'_>,
    id: ExportId,
    owner: UserId,
    now: NaiveDateTime,
    since: NaiveDateTime,
) -> Result<Option<NaiveDateTime>, DbError> {
    enum Refused {
        Db(DbError),
        Recent(NaiveDateTime),
    }
    impl From<diesel::result::Error> for Refused {
        fn from(e: diesel::result::Error) -> Refused {
            Refused::Db(e.into())
        }
    }
    let key = format!("export:{owner}");
    let started: Result<(), Refused> = locked_transaction!(db, &key, |tx| {
        // The row first: on SQLite the transaction then holds the write lock.
        on_db!(&mut *tx, |c| diesel::insert_into(data_exports::table)
            .values((
                data_exports::id.eq(id),
                data_exports::owner_id.eq(owner),
                data_exports::started_at.eq(now),
            ))
            .execute(c)
            .await)?;
        let earlier: Option<NaiveDateTime> = on_db!(&mut *tx, |c| data_exports::table
            .filter(data_exports::owner_id.eq(owner))
            .filter(data_exports::id.ne(id))
            .filter(data_exports::started_at.gt(since))
            .select(diesel::dsl::max(data_exports::started_at))
            .first(c)
            .await)?;
        match earlier {
            // Not this one: rolled back.
            Some(t) => Err(Refused::Recent(t)),
            None => Ok(()),
        }
    });
    match started {
        Ok(()) => Ok(None),
        Err(Refused::Recent(t)) => Ok(Some(t)),
        Err(Refused::Db(e)) => Err(e),
    }
}

/// When `owner`'s exports started, newest first.
pub(crate) async fn of(db: &mut Db<'_>, owner: UserId) -> Result<Vec<NaiveDateTime>, DbError> {
    Ok(on_db!(db, |c| data_exports::table
        .filter(data_exports::owner_id.eq(owner))
        .order(data_exports::started_at.desc())
        .select(data_exports::started_at)
        .load(c)
        .await)?)
}
