//! Accounts and their refresh tokens.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{RefreshTokenRow, UserRow};
use super::schema::{refresh_tokens, users};
use super::types::{Role, TokenFamilyId, UserId};
use super::{Db, DbError, Page, newest_first, on_db, transaction};

pub(crate) async fn insert_user(db: &mut Db<'_>, row: &UserRow) -> Result<(), DbError> {
    on_db!(db, |c| diesel::insert_into(users::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

pub(crate) async fn user(db: &mut Db<'_>, id: UserId) -> Result<Option<UserRow>, DbError> {
    Ok(on_db!(db, |c| users::table
        .find(id)
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The account whose login id, lower-cased, is `key`.
pub(crate) async fn user_by_login(db: &mut Db<'_>, key: &str) -> Result<Option<UserRow>, DbError> {
    Ok(on_db!(db, |c| users::table
        .filter(users::login_key.eq(key))
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Sets the role of the account whose login key is `key`; `false` when there is none.
pub(crate) async fn set_role(
    db: &mut Db<'_>,
    key: &str,
    role: Role,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(
        users::table.filter(users::login_key.eq(key))
    )
    .set((users::role.eq(role), users::updated_at.eq(now)))
    .execute(c)
    .await)?;
    Ok(n > 0)
}

/// Deletes an account with its refresh tokens (the rest cascades from `users`); `false`
/// when it was already gone.
pub(crate) async fn delete_user(db: &mut Db<'_>, id: UserId) -> Result<bool, DbError> {
    let deleted: usize = transaction!(db, |tx| {
        on_db!(tx, |c| diesel::delete(
            refresh_tokens::table.filter(refresh_tokens::user_id.eq(id))
        )
        .execute(c)
        .await)?;
        on_db!(tx, |c| diesel::delete(users::table.find(id))
            .execute(c)
            .await)
        .map_err(DbError::from)
    })?;
    Ok(deleted > 0)
}

/// Accounts, newest first, after `after` (a creation time and id).
pub(crate) async fn accounts_newest_first(
    db: &mut Db<'_>,
    after: Option<(NaiveDateTime, UserId)>,
    first: usize,
) -> Result<Page<UserRow>, DbError> {
    let rows = on_db!(db, |c| {
        let q = users::table.select(UserRow::as_select()).into_boxed();
        newest_first!(q, users, &after, first).load(c).await
    })?;
    Ok(Page::of(rows, first))
}

pub(crate) async fn insert_refresh_token(
    db: &mut Db<'_>,
    row: &RefreshTokenRow,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::insert_into(refresh_tokens::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// Marks the live refresh token `hash` used at `now`; its (account, family) when it was
/// live (unused, unrevoked, unexpired), `None` otherwise.
pub(crate) async fn use_refresh_token(
    db: &mut Db<'_>,
    hash: &str,
    now: NaiveDateTime,
) -> Result<Option<(UserId, TokenFamilyId)>, DbError> {
    Ok(on_db!(db, |c| diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash))
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null())
            .filter(refresh_tokens::expires_at.gt(now)),
    )
    .set(refresh_tokens::used_at.eq(Some(now)))
    .returning((refresh_tokens::user_id, refresh_tokens::family_id))
    .get_result(c)
    .await
    .optional())?)
}

pub(crate) async fn refresh_token(
    db: &mut Db<'_>,
    hash: &str,
) -> Result<Option<RefreshTokenRow>, DbError> {
    Ok(on_db!(db, |c| refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshTokenRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Revokes every token of `family` not revoked yet.
pub(crate) async fn revoke_family(
    db: &mut Db<'_>,
    family: TokenFamilyId,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(Some(now)))
    .execute(c)
    .await)?;
    Ok(())
}
